/**
 * On-disk layout of the Raft state of every group hosted on one engine: the keys (a per-group
 * prefix, so many groups share one RocksDB) and the checksummed records stored under them.
 *
 * Fault model: a crash can leave the last write torn and a disk can flip bits. Every record
 * carries a CRC32 of its payload (and log runs repeat their first index), so a damaged record
 * is detected on load rather than trusted; what to do about it is decided by log-storage.ts.
 *
 * Key space (all integers big-endian so keys sort numerically):
 *   0x01 | group u64 | 0x01                -> hard state     { term, vote, commit }
 *   0x01 | group u64 | 0x02                -> applied state  { index, term, confState }
 *   0x01 | group u64 | 0x03                -> truncated state { index, term } (log compacted up to here)
 *   0x01 | group u64 | 0x04 | index u64    -> log run: the entries index, index+1, ... appended together
 * A log run holds every entry one Ready appended (one engine key per driver iteration, not per
 * entry: RocksDB's memtable insert, WAL record and later delete are paid once per run).
 * The 0x01 first byte is reserved for raftstore; state machines must keep their data elsewhere.
 */
import { crc32 } from '../crc32.js'
import { pack, unpack } from 'msgpackr'
import { ErrorCode, KvError } from '../errors.js'
import type { ConfState, Entry, EntryType, HardState } from '../raft/types.js'

/** RAFT_KEY_SPACE is the first byte of every key raftstore writes. */
export const RAFT_KEY_SPACE = 0x01

const SUFFIX_HARD_STATE = 0x01
const SUFFIX_APPLIED_STATE = 0x02
const SUFFIX_TRUNCATED_STATE = 0x03
const SUFFIX_ENTRY = 0x04

const PREFIX_BYTES = 1 + 8

/** GROUP_PREFIX_BYTES: length of groupPrefix(id), the key space byte and the group id (u64). */
export const GROUP_PREFIX_BYTES = PREFIX_BYTES

/** groupIdOfKey is the group id in the prefix of a key of the Raft key space (the caller checks the key space byte and length). */
export function groupIdOfKey(key: Buffer): number {
  return readU64(key, 1)
}
const CHECKSUM_BYTES = 4
const RUN_HEADER_BYTES = 1 + 8 + 4
/** RUN_MAGIC starts every log run's payload; a per-entry record of the earlier format starts with its term's high byte, 0. */
const RUN_MAGIC = 0x52
const LEGACY_ENTRY_HEADER_BYTES = 8 + 8 + 1
const RUN_ENTRY_HEADER_BYTES = 8 + 1 + 4

/** GROUP_ID_MAX is the largest group id (ids are stored as u64 but must stay exact JS numbers). */
export const GROUP_ID_MAX = Number.MAX_SAFE_INTEGER

/** AppliedState is what the state machine has durably applied, written in the same batch as that data. */
export interface AppliedState {
  index: number
  term: number
  /** confState is the membership as of `index` (conf changes are applied by the driver). */
  confState: ConfState
}

/** TruncatedState marks the compaction point: entries up to `index` are gone, `term` is the term at `index`. */
export interface TruncatedState {
  index: number
  term: number
}

function writeU64(buffer: Buffer, value: number, offset: number): void {
  buffer.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset)
  buffer.writeUInt32BE(value >>> 0, offset + 4)
}

function readU64(buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 0x1_0000_0000 + buffer.readUInt32BE(offset + 4)
}

/** checkGroupId rejects ids that cannot be encoded exactly. */
export function checkGroupId(groupId: number): void {
  if (!Number.isSafeInteger(groupId) || groupId < 1 || groupId > GROUP_ID_MAX) {
    throw new KvError(ErrorCode.INVALID, `raft group id must be an integer in [1, ${GROUP_ID_MAX}], got ${String(groupId)}`, { groupId })
  }
}

/** groupPrefix is the key prefix under which every Raft record of `groupId` lives. */
export function groupPrefix(groupId: number): Buffer {
  const key = Buffer.alloc(PREFIX_BYTES)
  key[0] = RAFT_KEY_SPACE
  writeU64(key, groupId, 1)
  return key
}

function suffixKey(groupId: number, suffix: number): Buffer {
  const key = Buffer.alloc(PREFIX_BYTES + 1)
  groupPrefix(groupId).copy(key)
  key[PREFIX_BYTES] = suffix
  return key
}

/** hardStateKey is where a group's HardState lives. */
export function hardStateKey(groupId: number): Buffer {
  return suffixKey(groupId, SUFFIX_HARD_STATE)
}

/** appliedStateKey is where a group's AppliedState lives. */
export function appliedStateKey(groupId: number): Buffer {
  return suffixKey(groupId, SUFFIX_APPLIED_STATE)
}

/** truncatedStateKey is where a group's TruncatedState lives. */
export function truncatedStateKey(groupId: number): Buffer {
  return suffixKey(groupId, SUFFIX_TRUNCATED_STATE)
}

/** entryKey is the key of the log entry at `index`; keys of one group sort by index. */
export function entryKey(groupId: number, index: number): Buffer {
  const key = Buffer.alloc(PREFIX_BYTES + 1 + 8)
  groupPrefix(groupId).copy(key)
  key[PREFIX_BYTES] = SUFFIX_ENTRY
  writeU64(key, index, PREFIX_BYTES + 1)
  return key
}

/** entryIndexFromKey reads the index back out of an entryKey. */
export function entryIndexFromKey(key: Buffer): number {
  return readU64(key, PREFIX_BYTES + 1)
}

function seal(payload: Buffer): Buffer {
  const record = Buffer.allocUnsafe(CHECKSUM_BYTES + payload.length)
  payload.copy(record, CHECKSUM_BYTES)
  record.writeUInt32BE(crc32(payload), 0)
  return record
}

/** unseal returns the payload of a record, or undefined when it is too short or its checksum fails. */
function unseal(record: Buffer): Buffer | undefined {
  if (record.length < CHECKSUM_BYTES) return undefined
  const payload = record.subarray(CHECKSUM_BYTES)
  return record.readUInt32BE(0) === crc32(payload) ? payload : undefined
}

/** ENTRY_HEADER_BYTES: bytes before each entry's data in a run (and in a log-files entries item): term u64 | type u8 | length u32. */
export const ENTRY_HEADER_BYTES = RUN_ENTRY_HEADER_BYTES

/** writeEntries writes `(term u64 | type u8 | length u32 | data)*` at `offset` (log runs and log-files entries items share it); returns the end offset. */
export function writeEntries(buffer: Buffer, entries: readonly Entry[], offset: number): number {
  for (const entry of entries) {
    writeU64(buffer, entry.term, offset)
    buffer[offset + 8] = entry.type === 'confChange' ? 1 : 0
    buffer.writeUInt32BE(entry.data.byteLength, offset + 9)
    buffer.set(entry.data, offset + RUN_ENTRY_HEADER_BYTES)
    offset += RUN_ENTRY_HEADER_BYTES + entry.data.byteLength
  }
  return offset
}

/**
 * encodeRun is the stored form of consecutive log entries (at least one):
 * crc32 | 0x52 | first index u64 | count u32 | (term u64 | type u8 | length u32 | data)*.
 */
export function encodeRun(entries: readonly Entry[]): Buffer {
  let size = CHECKSUM_BYTES + RUN_HEADER_BYTES
  for (const entry of entries) size += RUN_ENTRY_HEADER_BYTES + entry.data.byteLength
  const record = Buffer.allocUnsafe(size)
  record[CHECKSUM_BYTES] = RUN_MAGIC
  writeU64(record, entries[0]!.index, CHECKSUM_BYTES + 1)
  record.writeUInt32BE(entries.length, CHECKSUM_BYTES + 9)
  writeEntries(record, entries, CHECKSUM_BYTES + RUN_HEADER_BYTES)
  record.writeUInt32BE(crc32(record.subarray(CHECKSUM_BYTES)), 0)
  return record
}

/**
 * decodeRun returns the entries stored in `record`, or undefined if it is damaged or does not
 * start at `first`. A record of the earlier one-entry-per-key format (crc32 | term u64 |
 * index u64 | type u8 | data) reads as a run of one, so logs written before runs still open.
 */
export function decodeRun(record: Buffer, first: number): Entry[] | undefined {
  const payload = unseal(record)
  if (payload === undefined || payload.length === 0) return undefined
  if (payload[0] !== RUN_MAGIC) return decodeLegacyEntry(payload, first)
  if (payload.length < RUN_HEADER_BYTES || readU64(payload, 1) !== first) return undefined
  const count = payload.readUInt32BE(9)
  const entries: Entry[] = []
  let offset = RUN_HEADER_BYTES
  for (let i = 0; i < count; i++) {
    if (offset + RUN_ENTRY_HEADER_BYTES > payload.length) return undefined
    const typeByte = payload[offset + 8]
    const length = payload.readUInt32BE(offset + 9)
    const end = offset + RUN_ENTRY_HEADER_BYTES + length
    if ((typeByte !== 0 && typeByte !== 1) || end > payload.length) return undefined
    const type: EntryType = typeByte === 1 ? 'confChange' : 'normal'
    // Copy the data out so the entry does not pin the engine's read buffer.
    entries.push({ term: readU64(payload, offset), index: first + i, type, data: new Uint8Array(payload.subarray(offset + RUN_ENTRY_HEADER_BYTES, end)) })
    offset = end
  }
  return count > 0 && offset === payload.length ? entries : undefined
}

function decodeLegacyEntry(payload: Buffer, index: number): Entry[] | undefined {
  const typeByte = payload[16]
  if (payload.length < LEGACY_ENTRY_HEADER_BYTES || readU64(payload, 8) !== index || (typeByte !== 0 && typeByte !== 1)) return undefined
  const data = new Uint8Array(payload.subarray(LEGACY_ENTRY_HEADER_BYTES))
  return [{ term: readU64(payload, 0), index, type: typeByte === 1 ? 'confChange' : 'normal', data }]
}

/** encodeHardState is crc32 | term u64 | vote u64 | commit u64. */
export function encodeHardState(hs: HardState): Buffer {
  const payload = Buffer.allocUnsafe(24)
  writeU64(payload, hs.term, 0)
  writeU64(payload, hs.vote, 8)
  writeU64(payload, hs.commit, 16)
  return seal(payload)
}

/** decodeHardState returns undefined for a damaged record. */
export function decodeHardState(record: Buffer): HardState | undefined {
  const payload = unseal(record)
  if (payload === undefined || payload.length !== 24) return undefined
  return { term: readU64(payload, 0), vote: readU64(payload, 8), commit: readU64(payload, 16) }
}

/** encodeAppliedState is crc32 | msgpack [index, term, voters, learners, votersOutgoing]. */
export function encodeAppliedState(state: AppliedState): Buffer {
  const cs = state.confState
  return seal(pack([state.index, state.term, cs.voters, cs.learners, cs.votersOutgoing]))
}

function isIdList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((id) => Number.isSafeInteger(id) && id > 0)
}

/** decodeAppliedState returns undefined for a damaged record. */
export function decodeAppliedState(record: Buffer): AppliedState | undefined {
  const payload = unseal(record)
  if (payload === undefined) return undefined
  let fields: unknown
  try {
    fields = unpack(payload)
  } catch {
    return undefined
  }
  if (!Array.isArray(fields) || fields.length !== 5) return undefined
  const [index, term, voters, learners, votersOutgoing] = fields as unknown[]
  if (!Number.isSafeInteger(index) || !Number.isSafeInteger(term)) return undefined
  if (!isIdList(voters) || !isIdList(learners) || !isIdList(votersOutgoing)) return undefined
  return { index: index as number, term: term as number, confState: { voters, learners, votersOutgoing } }
}

/** encodeTruncatedState is crc32 | index u64 | term u64. */
export function encodeTruncatedState(state: TruncatedState): Buffer {
  const payload = Buffer.allocUnsafe(16)
  writeU64(payload, state.index, 0)
  writeU64(payload, state.term, 8)
  return seal(payload)
}

/** decodeTruncatedState returns undefined for a damaged record. */
export function decodeTruncatedState(record: Buffer): TruncatedState | undefined {
  const payload = unseal(record)
  if (payload === undefined || payload.length !== 16) return undefined
  return { index: readU64(payload, 0), term: readU64(payload, 8) }
}
