/**
 * A fault-injection engine that models a volatile disk write cache in front of another engine,
 * so that SIGKILL of the process loses exactly what a power cut would lose.
 *
 * Why: SIGKILL alone keeps everything that reached the kernel (the page cache survives a process
 * crash), so a test that kills nodes cannot tell a build that fsyncs from one that does not. This
 * wrapper moves the "cache" into the process: a write issued with `sync: false` is held in memory
 * (and is visible to every read through the wrapper, as a page cache would make it), and only
 * reaches the inner engine when a synced write or `sync()` flushes the cache. Killing the process
 * then drops every write that was never synced, while every synced one (and everything written
 * before it) is in the inner engine and survives.
 *
 * Fault model: the worst case of a power cut. Every unsynced write is lost, none is torn: the
 * cache is written back as whole generations, one inner batch each, in order, so an unsynced
 * batch is applied whole or not at all and a later write never survives without the earlier ones
 * (a disk may keep any prefix; this keeps the shortest). The cache is bounded by
 * `powerLossCacheBytesMax`: past it the cache is written back unsynced, as a disk under memory
 * pressure would, and that data then survives a kill. A clean `close()` writes the cache back,
 * since a process exiting normally does not lose the page cache either.
 *
 * Enabled per process by `DISTKV_FAULT_POWER_LOSS=1` through `withPowerLossFault` (the cluster
 * node wraps its engine with it); never on by default. See docs/jepsen.md ("power-loss").
 */
import { ErrorCode, KvError } from '../errors.js'
import { BaseEngine, type NativeIterator, type NormalizedRange } from './base.js'
import type { Engine, EngineIterator, EngineOp, RangeOptions } from './engine.js'

/** powerLossFaultEnv names the environment variable that turns the power-loss model on ('1'). */
export const powerLossFaultEnv = 'DISTKV_FAULT_POWER_LOSS'

/** powerLossCacheBytesMax bounds the unsynced bytes held in memory; past it the cache is written back unsynced. */
export const powerLossCacheBytesMax = 32 * 1024 * 1024

/** powerLossFaultOn tells whether DISTKV_FAULT_POWER_LOSS turns the model on (for the engine and the blob log alike); KV_ERR_INVALID unless unset, '', '0' or '1'. */
export function powerLossFaultOn(env: NodeJS.ProcessEnv = process.env): boolean {
  const value = env[powerLossFaultEnv]
  if (value === undefined || value === '' || value === '0') return false
  if (value !== '1') throw new KvError(ErrorCode.INVALID, `${powerLossFaultEnv} must be '0' or '1'`, { value })
  return true
}

/** withPowerLossFault wraps `engine` in a PowerLossEngine when DISTKV_FAULT_POWER_LOSS=1, else returns it unchanged. */
export function withPowerLossFault(engine: Engine, env: NodeJS.ProcessEnv = process.env): Engine {
  return powerLossFaultOn(env) ? new PowerLossEngine(engine) : engine
}

/** CachedWrite is the latest unsynced state of one key: a value, or undefined for a delete. */
interface CachedWrite {
  key: Buffer
  value: Buffer | undefined
}

/** Generation is a set of unsynced writes that reach the inner engine together, as one batch. */
class Generation {
  /** writes: the latest write per key, keyed by the key's latin1 string (bytewise, 1:1). */
  readonly writes = new Map<string, CachedWrite>()
  bytes = 0

  add(ops: EngineOp[]): void {
    for (const op of ops) {
      const value = op.type === 'put' ? op.value : undefined
      this.writes.set(op.key.toString('latin1'), { key: op.key, value })
      this.bytes += op.key.length + (value?.length ?? 0)
    }
  }

  ops(): EngineOp[] {
    return [...this.writes.values()].map(({ key, value }) => (value === undefined ? { type: 'del', key } : { type: 'put', key, value }))
  }
}

/** PowerLossStats counts what the cache did, for tests and logs. */
export interface PowerLossStats {
  /** unsyncedWrites: batches held in the cache. */
  unsyncedWrites: number
  /** flushes: generations written to the inner engine (by a sync, a writeback or close). */
  flushes: number
  /** writebacks: flushes forced by powerLossCacheBytesMax. */
  writebacks: number
}

/** PowerLossEngine holds unsynced writes in memory until a sync, so a process kill loses them (see the module comment). */
export class PowerLossEngine extends BaseEngine {
  readonly kind: Engine['kind']
  readonly stats: PowerLossStats = { unsyncedWrites: 0, flushes: 0, writebacks: 0 }
  readonly #inner: Engine
  /** #cache: writes not yet handed to the inner engine. */
  #cache = new Generation()
  /** #flushing: generations handed to the inner engine whose batch has not resolved, oldest first. */
  readonly #flushing: Generation[] = []
  /** #queue: the inner writes (and multi-key reads) in order; it always resolves, failures are kept in #failed. */
  #queue: Promise<void> = Promise.resolve()
  /**
   * #failed: the first write-back that failed. NB: every later flush fails with it: the inner
   * engine's state is unknown after a failed write (disk full), as the Raft driver assumes too.
   */
  #failed: unknown

  constructor(inner: Engine) {
    super()
    this.#inner = inner
    this.kind = inner.kind
  }

  protected async _open(): Promise<void> {
    await this.#inner.open()
  }

  protected async _close(): Promise<void> {
    try {
      await this.flush()
    } finally {
      await this.#inner.close()
    }
  }

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    const cached = this.lookup(key.toString('latin1'))
    return cached !== undefined ? cached.value : this.#inner.get(key)
  }

  protected async _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    if (keys.length === 1) return [await this._get(keys[0]!)]
    // The lookups and the inner read take a turn in the flush queue, so no generation reaches the
    // inner engine between them: all keys are read at one point, as an atomic batch requires.
    return this.enqueue(() => this.readMany(keys))
  }

  private async readMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    const cached = keys.map((key) => this.lookup(key.toString('latin1')))
    const missing = keys.filter((_, index) => cached[index] === undefined)
    const read = missing.length === 0 ? [] : await this.#inner.getMany(missing)
    let next = 0
    return cached.map((hit) => (hit !== undefined ? hit.value : read[next++]))
  }

  protected async _write(ops: EngineOp[], sync: boolean): Promise<void> {
    this.#cache.add(ops)
    if (sync) return this._sync()
    this.stats.unsyncedWrites++
    if (this.#cache.bytes > powerLossCacheBytesMax) {
      this.stats.writebacks++
      await this.flush()
    }
  }

  protected async _sync(): Promise<void> {
    await this.flush()
    await this.#inner.sync()
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    const overlay = this.overlay(range)
    const inner = this.#inner.iterator(innerRange(range))
    return new MergedIterator(overlay, inner, range)
  }

  /** flush hands the cache to the inner engine as one unsynced batch, after every earlier generation; resolves once all are there. */
  private flush(): Promise<void> {
    const generation = this.#cache
    if (generation.writes.size === 0) return this.enqueue(async () => this.throwIfFailed())
    this.#cache = new Generation()
    this.#flushing.push(generation)
    this.stats.flushes++
    return this.enqueue(async () => {
      try {
        this.throwIfFailed()
        await this.#inner.batch(generation.ops(), { sync: false })
      } catch (error) {
        this.#failed ??= error
        throw error
      } finally {
        this.#flushing.splice(this.#flushing.indexOf(generation), 1)
      }
    })
  }

  private throwIfFailed(): void {
    if (this.#failed !== undefined) throw this.#failed
  }

  /** enqueue runs `work` after everything queued before it. */
  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work)
    this.#queue = result.then(() => undefined, () => undefined)
    return result
  }

  /** lookup finds the newest cached state of a key, or undefined when the cache does not hold it. */
  private lookup(name: string): CachedWrite | undefined {
    const hit = this.#cache.writes.get(name)
    if (hit !== undefined) return hit
    for (let i = this.#flushing.length - 1; i >= 0; i--) {
      const older = this.#flushing[i]!.writes.get(name)
      if (older !== undefined) return older
    }
    return undefined
  }

  /** overlay snapshots the cached writes inside `range`, newest per key, in iteration order. */
  private overlay(range: NormalizedRange): CachedWrite[] {
    const merged = new Map<string, CachedWrite>()
    for (const generation of [...this.#flushing, this.#cache]) {
      for (const [name, write] of generation.writes) if (inRange(write.key, range)) merged.set(name, write)
    }
    const sorted = [...merged.values()].sort((a, b) => Buffer.compare(a.key, b.key))
    return range.reverse ? sorted.reverse() : sorted
  }
}

/** innerRange asks the inner engine for the same bounds and order, with keys, and no limit (cached deletes may hide rows). */
function innerRange(range: NormalizedRange): RangeOptions {
  const options: RangeOptions = { reverse: range.reverse, keys: true, values: range.values }
  if (range.lower) options[range.lower.inclusive ? 'gte' : 'gt'] = range.lower.key
  if (range.upper) options[range.upper.inclusive ? 'lte' : 'lt'] = range.upper.key
  return options
}

function inRange(key: Buffer, range: NormalizedRange): boolean {
  if (range.lower) {
    const order = Buffer.compare(key, range.lower.key)
    if (order < 0 || (order === 0 && !range.lower.inclusive)) return false
  }
  if (range.upper) {
    const order = Buffer.compare(key, range.upper.key)
    if (order > 0 || (order === 0 && !range.upper.inclusive)) return false
  }
  return true
}

/** MergedIterator walks the inner engine's snapshot with the cache's snapshot laid over it; the cache wins on equal keys. */
class MergedIterator implements NativeIterator {
  #innerRows: Array<[Buffer, Buffer]> = []
  #innerAt = 0
  #innerDone = false
  #overlayAt = 0
  #remaining: number

  constructor(
    private readonly overlay: CachedWrite[],
    private readonly inner: EngineIterator,
    private readonly range: NormalizedRange,
  ) {
    this.#remaining = range.limit
  }

  async next(count: number): Promise<Array<[Buffer | undefined, Buffer | undefined]>> {
    const out: Array<[Buffer, Buffer | undefined]> = []
    const direction = this.range.reverse ? -1 : 1
    while (out.length < count && this.#remaining > 0) {
      if (this.#innerAt === this.#innerRows.length && !this.#innerDone) {
        this.#innerRows = await this.inner.nextBatch(count)
        this.#innerAt = 0
        this.#innerDone = this.#innerRows.length === 0
        continue
      }
      const fromInner = this.#innerRows[this.#innerAt]
      const fromCache = this.overlay[this.#overlayAt]
      if (fromInner === undefined && fromCache === undefined) break
      const order = fromInner === undefined ? 1 : fromCache === undefined ? -1 : Buffer.compare(fromInner[0], fromCache.key) * direction
      if (order < 0) {
        out.push(fromInner!)
        this.#innerAt++
        this.#remaining--
        continue
      }
      if (order === 0) this.#innerAt++
      this.#overlayAt++
      if (fromCache!.value === undefined) continue
      out.push([fromCache!.key, fromCache!.value])
      this.#remaining--
    }
    return out
  }

  async close(): Promise<void> {
    await this.inner.close()
  }
}
