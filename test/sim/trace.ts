/**
 * The simulator's event trace: every event is hashed (so determinism is one number to compare),
 * the last `tailLinesMax` lines are kept for the failure report, and in verbose mode every
 * line goes to a sink as it happens.
 */
import { hashString } from './random.js'

/** Trace records simulator events. */
export class Trace {
  private hash = 0x811c9dc5
  private readonly tail: string[] = []
  private readonly tailLinesMax: number
  private readonly sink: ((line: string) => void) | undefined
  events = 0

  constructor(options: { tailLinesMax?: number; sink?: (line: string) => void } = {}) {
    this.tailLinesMax = options.tailLinesMax ?? 40
    this.sink = options.sink
  }

  /** add records one event at simulated time `now`. */
  add(now: number, line: string): void {
    const text = `${String(now).padStart(6)} ${line}`
    this.hash = hashString(text, this.hash)
    this.events++
    this.tail.push(text)
    if (this.tail.length > this.tailLinesMax) this.tail.shift()
    if (this.sink !== undefined) this.sink(text)
  }

  /** digest is the hash of every event so far, as 8 hex digits. */
  digest(): string {
    return this.hash.toString(16).padStart(8, '0')
  }

  /** lines returns the kept tail, oldest first. */
  lines(): string[] {
    return [...this.tail]
  }
}
