/**
 * ShardMachine: the StateMachine of one shard replica. It applies client writes (put, del,
 * atomic batch) exactly once per request id, refuses keys of slots it does not own (or has
 * frozen for a move), and the slot-move commands (freeze, ingest, claim, release, purge).
 *
 * Everything a decision depends on is replicated: ownership changes go through the log, so a
 * write and a slot move are ordered the same way on every replica. Request ids are stored with
 * the data they wrote (same engine batch as the applied index), one record per log entry, bounded
 * by `requestIdsMax` (oldest evicted first, by log index, identically on every replica; see
 * src/store/request-ids.ts).
 *
 * Exactly-once across slot moves (docs/cluster.md argues it): a one-slot write's id records its
 * slot and moves with that slot; a write spanning slots ("wide") records NO_SLOT and is copied
 * with every slot that leaves the shard, so every shard that ever owns one of its slots knows it.
 */
import { createHash } from 'node:crypto'
import { pack, unpack } from 'msgpackr'
import { ErrorCode, KvError } from '../errors.js'
import type { Engine, EngineOp } from '../engine/engine.js'
import { BlobEngine, type LogValueLocation } from '../engine/blob-engine.js'
import type { Entry, Snapshot } from '../raft/types.js'
import type { ApplyOutput, StateMachine } from '../raftstore/driver.js'
import type { DataLocation } from '../raftstore/log-files.js'
import { SlotSet, slotOf } from '../meta/slots.js'
import { ShardKeys } from './keys.js'
import { ID_ITEM_BYTES, NO_SLOT, RequestIds, idKey } from './request-ids.js'
import { decodeEach, isEachCommand } from './each-codec.js'

/** WriteOp is one operation of a write command: [0, key, value] for put, [1, key] for del. */
export type WriteOp = [0, Buffer, Buffer] | [1, Buffer]

/** WriteUnit is one independently exactly-once part of a non-atomic batch: the ops of one slot and their id. */
export interface WriteUnit {
  id: Buffer
  ops: WriteOp[]
}

/** ShardCommand is every command a shard group applies. */
export type ShardCommand =
  | { t: 'write'; id: Buffer; ops: WriteOp[] }
  | { t: 'units'; units: WriteUnit[] }
  | { t: 'each'; units: WriteUnit[] }
  | { t: 'freeze'; slots: number[] }
  | { t: 'ingest'; pairs: Array<[Buffer, Buffer]>; requests?: Buffer[] }
  | { t: 'claim'; slots: number[] }
  | { t: 'release'; slots: number[] }
  | { t: 'purge'; slots: number[] }
  | { t: 'hash' }

/** UnitRefusal is one unit of an `each` command that was refused: its position and the KvError shape. */
export type UnitRefusal = [at: number, code: string, message: string]

/** ShardResult is what a command returns to its proposer: ok (an `each` command lists its refused units), or a KvError shape. */
export type ShardResult = { ok: true; more?: boolean; index?: number; hash?: string; refused?: UnitRefusal[] } | { ok: false; code: string; message: string }

/** ReplicaHash is what a replica recorded when it applied a `hash` command: its log index and content digest. */
export interface ReplicaHash {
  index: number
  hash: string
  keys: number
}

/** requestIdsMaxDefault: request ids remembered per shard; a retry older than this is applied again. */
export const requestIdsMaxDefault = 100_000
/** purgeKeysMax: most keys one purge command deletes (the mover repeats until done). */
export const purgeKeysMax = 2_000

/** encodeShardCommand is the log encoding of a shard command. */
export function encodeShardCommand(command: ShardCommand): Uint8Array {
  return pack(command)
}

/** asBuffer is `bytes` as a Buffer sharing its memory (msgpack may decode binary as a plain Uint8Array). */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
}

/** APPLIED is the result of a unit applied (or answered as applied before); never mutated. */
const APPLIED: ShardResult = Object.freeze({ ok: true })

function refuse(code: string, message: string): ShardResult {
  return { ok: false, code, message }
}

/** ShardMachine applies one shard's commands to the shared engine. */
export class ShardMachine implements StateMachine {
  readonly keys: ShardKeys
  /** owned and frozen are as of the latest apply (possibly ahead of the disk by one batch). */
  owned = new SlotSet()
  frozen = new SlotSet()
  private readonly requests: RequestIds
  /** lastHash is the result of the latest `hash` command this replica applied (replicas compare them). */
  lastHash: ReplicaHash | undefined

  constructor(
    private readonly engine: Engine,
    shardId: number,
    private readonly requestIdsMax = requestIdsMaxDefault,
    /**
     * locateData: where the node's Raft log files hold an entry's data (RaftLogFiles.locate). With
     * it, a large value is stored as a pointer into the log record that already holds it, not
     * written to a blob file again (BlobEngine.prepare, docs/files.md "One write per replica").
     */
    private readonly locateData?: (data: Uint8Array) => DataLocation | undefined,
  ) {
    this.keys = new ShardKeys(shardId)
    this.requests = new RequestIds(this.keys, requestIdsMax)
  }

  /** load reads the durable slot state and request ids; call before the group starts. */
  async load(): Promise<void> {
    const slots = await this.engine.get(this.keys.slots)
    this.setSlots(slots)
    const records: Array<[Buffer, Buffer]> = []
    const iterator = this.engine.iterator({ gte: this.keys.ids, lt: this.keys.requestEnd })
    try {
      for (;;) {
        const batch = await iterator.nextBatch(1024)
        if (batch.length === 0) break
        records.push(...batch)
      }
    } finally {
      await iterator.close()
    }
    this.requests.load(records)
  }

  /** remembers tells whether a write with request id `id` (16 bytes) was applied here (as of the latest apply). */
  remembers(id: Buffer): boolean {
    return this.requests.has(id)
  }

  /** ownsForRead tells whether reads of `slot` may be served here (owned, frozen or not). */
  ownsForRead(slot: number): boolean {
    return this.owned.has(slot)
  }

  async apply(entries: Entry[]): Promise<ApplyOutput> {
    const ops: EngineOp[] = []
    const results: ShardResult[] = []
    let slotsChanged = false
    for (const entry of entries) {
      let command: ShardCommand
      try {
        // A proxy's write group is binary (src/store/each-codec.ts); every other command msgpack.
        command = isEachCommand(entry.data) ? { t: 'each', units: decodeEach(entry.data) } : (unpack(entry.data) as ShardCommand)
      } catch {
        results.push(refuse(ErrorCode.PROTOCOL, 'undecodable shard command'))
        continue
      }
      if (command.t === 'write') results.push(this.applyWrite([{ id: command.id, ops: command.ops }], entry.index, ops))
      else if (command.t === 'units') results.push(this.applyWrite(command.units, entry.index, ops))
      else if (command.t === 'each') results.push(this.applyEach(command.units, entry.index, ops))
      else if (command.t === 'ingest') results.push(this.applyIngest(command, entry.index, ops))
      else if (command.t === 'purge') results.push(await this.applyPurge(command.slots, ops))
      else if (command.t === 'hash') results.push(await this.applyHash(entry.index, ops))
      else {
        results.push(this.applySlots(command))
        slotsChanged = true
      }
      // One request-id record per entry, written with the entry's data.
      this.requests.flush(ops)
    }
    if (slotsChanged) ops.push({ type: 'put', key: this.keys.slots, value: pack({ owned: this.owned.bits, frozen: this.frozen.bits }) })
    // Large values leave the LSM now: pointers into the Raft log files that hold them, or blob
    // appends whose sync runs while the driver writes the log (beforeWrite).
    if (this.engine instanceof BlobEngine) {
      const prepared = this.engine.prepare(ops, this.locateData === undefined ? undefined : valueLocator(entries, this.locateData))
      // Only a real wait is a beforeWrite: the driver writes such output after the log's sync.
      if (prepared.durable !== undefined) return { ops: prepared.ops, results, beforeWrite: prepared.durable }
      return { ops: prepared.ops, results }
    }
    return { ops, results }
  }

  /**
   * applyWrite applies the units not applied before, all or none: a unit whose id is remembered
   * is answered, not applied again; one key in an unowned or frozen slot refuses the command.
   */
  private applyWrite(units: WriteUnit[], index: number, ops: EngineOp[]): ShardResult {
    const fresh = units.filter((unit) => !this.requests.has(unit.id))
    // Each op's slot, computed once: checked for every fresh unit before any is applied.
    const slots: number[][] = []
    for (const unit of fresh) {
      const unitSlots: number[] = []
      for (const op of unit.ops) {
        const slot = slotOf(op[1])
        if (!this.owned.has(slot)) return refuse(ErrorCode.WRONG_SHARD, `shard ${this.keys.shardId} does not own slot ${slot}`)
        if (this.frozen.has(slot)) return refuse(ErrorCode.STALE_EPOCH, `slot ${slot} of shard ${this.keys.shardId} is moving; retry`)
        unitSlots.push(slot)
      }
      slots.push(unitSlots)
    }
    fresh.forEach((unit, u) => {
      // Two units of one command with the same id: the first one wins, as across commands.
      if (this.requests.has(unit.id)) return
      let slot = -1
      unit.ops.forEach((op, i) => {
        // Views of the decoded entry, not copies: the engine copies them when the batch is written.
        if (op[0] === 0) ops.push({ type: 'put', key: this.keys.dataKey(op[1]), value: asBuffer(op[2]) })
        else ops.push({ type: 'del', key: this.keys.dataKey(op[1]) })
        const opSlot = slots[u]![i]!
        slot = slot === -1 || slot === opSlot ? opSlot : NO_SLOT
      })
      // A one-slot write's id moves with its slot; a wide one (NO_SLOT) with every slot set.
      this.requests.add(unit.id, index, slot)
    })
    return { ok: true }
  }

  /**
   * applyEach applies independent units (a proxy's batch of concurrent single-key writes): each
   * on its own, exactly as a lone `write` with its id would be, so a refusal (slot not owned or
   * frozen) refuses only that unit; the proposer re-routes the refused ones.
   */
  private applyEach(units: WriteUnit[], index: number, ops: EngineOp[]): ShardResult {
    const refused: UnitRefusal[] = []
    for (let at = 0; at < units.length; at++) {
      const result = this.applyUnit(units[at]!, index, ops)
      if (!result.ok) refused.push([at, result.code, result.message])
    }
    return refused.length === 0 ? { ok: true } : { ok: true, refused }
  }

  /**
   * applyUnit is applyWrite of one unit (an `each` command's), with the id's map key and each
   * op's slot computed once: the per-write path of every batched put.
   */
  private applyUnit(unit: WriteUnit, index: number, ops: EngineOp[]): ShardResult {
    const key = idKey(unit.id)
    if (this.requests.hasKey(key)) return APPLIED
    let slot = -1
    for (const op of unit.ops) {
      const opSlot = slotOf(op[1])
      if (!this.owned.has(opSlot)) return refuse(ErrorCode.WRONG_SHARD, `shard ${this.keys.shardId} does not own slot ${opSlot}`)
      if (this.frozen.has(opSlot)) return refuse(ErrorCode.STALE_EPOCH, `slot ${opSlot} of shard ${this.keys.shardId} is moving; retry`)
      slot = slot === -1 || slot === opSlot ? opSlot : NO_SLOT
    }
    for (const op of unit.ops) {
      if (op[0] === 0) ops.push({ type: 'put', key: this.keys.dataKey(op[1]), value: asBuffer(op[2]) })
      else ops.push({ type: 'del', key: this.keys.dataKey(op[1]) })
    }
    this.requests.addKeyed(key, unit.id, index, slot)
    return APPLIED
  }

  private applyIngest(command: Extract<ShardCommand, { t: 'ingest' }>, index: number, ops: EngineOp[]): ShardResult {
    for (const [key] of command.pairs) {
      // Ingest only fills slots this shard is about to claim; never overwrite live ones.
      if (this.owned.has(slotOf(key))) return refuse(ErrorCode.WRONG_SHARD, `ingest into slot ${slotOf(key)}, which shard ${this.keys.shardId} already owns`)
    }
    for (const [key, value] of command.pairs) ops.push({ type: 'put', key: this.keys.dataKey(Buffer.from(key)), value: Buffer.from(value) })
    // Request ids of the moving slots come along, so a write retried after the move is still answered, not re-applied.
    for (const record of command.requests ?? []) {
      const item = Buffer.from(record.buffer, record.byteOffset, ID_ITEM_BYTES)
      this.requests.add(item.subarray(0, 16), index, item.readUInt16BE(16))
    }
    return { ok: true }
  }

  /**
   * requestsOfSlots lists the request ids that must travel with `slots` when they move, as id (16
   * bytes) + slot (2 bytes): those of one-slot writes to them, and every wide (NO_SLOT) id, since a
   * wide write may have touched them (copying one it did not touch is harmless: it was applied).
   * At most `requestIdsMax` ids, 18 bytes each.
   */
  async requestsOfSlots(slots: Set<number>): Promise<Buffer[]> {
    const out: Buffer[] = []
    const iterator = this.engine.iterator({ gte: this.keys.ids, lt: this.keys.requestEnd })
    try {
      for (;;) {
        const batch = await iterator.nextBatch(1024)
        if (batch.length === 0) return out
        for (const [key, value] of batch) {
          for (const { id, slot } of this.requests.decode(key, value)?.items ?? []) {
            if (slot !== NO_SLOT && !slots.has(slot)) continue
            const item = Buffer.alloc(ID_ITEM_BYTES)
            id.copy(item, 0)
            item.writeUInt16BE(slot, 16)
            out.push(item)
          }
        }
      }
    } finally {
      await iterator.close()
    }
  }

  /**
   * applyPurge deletes the data of `slots` (released), at most purgeKeysMax keys per command, in
   * key order over content(), so the cut and `more` are the same on every replica. It walked the
   * engine alone once, which missed keys a write earlier in the same apply run had added: a
   * follower catching up (one run for many entries) kept them while the others deleted them
   * (replica divergence after slot moves, found by the jepsen suite; test/store/machine.test.ts).
   */
  private async applyPurge(slots: number[], ops: EngineOp[]): Promise<ShardResult> {
    const purge = new Set(slots)
    for (const slot of slots) if (this.owned.has(slot)) return refuse(ErrorCode.INVALID, `cannot purge slot ${slot}: still owned`)
    let deleted = 0
    // Deletes pushed to `ops` during the walk do not change it: content() took the pending ops first.
    for await (const [key] of this.content(this.keys.data, this.keys.dataEnd, ops, false)) {
      if (!purge.has(slotOf(this.keys.userKey(key)))) continue
      ops.push({ type: 'del', key })
      if (++deleted >= purgeKeysMax) return { ok: true, more: true }
    }
    return { ok: true }
  }

  /**
   * applyHash digests the shard's content (data pairs, then request-id records, each in key
   * order, then the slot record) as of this log index: the engine holds every earlier apply run,
   * `ops` this run's earlier entries. Every replica applies it at the same index, so equal content
   * gives equal digests. Request ids are included because, unlike data, they are never
   * overwritten: a write a replica lost stays visible. Streams the engine; memory is bounded by
   * this run's ops.
   */
  private async applyHash(index: number, ops: EngineOp[]): Promise<ShardResult> {
    const digest = createHash('sha256')
    let keys = 0
    for (const [gte, lt] of [[this.keys.data, this.keys.dataEnd], [this.keys.ids, this.keys.requestEnd]] as const) {
      keys += await this.digestRange(digest, gte, lt, ops)
    }
    digest.update(this.owned.bits).update(this.frozen.bits)
    this.lastHash = { index, hash: digest.digest('hex'), keys }
    return { ok: true, index, hash: this.lastHash.hash }
  }

  /** digestRange feeds [gte, lt) of the replica's content (content()) into `digest`; returns the pairs counted. */
  private async digestRange(digest: ReturnType<typeof createHash>, gte: Buffer, lt: Buffer, ops: EngineOp[]): Promise<number> {
    let count = 0
    for await (const [key, value] of this.content(gte, lt, ops, true)) {
      const lengths = Buffer.alloc(8)
      lengths.writeUInt32BE(key.length, 0)
      lengths.writeUInt32BE(value!.length, 4)
      digest.update(lengths).update(key).update(value!)
      count++
    }
    return count
  }

  /**
   * content yields the pairs of [gte, lt) as this replica holds them at the entry being applied,
   * in key order: the engine (every earlier apply run) overlaid with `ops` (this run's earlier
   * entries, not written yet; the last op per key wins, a delete hides the key). Without
   * `values`, engine pairs come with value undefined. Replicas split the log into apply runs
   * differently, so a command that reads the shard must read this, not the engine alone.
   */
  private async *content(gte: Buffer, lt: Buffer, ops: readonly EngineOp[], values: boolean): AsyncGenerator<readonly [Buffer, Buffer | undefined]> {
    const overlay = pendingOverlay(gte, lt, ops)
    let next = 0
    const iterator = this.engine.iterator({ gte, lt, values })
    try {
      for (;;) {
        const batch = await iterator.nextBatch(1024)
        if (batch.length === 0) break
        for (const [key, value] of batch) {
          for (; next < overlay.length && Buffer.compare(overlay[next]![0], key) < 0; next++) if (overlay[next]![1] !== undefined) yield overlay[next]!
          if (next < overlay.length && overlay[next]![0].equals(key)) {
            const pending = overlay[next++]!
            if (pending[1] !== undefined) yield pending
          } else {
            yield [key, values ? value : undefined]
          }
        }
      }
    } finally {
      await iterator.close()
    }
    for (; next < overlay.length; next++) if (overlay[next]![1] !== undefined) yield overlay[next]!
  }

  private applySlots(command: Extract<ShardCommand, { t: 'freeze' | 'claim' | 'release' }>): ShardResult {
    if (command.t === 'freeze') {
      for (const slot of command.slots) if (!this.owned.has(slot)) return refuse(ErrorCode.WRONG_SHARD, `cannot freeze slot ${slot}: not owned`)
      this.frozen.add(command.slots)
    } else if (command.t === 'claim') {
      this.owned.add(command.slots)
    } else {
      this.owned.delete(command.slots)
      this.frozen.delete(command.slots)
    }
    return { ok: true }
  }

  private setSlots(bytes: Uint8Array | undefined): void {
    const record = bytes === undefined ? undefined : (unpack(bytes) as { owned?: Uint8Array; frozen?: Uint8Array })
    this.owned = new SlotSet(record?.owned)
    this.frozen = new SlotSet(record?.frozen)
  }

  /** snapshot is every data key, request id and the slot record, as durable now. */
  async snapshot(): Promise<Uint8Array> {
    const pairs: Array<[Buffer, Buffer]> = []
    for (const [gte, lt] of [[this.keys.data, this.keys.dataEnd], [this.keys.ids, this.keys.requestEnd]] as const) {
      const iterator = this.engine.iterator({ gte, lt })
      try {
        for (;;) {
          const batch = await iterator.nextBatch(1024)
          if (batch.length === 0) break
          for (const [key, value] of batch) pairs.push([key.subarray(this.keys.data.length - 1), value])
        }
      } finally {
        await iterator.close()
      }
    }
    const slots = (await this.engine.get(this.keys.slots)) ?? null
    return pack({ pairs, slots })
  }

  async restore(snapshot: Snapshot): Promise<EngineOp[]> {
    const ops: EngineOp[] = []
    for (const [gte, lt] of [[this.keys.data, this.keys.dataEnd], [this.keys.ids, this.keys.requestEnd]] as const) {
      const iterator = this.engine.iterator({ gte, lt, values: false })
      try {
        for (;;) {
          const batch = await iterator.nextBatch(1024)
          if (batch.length === 0) break
          for (const [key] of batch) ops.push({ type: 'del', key })
        }
      } finally {
        await iterator.close()
      }
    }
    if (snapshot.data.byteLength === 0) {
      this.setSlots(undefined)
      this.requests.load([])
      return [...ops, { type: 'del', key: this.keys.slots }]
    }
    const decoded = unpack(snapshot.data) as { pairs?: Array<[Uint8Array, Uint8Array]>; slots?: Uint8Array | null }
    if (!Array.isArray(decoded?.pairs)) throw new KvError(ErrorCode.CORRUPTION, `shard ${this.keys.shardId}: malformed snapshot`)
    const base = this.keys.data.subarray(0, this.keys.data.length - 1)
    const records: Array<[Buffer, Buffer]> = []
    for (const [suffixed, value] of decoded.pairs) {
      const key = Buffer.concat([base, suffixed])
      ops.push({ type: 'put', key, value: Buffer.from(value) })
      if (Buffer.compare(key, this.keys.ids) >= 0 && Buffer.compare(key, this.keys.requestEnd) < 0) records.push([key, Buffer.from(value)])
    }
    ops.push(decoded.slots ? { type: 'put', key: this.keys.slots, value: Buffer.from(decoded.slots) } : { type: 'del', key: this.keys.slots })
    this.setSlots(decoded.slots ?? undefined)
    this.requests.load(records)
    return ops
  }
}

/**
 * pendingOverlay is the last pending op of each key of [gte, lt) in `ops`, in key order: the value
 * of a put, undefined for a delete. Overlaid on the engine it gives the replica's content as of
 * the entry being applied (ShardMachine.content).
 */
function pendingOverlay(gte: Buffer, lt: Buffer, ops: readonly EngineOp[]): Array<readonly [Buffer, Buffer | undefined]> {
  const pending = new Map<string, Buffer | undefined>()
  for (const op of ops) {
    if (Buffer.compare(op.key, gte) < 0 || Buffer.compare(op.key, lt) >= 0) continue
    pending.set(Buffer.from(op.key).toString('hex'), op.type === 'put' ? Buffer.from(op.value) : undefined)
  }
  return [...pending.entries()].map(([hex, value]) => [Buffer.from(hex, 'hex'), value] as const).sort((a, b) => Buffer.compare(a[0], b[0]))
}

/**
 * valueLocator tells where a value decoded from one of `entries` lies in the Raft log files: a
 * value is a view of its entry's data (the decoders do not copy), and an entry's data lies whole
 * at one place in a log file (RaftLogFiles.locate). Undefined when no entry of the run was located.
 */
function valueLocator(entries: readonly Entry[], locateData: (data: Uint8Array) => DataLocation | undefined): ((value: Buffer) => LogValueLocation | undefined) | undefined {
  let located: Array<{ data: Uint8Array; at: DataLocation }> | undefined
  for (const entry of entries) {
    const at = locateData(entry.data)
    if (at !== undefined) (located ??= []).push({ data: entry.data, at })
  }
  if (located === undefined) return undefined
  return (value) => {
    for (const { data, at } of located!) {
      const start = value.byteOffset - data.byteOffset
      if (value.buffer === data.buffer && start >= 0 && start + value.byteLength <= data.byteLength) return { file: at.file, offset: at.offset + start, durable: at.durable }
    }
    return undefined
  }
}
