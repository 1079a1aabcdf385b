/**
 * RequestIds: the request ids one shard replica remembers, so a write re-sent with its id is
 * answered instead of applied again, and their records in the engine.
 *
 * Records: ONE per applied log entry that remembered ids, `prefix | 'q' | index (8 bytes BE)` ->
 * the ids, 18 bytes each (id 16 + slot 2, NO_SLOT for a write spanning slots). A batch of many
 * writes in one entry (a proxy's `each` group) therefore costs one small engine put, not one per
 * write, and eviction deletes whole records. Records written before this layout, one per id
 * (`prefix | 'r' | id` -> index 8 bytes [+ slot 2]), are still read and evicted the same way.
 *
 * Bound: at most `max` ids; past it the oldest records (lowest log index) are evicted whole, so
 * a few more than needed may go. Every replica applies the same entries in the same order, so
 * every replica remembers and evicts exactly the same ids.
 */
import { assert } from '../errors.js'
import type { EngineOp } from '../engine/engine.js'
import type { ShardKeys } from './keys.js'

/** ID_ITEM_BYTES is one remembered id in a record: the id (16) and its slot (2). */
export const ID_ITEM_BYTES = 18
/** NO_SLOT marks an id whose write spanned slots: it travels with every slot set that leaves the shard. */
export const NO_SLOT = 0xffff

/** IdItem is one id of a record with the slot it guards. */
export interface IdItem {
  id: Buffer
  slot: number
}

interface IdRecord {
  key: Buffer
  index: number
  ids: string[]
}

/** idKey is the Map key of an id (16 bytes): its bytes as a latin1 string (cheaper than hex, same identity). */
export function idKey(id: Uint8Array): string {
  return Buffer.from(id.buffer, id.byteOffset, 16).toString('latin1')
}

/** RequestIds tracks one replica's remembered request ids and writes their records. */
export class RequestIds {
  private readonly known = new Map<string, number>()
  // Invariant: records[head..] hold every id of `known` exactly once, in ascending index order.
  private records: IdRecord[] = []
  private head = 0
  private pending: { index: number; items: Buffer[]; ids: string[] } | undefined

  constructor(
    private readonly keys: ShardKeys,
    private readonly max: number,
  ) {}

  /** size is how many ids are remembered. */
  get size(): number {
    return this.known.size
  }

  /** has tells whether `id` (16 bytes) is remembered, including ids added by the entry being applied. */
  has(id: Uint8Array): boolean {
    return this.known.has(idKey(id))
  }

  /** hasKey is `has` for an id whose idKey the caller already holds. */
  hasKey(key: string): boolean {
    return this.known.has(key)
  }

  /** add remembers `id`, applied by the entry at `index`, guarding `slot`; written by the next flush. */
  add(id: Uint8Array, index: number, slot: number): void {
    this.addKeyed(idKey(id), id, index, slot)
  }

  /** addKeyed is `add` for an id whose idKey (`key`) the caller already holds. */
  addKeyed(key: string, id: Uint8Array, index: number, slot: number): void {
    if (this.known.has(key)) return
    assert(this.pending === undefined || this.pending.index === index, `RequestIds.add: entry ${this.pending?.index} was not flushed before entry ${index}`)
    this.pending ??= { index, items: [], ids: [] }
    const item = Buffer.allocUnsafe(ID_ITEM_BYTES)
    item.set(id.subarray(0, 16), 0)
    item.writeUInt16BE(slot, 16)
    this.pending.items.push(item)
    this.pending.ids.push(key)
    this.known.set(key, index)
  }

  /** flush appends the current entry's record (if it remembered any id) and the evictions past the bound to `ops`. */
  flush(ops: EngineOp[]): void {
    const pending = this.pending
    if (pending === undefined) return
    this.pending = undefined
    const key = this.keys.idsKey(pending.index)
    ops.push({ type: 'put', key, value: Buffer.concat(pending.items) })
    this.records.push({ key, index: pending.index, ids: pending.ids })
    while (this.known.size > this.max && this.head < this.records.length) {
      const oldest = this.records[this.head++]!
      for (const id of oldest.ids) this.known.delete(id)
      ops.push({ type: 'del', key: oldest.key })
    }
    if (this.head > 1024 && this.head * 2 > this.records.length) {
      this.records = this.records.slice(this.head)
      this.head = 0
    }
  }

  /** load replaces the remembered ids with those of `pairs`, the engine's records (either layout), in any order. */
  load(pairs: Iterable<[Buffer, Buffer]>): void {
    this.known.clear()
    this.pending = undefined
    const records: IdRecord[] = []
    for (const [key, value] of pairs) {
      const decoded = this.decode(key, value)
      if (decoded !== undefined) records.push({ key, index: decoded.index, ids: decoded.items.map((item) => idKey(item.id)) })
    }
    records.sort((a, b) => a.index - b.index)
    for (const record of records) for (const id of record.ids) this.known.set(id, record.index)
    this.records = records
    this.head = 0
  }

  /** decode reads one record of either layout: its log index and ids; undefined for a key outside the id ranges. */
  decode(key: Buffer, value: Buffer): { index: number; items: IdItem[] } | undefined {
    const kind = key[this.keys.ids.length - 1]
    if (kind === this.keys.ids[this.keys.ids.length - 1] && key.length === this.keys.ids.length + 8) {
      const items: IdItem[] = []
      for (let at = 0; at + ID_ITEM_BYTES <= value.length; at += ID_ITEM_BYTES) items.push({ id: value.subarray(at, at + 16), slot: value.readUInt16BE(at + 16) })
      return { index: Number(key.readBigUInt64BE(this.keys.ids.length)), items }
    }
    if (kind === this.keys.request[this.keys.request.length - 1] && key.length === this.keys.request.length + 16 && value.length >= 8) {
      const slot = value.length >= 10 ? value.readUInt16BE(8) : NO_SLOT
      return { index: Number(value.readBigUInt64BE(0)), items: [{ id: key.subarray(this.keys.request.length), slot }] }
    }
    return undefined
  }
}
