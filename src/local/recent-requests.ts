/**
 * RecentRequests remembers which write request ids were applied, so that a client re-sending a
 * request after a lost reply or a server crash is answered instead of applied twice.
 *
 * Ids are recorded per commit group: the engine batch that applies a group of writes also puts
 * one record, `0x00 'g' <seq>`, whose value lists every id of the group (see keyspace.ts). So a
 * group's ids are known applied after a crash exactly when its writes are, and recording costs
 * one engine op per batch instead of one per write (a second memtable insert per write was a
 * third of a put's engine cost). The set is bounded two ways: groups older than `retentionMs`
 * expire, and beyond `idsMax` ids the oldest groups are dropped whole. Dropped groups' records
 * are deleted in later write batches (at most `evictionsPerBatchMax` per batch).
 *
 * Directories written before group records carry one `0x00 'r' <id>` record per id; they are
 * loaded as one-id groups and deleted as they expire.
 *
 * NB: an id dropped by count before its client gave up re-sending could be applied twice; with
 * the defaults that takes more than 200k writes within one client's request timeout.
 */
import type { Engine, EngineOp, RangeOptions } from '../engine/engine.js'
import { ErrorCode, KvError } from '../errors.js'
import { IdTable, idTableSlotsMax } from './id-table.js'
import { decodeTimestamp, requestGroupKey, requestGroupKeyRange, requestGroupSeq, requestKeyRange, timestampBytes } from './keyspace.js'

/** RecentRequestsOptions bounds the remembered ids. */
export interface RecentRequestsOptions {
  /** retentionMs: how long an applied id is remembered; must exceed every client's request timeout. */
  retentionMs: number
  /** idsMax: most ids remembered at once (also bounds the records awaiting deletion). */
  idsMax: number
  /** evictionsPerBatchMax: most record deletions piggybacked on one write batch. */
  evictionsPerBatchMax: number
}

/** defaultRecentRequestsOptions: ten minutes, 200k ids. */
export const defaultRecentRequestsOptions: RecentRequestsOptions = Object.freeze({
  retentionMs: 10 * 60_000,
  idsMax: 200_000,
  evictionsPerBatchMax: 1024,
})

/** IdRecord is what recording one group's ids takes: engine ops for its batch, and `commit` once that batch is written. */
export interface IdRecord {
  ops: EngineOp[]
  commit(): void
}

interface Group {
  /** key: the engine record holding this group's ids. */
  key: Buffer
  at: number
  /** ids: the group's 16-byte ids back to back (a slice of its record's value: no object per id). */
  ids: Buffer
}

const idBytes = 16

/** RecentRequests is the in-memory index of applied request ids, mirrored in the engine. */
export class RecentRequests {
  private readonly applied = new IdTable()
  // Invariant: groups[head..] are in applied order, oldest first, and hold exactly the ids of `applied`.
  private groups: Group[] = []
  private head = 0
  // Records of dropped groups still to delete from the engine.
  private readonly doomed: Buffer[] = []
  private nextSeq = 0

  constructor(
    private readonly options: RecentRequestsOptions,
    private readonly now: () => number = Date.now,
  ) {
    // One group may exceed idsMax by itself (at most groupRequestsMax ids), hence the margin.
    const limit = idTableSlotsMax / 4
    if (!Number.isInteger(options.idsMax) || options.idsMax < 1 || options.idsMax > limit) {
      throw new KvError(ErrorCode.INVALID, `recentRequests.idsMax must be an integer in 1..${limit} (idTableSlotsMax / 4)`, { idsMax: options.idsMax })
    }
  }

  /** load reads the persisted ids at startup (group records and legacy per-id records), oldest first. */
  async load(engine: Engine): Promise<void> {
    const found: Group[] = []
    await scan(engine, requestKeyRange, (key, value) => {
      found.push({ key, at: decodeTimestamp(value), ids: key.subarray(2, 2 + idBytes) })
    })
    await scan(engine, requestGroupKeyRange, (key, value) => {
      this.nextSeq = Math.max(this.nextSeq, requestGroupSeq(key) + 1)
      // A malformed tail (not a whole id) is ignored.
      const whole = Math.max(0, Math.floor((value.length - 8) / idBytes))
      found.push({ key, at: decodeTimestamp(value.subarray(0, 8)), ids: value.subarray(8, 8 + whole * idBytes) })
    })
    // Array.prototype.sort is stable: groups of one millisecond keep their key order.
    found.sort((a, b) => a.at - b.at)
    for (const group of found) this.append(group)
    this.expire(0)
  }

  /** has tells whether a write with this 16-byte id was already applied. */
  has(id: Buffer): boolean {
    return id.length === idBytes && this.applied.has(id)
  }

  /** size is how many ids are remembered. */
  get size(): number {
    return this.applied.size
  }

  /**
   * record returns the engine ops that persist `ids` as applied (one record, none for no ids)
   * and delete dropped records; call `commit()` once the batch holding them is written.
   */
  record(ids: Buffer[]): IdRecord {
    this.expire(ids.length)
    const ops: EngineOp[] = []
    let key: Buffer | undefined
    let value: Buffer | undefined
    if (ids.length > 0) {
      key = requestGroupKey(this.nextSeq++)
      // Its own memory (not a slice of Node's shared pool): the group keeps it for retentionMs.
      value = Buffer.allocUnsafeSlow(8 + idBytes * ids.length)
      timestampBytes(this.now(), value)
      for (let i = 0; i < ids.length; i++) ids[i]!.copy(value, 8 + idBytes * i, 0, idBytes)
      ops.push({ type: 'put', key, value })
    }
    const deletions = this.doomed.splice(0, Math.min(this.doomed.length, this.options.evictionsPerBatchMax))
    for (const doomed of deletions) ops.push({ type: 'del', key: doomed })
    return {
      ops,
      commit: () => {
        if (key !== undefined) this.append({ key, at: this.now(), ids: value!.subarray(8) })
      },
    }
  }

  private append(group: Group): void {
    this.groups.push(group)
    for (let at = 0; at < group.ids.length; at += idBytes) this.applied.add(group.ids, at)
  }

  /** expire drops groups past retentionMs, and the oldest ones while `incoming` more ids would exceed idsMax. */
  private expire(incoming: number): void {
    const oldest = this.now() - this.options.retentionMs
    while (this.head < this.groups.length) {
      const group = this.groups[this.head]!
      if (group.at >= oldest && this.applied.size + incoming <= this.options.idsMax) break
      for (let at = 0; at < group.ids.length; at += idBytes) this.applied.delete(group.ids, at)
      this.groups[this.head] = undefined as never
      this.head++
      // The deletion list is bounded too: past idsMax records are left behind, to be dropped by
      // expiry when the server next starts.
      if (this.doomed.length < this.options.idsMax) this.doomed.push(group.key)
    }
    // Drop the consumed prefix now and then, so the queue costs O(1) per group amortised.
    if (this.head > 1024 && this.head * 2 > this.groups.length) {
      this.groups = this.groups.slice(this.head)
      this.head = 0
    }
  }
}

async function scan(engine: Engine, range: RangeOptions, visit: (key: Buffer, value: Buffer) => void): Promise<void> {
  const iterator = engine.iterator({ ...range, keys: true, values: true })
  try {
    for (;;) {
      const entries = await iterator.nextBatch(1024)
      if (entries.length === 0) return
      for (const [key, value] of entries) visit(key, value)
    }
  } finally {
    await iterator.close()
  }
}
