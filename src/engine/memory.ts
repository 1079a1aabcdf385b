/**
 * The in-memory engine: a bytewise-sorted map with snapshot iterators, for tests and the
 * deterministic simulator. Data outlives close()/open() on the same instance, as a disk would,
 * so a "restart" is `close()` then `open()`.
 *
 * Fault model (for the simulator): with `durability: 'lose-unsynced'` the engine remembers the
 * state at the last sync (a `sync: true` write, `sync()`, or the OS write-back modelled by
 * `unsyncedBatchesMax`) and the batches written since; `crash()` rolls back to that state,
 * optionally keeping a prefix of the unsynced batches, as a machine that loses power would.
 * Batches are atomic under crash: each survives whole or not at all. With the default
 * `durability: 'durable'`, a crash loses nothing (a process crash with the OS still up).
 *
 * NB: values read are the stored Buffers themselves, not copies (reads are the hot path of the
 * simulator); callers must not write into them. Writes are copied.
 *
 * Costs: see memory-tree.ts. A snapshot (one per iterator, one per sync in 'lose-unsynced'
 * mode) costs O(n / 256); writes after it copy at most one 256-entry chunk each.
 */
import { ErrorCode, KvError } from '../errors.js'
import { BaseEngine, type NativeIterator, type NormalizedRange } from './base.js'
import type { EngineOp } from './engine.js'
import { SortedMap, type Position, type Snapshot } from './memory-tree.js'

/** unsyncedBatchesMax: unsynced batches kept for crash(); beyond it they count as written back. */
export const unsyncedBatchesMax = 100_000

/** MemoryEngineOptions configures a MemoryEngine; see the module comment for `durability`. */
export interface MemoryEngineOptions {
  durability?: 'durable' | 'lose-unsynced'
}

/** CrashOptions: `keepUnsyncedBatches` of the batches written since the last sync survive. */
export interface CrashOptions {
  keepUnsyncedBatches?: number
}

/** MemoryEngine is the Engine held in process memory. */
export class MemoryEngine extends BaseEngine {
  readonly kind = 'memory' as const
  readonly durability: 'durable' | 'lose-unsynced'
  readonly #map = new SortedMap()
  /** Invariant (lose-unsynced): #map == #durable with #unsynced applied in order. */
  #durable: Snapshot
  #unsynced: EngineOp[][] = []

  constructor(options: MemoryEngineOptions = {}) {
    super()
    const durability = options.durability ?? 'durable'
    if (durability !== 'durable' && durability !== 'lose-unsynced') {
      throw new KvError(ErrorCode.INVALID, "MemoryEngine: durability must be 'durable' or 'lose-unsynced'", { durability })
    }
    this.durability = durability
    this.#durable = this.#map.snapshot()
  }

  /** size is the number of keys stored (for tests and the simulator's checkers). */
  get size(): number {
    return this.#map.size
  }

  /** unsyncedBatches is how many batches a crash() would lose now. */
  get unsyncedBatches(): number {
    return this.#unsynced.length
  }

  /** crash models a power loss: the engine closes at once and, if 'lose-unsynced', forgets unsynced batches. */
  crash(options: CrashOptions = {}): void {
    const keep = options.keepUnsyncedBatches ?? 0
    if (!Number.isInteger(keep) || keep < 0) {
      throw new KvError(ErrorCode.INVALID, 'crash: keepUnsyncedBatches must be a non-negative integer', { keep })
    }
    this.abandon()
    if (this.durability === 'durable') return
    const kept = this.#unsynced.slice(0, keep)
    this.#map.restore(this.#durable)
    for (const ops of kept) this.apply(ops)
    this.markSynced()
  }

  protected async _open(): Promise<void> {}

  protected async _close(): Promise<void> {}

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    return this.#map.get(key)
  }

  protected async _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    return keys.map((key) => this.#map.get(key))
  }

  protected async _write(ops: EngineOp[], sync: boolean): Promise<void> {
    // The ops were all checked by BaseEngine before this call, so applying cannot fail halfway.
    // Copies, so that a caller reusing its Buffers cannot change stored data (as on disk).
    const copies = ops.map((op): EngineOp =>
      op.type === 'put' ? { type: 'put', key: Buffer.from(op.key), value: Buffer.from(op.value) } : { type: 'del', key: Buffer.from(op.key) })
    this.apply(copies)
    if (this.durability === 'durable') return
    if (sync) {
      this.markSynced()
      return
    }
    this.#unsynced.push(copies)
    if (this.#unsynced.length > unsyncedBatchesMax) this.markSynced()
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    return new MemoryIterator(this.#map.snapshot(), range)
  }

  protected async _sync(): Promise<void> {
    if (this.durability === 'lose-unsynced' && this.#unsynced.length > 0) this.markSynced()
  }

  private apply(ops: EngineOp[]): void {
    for (const op of ops) {
      if (op.type === 'put') this.#map.set(op.key, op.value)
      else this.#map.delete(op.key)
    }
  }

  private markSynced(): void {
    this.#durable = this.#map.snapshot()
    this.#unsynced = []
  }
}

/** MemoryIterator walks one Snapshot in either direction, within bounds and a limit. */
class MemoryIterator implements NativeIterator {
  readonly #snapshot: Snapshot
  readonly #range: NormalizedRange
  #position: Position
  #remaining: number

  constructor(snapshot: Snapshot, range: NormalizedRange) {
    this.#snapshot = snapshot
    this.#range = range
    this.#position = range.reverse ? snapshot.seekLast(range.upper) : snapshot.seekFirst(range.lower)
    this.#remaining = range.limit
  }

  async next(count: number): Promise<Array<[Buffer, Buffer]>> {
    const rows: Array<[Buffer, Buffer]> = []
    while (rows.length < count && this.#remaining > 0) {
      const entry = this.#snapshot.entry(this.#position)
      if (entry === undefined || !this.inRange(entry[0])) {
        this.#remaining = 0
        break
      }
      rows.push(entry)
      this.#remaining--
      this.#position = this.#range.reverse ? this.#snapshot.previous(this.#position) : this.#snapshot.next(this.#position)
    }
    return rows
  }

  async close(): Promise<void> {}

  /** inRange checks the far bound only: the near one was applied by the seek. */
  private inRange(key: Buffer): boolean {
    const bound = this.#range.reverse ? this.#range.lower : this.#range.upper
    if (bound === undefined) return true
    const order = Buffer.compare(key, bound.key)
    if (this.#range.reverse) return bound.inclusive ? order >= 0 : order > 0
    return bound.inclusive ? order <= 0 : order < 0
  }
}
