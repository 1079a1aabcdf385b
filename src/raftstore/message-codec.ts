/**
 * Encoding of Raft message batches between nodes: a fixed binary layout (big-endian) rather
 * than a self-describing format, because appends carry most of the bytes a node sends and
 * their entries should cost one copy to encode and none to decode.
 *
 *   batch    := version u8 (1) | count u32 | message*
 *   message  := groupId f64 | type u8 | from f64 | to f64 | term f64 | logTerm f64 | index f64
 *               | commit f64 | rejectHint f64 | flags u8 (1 reject, 2 snapshot, 4 context)
 *               | entryCount u32 | entry* | snapshot? | context?
 *   entry    := term f64 | index f64 | type u8 (0 normal, 1 confChange) | length u32 | data
 *   snapshot := index f64 | term f64 | ids voters | ids learners | ids votersOutgoing | length u32 | data
 *   ids      := count u32 | f64*
 *   context  := length u32 | data
 *
 * Numbers travel as float64, which holds every safe integer exactly; the decoder accepts only
 * non-negative safe integers. Decoded byte fields (entry data, snapshot data, contexts) are
 * Buffer views of the received batch, not copies.
 *
 * Fault model: input comes from the network, so decoding checks every length against the bytes
 * present and every field's range, and reports a malformed batch as KV_ERR_PROTOCOL instead of
 * handing the core something it would assert on.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { ConfState, Entry, Message, MessageType, NodeId, Snapshot } from '../raft/types.js'

/** RaftEnvelope is one message addressed to one group; node ids are the same across the groups of a node. */
export interface RaftEnvelope {
  groupId: number
  message: Message
}

const VERSION = 1
const MESSAGE_TYPES: readonly MessageType[] = [
  'hup', 'beat', 'prop', 'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'snap',
  'heartbeat', 'heartbeatResp', 'unreachable', 'snapStatus', 'checkQuorum', 'transferLeader', 'timeoutNow',
  'readIndex', 'readIndexResp',
]
const TYPE_CODES = new Map<MessageType, number>(MESSAGE_TYPES.map((type, code) => [type, code]))
const FLAG_REJECT = 1
const FLAG_SNAPSHOT = 2
const FLAG_CONTEXT = 4
const BATCH_HEADER_BYTES = 1 + 4
const MESSAGE_HEADER_BYTES = 8 + 1 + 8 * 7 + 1 + 4
const ENTRY_HEADER_BYTES = 8 + 8 + 1 + 4

function idsBytes(ids: readonly NodeId[]): number {
  return 4 + 8 * ids.length
}

function snapshotBytes(snapshot: Snapshot): number {
  const cs = snapshot.meta.confState
  return 16 + idsBytes(cs.voters) + idsBytes(cs.learners) + idsBytes(cs.votersOutgoing) + 4 + snapshot.data.byteLength
}

/** messageBytes is a message's encoded size, less the entry data left out of line (larger than `inlineMax`). */
function messageBytes(m: Message, inlineMax: number): number {
  let bytes = MESSAGE_HEADER_BYTES
  for (const entry of m.entries) bytes += ENTRY_HEADER_BYTES + (entry.data.byteLength > inlineMax ? 0 : entry.data.byteLength)
  if (m.snapshot !== undefined) bytes += snapshotBytes(m.snapshot)
  if (m.context !== undefined) bytes += 4 + m.context.byteLength
  return bytes
}

/**
 * Writer appends fields to a buffer sized in advance. With `parts`, entry data larger than
 * `inlineMax` is not copied: the buffer written so far and a view of the data are pushed as
 * parts instead, and writing goes on in the same buffer (see encodeEnvelopeParts).
 */
class Writer {
  offset = 0
  private partStart = 0
  constructor(
    readonly out: Buffer,
    private readonly parts?: Buffer[],
    private readonly inlineMax = Infinity,
  ) {}

  /** entryData writes an entry's data, out of line when it is larger than inlineMax. */
  entryData(data: Uint8Array): void {
    if (this.parts === undefined || data.byteLength <= this.inlineMax) return this.bytes(data)
    this.u32(data.byteLength)
    this.parts.push(this.out.subarray(this.partStart, this.offset), Buffer.from(data.buffer, data.byteOffset, data.byteLength))
    this.partStart = this.offset
  }

  /** finish returns the parts, the buffer's unwritten tail excluded. */
  finish(): Buffer[] {
    this.parts!.push(this.out.subarray(this.partStart, this.offset))
    return this.parts!
  }

  number(value: number): void {
    this.offset = this.out.writeDoubleBE(value, this.offset)
  }

  byte(value: number): void {
    this.out[this.offset++] = value
  }

  u32(value: number): void {
    this.offset = this.out.writeUInt32BE(value, this.offset)
  }

  bytes(data: Uint8Array): void {
    this.u32(data.byteLength)
    this.out.set(data, this.offset)
    this.offset += data.byteLength
  }

  ids(ids: readonly NodeId[]): void {
    this.u32(ids.length)
    for (const id of ids) this.number(id)
  }
}

function writeMessage(w: Writer, groupId: number, m: Message): void {
  w.number(groupId)
  w.byte(TYPE_CODES.get(m.type)!)
  w.number(m.from)
  w.number(m.to)
  w.number(m.term)
  w.number(m.logTerm)
  w.number(m.index)
  w.number(m.commit)
  w.number(m.rejectHint)
  w.byte((m.reject ? FLAG_REJECT : 0) | (m.snapshot !== undefined ? FLAG_SNAPSHOT : 0) | (m.context !== undefined ? FLAG_CONTEXT : 0))
  w.u32(m.entries.length)
  for (const entry of m.entries) {
    w.number(entry.term)
    w.number(entry.index)
    w.byte(entry.type === 'confChange' ? 1 : 0)
    w.entryData(entry.data)
  }
  if (m.snapshot !== undefined) {
    const meta = m.snapshot.meta
    w.number(meta.index)
    w.number(meta.term)
    w.ids(meta.confState.voters)
    w.ids(meta.confState.learners)
    w.ids(meta.confState.votersOutgoing)
    w.bytes(m.snapshot.data)
  }
  if (m.context !== undefined) w.bytes(m.context)
}

/**
 * encodeEnvelopes packs a batch of messages for one destination into one buffer (entry data
 * copied once). `headroom` bytes are left unwritten before the batch, for a frame header the
 * caller fills in, so a frame leaves in one write without another copy.
 */
export function encodeEnvelopes(envelopes: readonly RaftEnvelope[], headroom = 0): Buffer {
  let size = BATCH_HEADER_BYTES
  for (const { message } of envelopes) size += messageBytes(message, Infinity)
  const w = new Writer(Buffer.allocUnsafe(headroom + size))
  w.offset = headroom
  w.byte(VERSION)
  w.u32(envelopes.length)
  for (const { groupId, message } of envelopes) writeMessage(w, groupId, message)
  return w.out
}

/**
 * encodeEnvelopeParts is encodeEnvelopes as a list of buffers whose concatenation is the same
 * bytes, with every entry's data larger than `inlineMax` a view of the entry rather than a copy:
 * a writev of the parts sends a batch of file chunks without copying their MiBs once per
 * follower. The first part starts with the `headroom` bytes.
 */
export function encodeEnvelopeParts(envelopes: readonly RaftEnvelope[], headroom: number, inlineMax: number): { parts: Buffer[]; bytes: number } {
  let size = BATCH_HEADER_BYTES
  let outOfLine = 0
  for (const { message } of envelopes) {
    size += messageBytes(message, inlineMax)
    for (const entry of message.entries) if (entry.data.byteLength > inlineMax) outOfLine += entry.data.byteLength
  }
  const w = new Writer(Buffer.allocUnsafe(headroom + size), [], inlineMax)
  w.offset = headroom
  w.byte(VERSION)
  w.u32(envelopes.length)
  for (const { groupId, message } of envelopes) writeMessage(w, groupId, message)
  return { parts: w.finish(), bytes: headroom + size + outOfLine }
}

function bad(what: string): KvError {
  return new KvError(ErrorCode.PROTOCOL, `malformed raft message: ${what}`)
}

/** Reader takes fields off a received batch, checking each against the bytes left. */
class Reader {
  offset = 0
  constructor(readonly input: Buffer) {}

  need(bytes: number, what: string): void {
    if (this.offset + bytes > this.input.length) throw bad(`${what} truncated`)
  }

  uint(what: string): number {
    this.need(8, what)
    const value = this.input.readDoubleBE(this.offset)
    this.offset += 8
    if (!Number.isSafeInteger(value) || value < 0) throw bad(what)
    return value
  }

  byte(what: string): number {
    this.need(1, what)
    return this.input[this.offset++]!
  }

  u32(what: string): number {
    this.need(4, what)
    const value = this.input.readUInt32BE(this.offset)
    this.offset += 4
    return value
  }

  /** count reads an element count and checks that `minBytes` per element can be present. */
  count(minBytes: number, what: string): number {
    const count = this.u32(what)
    this.need(count * minBytes, what)
    return count
  }

  bytes(what: string): Buffer {
    const length = this.u32(what)
    this.need(length, what)
    const out = this.input.subarray(this.offset, this.offset + length)
    this.offset += length
    return out
  }

  ids(what: string): NodeId[] {
    const count = this.count(8, what)
    const out: NodeId[] = []
    for (let i = 0; i < count; i++) out.push(this.uint(what))
    return out
  }
}

function readEntry(r: Reader): Entry {
  const term = r.uint('entry term')
  const index = r.uint('entry index')
  const type = r.byte('entry type')
  if (type !== 0 && type !== 1) throw bad('entry type')
  return { term, index, type: type === 1 ? 'confChange' : 'normal', data: r.bytes('entry data') }
}

function readSnapshot(r: Reader): Snapshot {
  const index = r.uint('snapshot index')
  const term = r.uint('snapshot term')
  const confState: ConfState = { voters: r.ids('voters'), learners: r.ids('learners'), votersOutgoing: r.ids('votersOutgoing') }
  return { meta: { index, term, confState }, data: r.bytes('snapshot data') }
}

function readMessage(r: Reader): RaftEnvelope {
  const groupId = r.uint('groupId')
  const type = MESSAGE_TYPES[r.byte('type')]
  if (type === undefined) throw bad('type')
  const from = r.uint('from')
  const to = r.uint('to')
  const term = r.uint('term')
  const logTerm = r.uint('logTerm')
  const index = r.uint('index')
  const commit = r.uint('commit')
  const rejectHint = r.uint('rejectHint')
  const flags = r.byte('flags')
  if ((flags & ~(FLAG_REJECT | FLAG_SNAPSHOT | FLAG_CONTEXT)) !== 0) throw bad('flags')
  const entryCount = r.count(ENTRY_HEADER_BYTES, 'entries')
  const entries: Entry[] = []
  for (let i = 0; i < entryCount; i++) entries.push(readEntry(r))
  const message: Message = { type, from, to, term, logTerm, index, commit, reject: (flags & FLAG_REJECT) !== 0, rejectHint, entries }
  if ((flags & FLAG_SNAPSHOT) !== 0) message.snapshot = readSnapshot(r)
  if ((flags & FLAG_CONTEXT) !== 0) message.context = r.bytes('context')
  return { groupId, message }
}

/** decodeEnvelopes is the inverse of encodeEnvelopes; malformed input is KV_ERR_PROTOCOL. */
export function decodeEnvelopes(buffer: Uint8Array): RaftEnvelope[] {
  const input = Buffer.isBuffer(buffer) ? buffer : Buffer.from(buffer.buffer, buffer.byteOffset, buffer.byteLength)
  const r = new Reader(input)
  if (r.byte('version') !== VERSION) throw bad('unknown batch version')
  const count = r.count(MESSAGE_HEADER_BYTES, 'batch')
  const out: RaftEnvelope[] = []
  for (let i = 0; i < count; i++) out.push(readMessage(r))
  if (r.offset !== input.length) throw bad('trailing bytes after the batch')
  return out
}
