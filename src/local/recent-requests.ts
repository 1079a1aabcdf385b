/**
 * RecentRequests remembers which write request ids were applied, so that a client re-sending a
 * request after a lost reply or a server crash is answered instead of applied twice.
 *
 * The record of an id is written in the same engine batch as the write it covers, so after a
 * crash an id is known applied exactly when its write is. The set is bounded two ways: ids
 * older than `retentionMs` expire, and beyond `idsMax` the oldest are dropped. Expired or
 * dropped ids are deleted in a later write batch (bounded per batch by `evictionsPerBatchMax`).
 *
 * NB: an id evicted by count before its client gave up re-sending could be applied twice; with
 * the defaults that takes more than 200k writes within one client's request timeout.
 */
import type { Engine, EngineOp } from '../engine/engine.js'
import { decodeTimestamp, encodeTimestamp, requestKey, requestKeyRange } from './keyspace.js'

/** RecentRequestsOptions bounds the remembered ids. */
export interface RecentRequestsOptions {
  /** retentionMs: how long an applied id is remembered; must exceed every client's request timeout. */
  retentionMs: number
  /** idsMax: most ids remembered at once. */
  idsMax: number
  /** evictionsPerBatchMax: most id deletions piggybacked on one write batch. */
  evictionsPerBatchMax: number
}

/** defaultRecentRequestsOptions: ten minutes, 200k ids. */
export const defaultRecentRequestsOptions: RecentRequestsOptions = Object.freeze({
  retentionMs: 10 * 60_000,
  idsMax: 200_000,
  evictionsPerBatchMax: 1024,
})

/** RecentRequests is the in-memory index of applied request ids, mirrored in the engine. */
export class RecentRequests {
  // Invariant: insertion order is applied order, so the first entries are the oldest.
  // Keyed by the id's latin1 string, the cheapest string form of 16 raw bytes.
  private readonly applied = new Map<string, number>()
  // Ids dropped from `applied` whose engine records still need deleting.
  private readonly evicted: Buffer[] = []

  constructor(
    private readonly options: RecentRequestsOptions,
    private readonly now: () => number = Date.now,
  ) {}

  /** load reads the persisted ids at startup, oldest first. */
  async load(engine: Engine): Promise<void> {
    const found: Array<[string, number]> = []
    const iterator = engine.iterator({ ...requestKeyRange, keys: true, values: true })
    try {
      for (;;) {
        const entries = await iterator.nextBatch(1024)
        if (entries.length === 0) break
        for (const [key, value] of entries) found.push([key.subarray(2).toString('latin1'), decodeTimestamp(value)])
      }
    } finally {
      await iterator.close()
    }
    found.sort((a, b) => a[1] - b[1])
    for (const [id, at] of found) this.applied.set(id, at)
    this.expire()
  }

  /** has tells whether a write with this id (raw bytes or their latin1 string) was already applied. */
  has(id: Buffer | string): boolean {
    return this.applied.has(typeof id === 'string' ? id : id.toString('latin1'))
  }

  /** size is how many ids are remembered. */
  get size(): number {
    return this.applied.size
  }

  /**
   * recordOps returns the engine ops that persist `ids` as applied and delete evicted ones;
   * call `commit(ids)` once the batch holding them is written.
   */
  recordOps(ids: Buffer[]): EngineOp[] {
    const at = encodeTimestamp(this.now())
    const ops: EngineOp[] = ids.map((id) => ({ type: 'put', key: requestKey(id), value: at }))
    this.expire(ids.length)
    const count = Math.min(this.evicted.length, this.options.evictionsPerBatchMax)
    for (const id of this.evicted.splice(0, count)) ops.push({ type: 'del', key: requestKey(id) })
    return ops
  }

  /** commit marks ids (raw bytes or their latin1 string) applied after their batch reached the engine. */
  commit(ids: Array<Buffer | string>): void {
    const at = this.now()
    for (const id of ids) this.applied.set(typeof id === 'string' ? id : id.toString('latin1'), at)
  }

  private expire(incoming = 0): void {
    const oldest = this.now() - this.options.retentionMs
    for (const [id, at] of this.applied) {
      const overCount = this.applied.size + incoming > this.options.idsMax
      if (at >= oldest && !overCount) break
      this.applied.delete(id)
      // The pending-deletion list is bounded too: past idsMax the records are simply left
      // behind, to be dropped by expiry when the server next starts.
      if (this.evicted.length < this.options.idsMax) this.evicted.push(Buffer.from(id, 'latin1'))
    }
  }
}
