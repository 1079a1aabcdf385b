/**
 * Encoding of Raft messages between nodes (msgpack, one positional array per message so field
 * names are not repeated in every heartbeat). Byte fields (entry data, snapshot data, read
 * contexts) travel as msgpack bin and come back as Buffers.
 *
 * Fault model: input comes from the network, so decoding validates every field and reports a
 * malformed batch as KV_ERR_PROTOCOL instead of handing the core something it would assert on.
 */
import { Packr } from 'msgpackr'
import { ErrorCode, KvError } from '../errors.js'
import type { ConfState, Entry, Message, MessageType, NodeId, Snapshot } from '../raft/types.js'

/** RaftEnvelope is one message addressed to one group; node ids are the same across the groups of a node. */
export interface RaftEnvelope {
  groupId: number
  message: Message
}

const MESSAGE_TYPES: readonly MessageType[] = [
  'hup', 'beat', 'prop', 'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'snap',
  'heartbeat', 'heartbeatResp', 'unreachable', 'snapStatus', 'checkQuorum', 'transferLeader', 'timeoutNow',
  'readIndex', 'readIndexResp',
]
const TYPE_CODES = new Map<MessageType, number>(MESSAGE_TYPES.map((type, code) => [type, code]))

const packr = new Packr({ useRecords: false, moreTypes: false })

function encodeConfState(cs: ConfState): unknown[] {
  return [cs.voters, cs.learners, cs.votersOutgoing]
}

function encodeSnapshot(snapshot: Snapshot): unknown[] {
  const meta = snapshot.meta
  return [meta.index, meta.term, encodeConfState(meta.confState), snapshot.data]
}

function encodeMessage(envelope: RaftEnvelope): unknown[] {
  const m = envelope.message
  const entries = m.entries.map((e) => [e.term, e.index, e.type === 'confChange' ? 1 : 0, e.data])
  return [
    envelope.groupId, TYPE_CODES.get(m.type), m.from, m.to, m.term, m.logTerm, m.index, m.commit,
    m.reject ? 1 : 0, m.rejectHint, entries, m.snapshot === undefined ? null : encodeSnapshot(m.snapshot),
    m.context === undefined ? null : m.context,
  ]
}

/** encodeEnvelopes packs a batch of messages for one destination into one buffer. */
export function encodeEnvelopes(envelopes: readonly RaftEnvelope[]): Buffer {
  return packr.pack(envelopes.map(encodeMessage))
}

function bad(what: string): KvError {
  return new KvError(ErrorCode.PROTOCOL, `malformed raft message: ${what}`)
}

function uint(value: unknown, what: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw bad(what)
  return value
}

function bytes(value: unknown, what: string): Buffer {
  if (!(value instanceof Uint8Array)) throw bad(what)
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

function ids(value: unknown, what: string): NodeId[] {
  if (!Array.isArray(value)) throw bad(what)
  return value.map((id) => uint(id, what))
}

function decodeEntry(value: unknown): Entry {
  if (!Array.isArray(value) || value.length !== 4) throw bad('entry')
  const [term, index, type, data] = value as unknown[]
  if (type !== 0 && type !== 1) throw bad('entry type')
  return { term: uint(term, 'entry term'), index: uint(index, 'entry index'), type: type === 1 ? 'confChange' : 'normal', data: bytes(data, 'entry data') }
}

function decodeSnapshot(value: unknown): Snapshot {
  if (!Array.isArray(value) || value.length !== 4) throw bad('snapshot')
  const [index, term, cs, data] = value as unknown[]
  if (!Array.isArray(cs) || cs.length !== 3) throw bad('snapshot confState')
  const confState: ConfState = { voters: ids(cs[0], 'voters'), learners: ids(cs[1], 'learners'), votersOutgoing: ids(cs[2], 'votersOutgoing') }
  return { meta: { index: uint(index, 'snapshot index'), term: uint(term, 'snapshot term'), confState }, data: bytes(data, 'snapshot data') }
}

function decodeMessage(value: unknown): RaftEnvelope {
  if (!Array.isArray(value) || value.length !== 13) throw bad('envelope')
  const f = value as unknown[]
  const type = MESSAGE_TYPES[uint(f[1], 'type')]
  if (type === undefined) throw bad('type')
  if (!Array.isArray(f[10])) throw bad('entries')
  const message: Message = {
    type,
    from: uint(f[2], 'from'),
    to: uint(f[3], 'to'),
    term: uint(f[4], 'term'),
    logTerm: uint(f[5], 'logTerm'),
    index: uint(f[6], 'index'),
    commit: uint(f[7], 'commit'),
    reject: f[8] === 1,
    rejectHint: uint(f[9], 'rejectHint'),
    entries: (f[10] as unknown[]).map(decodeEntry),
  }
  if (f[11] !== null) message.snapshot = decodeSnapshot(f[11])
  if (f[12] !== null) message.context = bytes(f[12], 'context')
  return { groupId: uint(f[0], 'groupId'), message }
}

/** decodeEnvelopes is the inverse of encodeEnvelopes; malformed input is KV_ERR_PROTOCOL. */
export function decodeEnvelopes(buffer: Uint8Array): RaftEnvelope[] {
  let value: unknown
  try {
    value = packr.unpack(buffer)
  } catch (error) {
    throw new KvError(ErrorCode.PROTOCOL, `malformed raft message batch: ${(error as Error).message}`)
  }
  if (!Array.isArray(value)) throw bad('batch is not an array')
  return value.map(decodeMessage)
}
