/**
 * The injected source of Raft ticks: a real interval timer for servers, and a manual one that
 * tests and the simulator advance explicitly (no patched global timers).
 */
import { ErrorCode, KvError } from '../errors.js'

/** Ticker calls its listeners once per tick until stopped. */
export interface Ticker {
  start(onTick: () => void): void
  stop(onTick: () => void): void
}

/** IntervalTicker ticks every `intervalMs` milliseconds of wall-clock time. */
export class IntervalTicker implements Ticker {
  private readonly listeners = new Set<() => void>()
  private timer: NodeJS.Timeout | undefined

  constructor(readonly intervalMs: number) {
    if (!Number.isInteger(intervalMs) || intervalMs < 1 || intervalMs > 60_000) {
      throw new KvError(ErrorCode.INVALID, `IntervalTicker.intervalMs must be an integer in [1, 60000], got ${String(intervalMs)}`)
    }
  }

  start(onTick: () => void): void {
    this.listeners.add(onTick)
    if (this.timer === undefined) {
      this.timer = setInterval(() => {
        for (const listener of this.listeners) listener()
      }, this.intervalMs)
      this.timer.unref()
    }
  }

  stop(onTick: () => void): void {
    this.listeners.delete(onTick)
    if (this.listeners.size === 0 && this.timer !== undefined) {
      clearInterval(this.timer)
      this.timer = undefined
    }
  }
}

/** ManualTicker ticks only when `tick()` is called; one instance may drive many drivers. */
export class ManualTicker implements Ticker {
  private readonly listeners = new Set<() => void>()

  start(onTick: () => void): void {
    this.listeners.add(onTick)
  }

  stop(onTick: () => void): void {
    this.listeners.delete(onTick)
  }

  /** tick delivers `count` ticks to every listener. */
  tick(count = 1): void {
    for (let i = 0; i < count; i++) for (const listener of [...this.listeners]) listener()
  }
}
