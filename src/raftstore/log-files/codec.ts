/**
 * Binary format of the Raft log files (src/raftstore/log-files.ts): a file header, then framed
 * records, each holding one or more items. Encoding is on the hot path (one write per driver
 * iteration), so a write's records are sized first and encoded into ONE buffer.
 *
 *   file    = magic u32 ('RLOG') | version u32 | record*
 *   record  = length u32 | crc32 u32 (IEEE, of the payload) | payload (length bytes, at least one item)
 *   item    = type u8 | groupId u64 | body
 *   body    hardState:  term u64 | vote u64 | commit u64
 *           entries:    first u64 | count u32 | (term u64 | type u8 (0 normal, 1 confChange) | length u32 | data)*
 *           compact, snapshot: index u64 | term u64
 *           destroy:    (none)
 *           checkpoint (groupId 0): count u32 | (groupId u64 | term u64 | vote u64 | commit u64 |
 *                       truncated index u64 | truncated term u64 | last index u64)*
 * u64 is two u32 big-endian halves, exact up to Number.MAX_SAFE_INTEGER (as in records.ts).
 */
import { ErrorCode, KvError } from '../../errors.js'
import type { Entry, HardState } from '../../raft/types.js'
import { crc32 } from '../../crc32.js'
import { ENTRY_HEADER_BYTES, writeEntries } from '../records.js'

/** LOG_FILE_MAGIC opens every log file ('RLOG'). */
export const LOG_FILE_MAGIC = 0x524c4f47
/** LOG_FILE_VERSION is the format version written after the magic; open rejects any other. */
export const LOG_FILE_VERSION = 1
/** LOG_FILE_HEADER_BYTES: magic and version. */
export const LOG_FILE_HEADER_BYTES = 8
/** LOG_RECORD_HEADER_BYTES: length and crc32 of one record. */
export const LOG_RECORD_HEADER_BYTES = 8
/** logRecordBytesMax: largest payload of one record; write() rejects a larger one and replay treats a larger length as damage. */
export const logRecordBytesMax = 128 * 1024 * 1024

export const ITEM_HARD_STATE = 1
export const ITEM_ENTRIES = 2
export const ITEM_COMPACT = 3
export const ITEM_SNAPSHOT = 4
export const ITEM_DESTROY = 5
export const ITEM_CHECKPOINT = 6

const ITEM_HEADER_BYTES = 1 + 8
const ENTRIES_HEADER_BYTES = 8 + 4
const CHECKPOINT_GROUP_BYTES = 7 * 8

/** CheckpointGroup is one live group's state in a checkpoint item. */
export interface CheckpointGroup {
  groupId: number
  hardState: HardState
  truncated: { index: number; term: number }
  /** last: the group's last log index (truncated.index when its log is empty). */
  last: number
}

/** LogItem is one decoded item (a LogRecord, or a checkpoint). */
export type LogItem =
  | { type: 'hardState'; groupId: number; hardState: HardState }
  | { type: 'entries'; groupId: number; entries: Entry[] }
  | { type: 'compact' | 'snapshot'; groupId: number; index: number; term: number }
  | { type: 'destroy'; groupId: number }
  | { type: 'checkpoint'; groups: CheckpointGroup[] }

/** EncodableItem is what encodeItem writes; the public LogRecord plus the checkpoint. */
export type EncodableItem =
  | { type: 'hardState'; groupId: number; hardState: HardState }
  | { type: 'entries'; groupId: number; entries: readonly Entry[] }
  | { type: 'compact' | 'snapshot'; groupId: number; index: number; term: number }
  | { type: 'destroy'; groupId: number }
  | { type: 'checkpoint'; groups: readonly CheckpointGroup[] }

export function writeU64(buffer: Buffer, value: number, offset: number): void {
  buffer.writeUInt32BE(Math.floor(value / 0x1_0000_0000), offset)
  buffer.writeUInt32BE(value >>> 0, offset + 4)
}

export function readU64(buffer: Buffer, offset: number): number {
  return buffer.readUInt32BE(offset) * 0x1_0000_0000 + buffer.readUInt32BE(offset + 4)
}

/**
 * dataByReferenceBytesMin: entry data this long or longer is not copied into the encoded record:
 * encodeRecord leaves a gap for it and the write hands the entry's own bytes to writev. A file
 * chunk (1 MiB) then costs no copy and no MiB-sized buffer of its own on each replica, which
 * V8 counts as external memory and answers with mark-compacts (docs/raftstore.md, round 10).
 * Smaller data is copied: one contiguous buffer is cheaper than many iovecs for small entries.
 * NB: entry data must not change once proposed or received (nothing in distkv reuses those
 * buffers: chunks, commands and received frames are fresh allocations); the in-memory log and
 * the peer streams, which also send large entries by reference, rely on it as well.
 */
export const dataByReferenceBytesMin = 64 * 1024

/** DataGap: entry data left out of an encoded buffer, to be written at `at` of it (before the byte at `at`). */
export interface DataGap {
  at: number
  data: Uint8Array
}

/**
 * Placement asks the encoder to note where entry data of at least bytesMin that it copies into the
 * buffer goes (RaftLogFiles.locate): each at `at` of the buffer, after the data of the first
 * `gapsBefore` gaps, which writeParts inserts before it.
 */
export interface Placement {
  bytesMin: number
  placed: Array<{ at: number; data: Uint8Array; gapsBefore: number }>
}

/** referencedBytes is the entry data of `items` that encodeRecord leaves out of its buffer when given gaps. */
export function referencedBytes(items: readonly EncodableItem[]): number {
  let bytes = 0
  for (const item of items) {
    if (item.type !== 'entries') continue
    for (const entry of item.entries) if (entry.data.byteLength >= dataByReferenceBytesMin) bytes += entry.data.byteLength
  }
  return bytes
}

/** itemBytes is the encoded size of one item. */
export function itemBytes(item: EncodableItem): number {
  switch (item.type) {
    case 'hardState':
      return ITEM_HEADER_BYTES + 24
    case 'entries': {
      let size = ITEM_HEADER_BYTES + ENTRIES_HEADER_BYTES
      for (const entry of item.entries) size += ENTRY_HEADER_BYTES + entry.data.byteLength
      return size
    }
    case 'compact':
    case 'snapshot':
      return ITEM_HEADER_BYTES + 16
    case 'destroy':
      return ITEM_HEADER_BYTES
    case 'checkpoint':
      return ITEM_HEADER_BYTES + 4 + CHECKPOINT_GROUP_BYTES * item.groups.length
  }
}

/**
 * encodeItem writes `item` at `offset` of `buffer` (sized by itemBytes, less referencedBytes with
 * `gaps`) and returns the offset after it; with `gaps`, large entry data is pushed there instead.
 */
export function encodeItem(buffer: Buffer, item: EncodableItem, offset: number, gaps?: DataGap[], placement?: Placement): number {
  switch (item.type) {
    case 'hardState':
      offset = itemHeader(buffer, ITEM_HARD_STATE, item.groupId, offset)
      writeU64(buffer, item.hardState.term, offset)
      writeU64(buffer, item.hardState.vote, offset + 8)
      writeU64(buffer, item.hardState.commit, offset + 16)
      return offset + 24
    case 'entries':
      return encodeEntries(buffer, item.entries, itemHeader(buffer, ITEM_ENTRIES, item.groupId, offset), gaps, placement)
    case 'compact':
    case 'snapshot':
      offset = itemHeader(buffer, item.type === 'compact' ? ITEM_COMPACT : ITEM_SNAPSHOT, item.groupId, offset)
      writeU64(buffer, item.index, offset)
      writeU64(buffer, item.term, offset + 8)
      return offset + 16
    case 'destroy':
      return itemHeader(buffer, ITEM_DESTROY, item.groupId, offset)
    case 'checkpoint':
      offset = itemHeader(buffer, ITEM_CHECKPOINT, 0, offset)
      buffer.writeUInt32BE(item.groups.length, offset)
      offset += 4
      for (const group of item.groups) {
        writeU64(buffer, group.groupId, offset)
        writeU64(buffer, group.hardState.term, offset + 8)
        writeU64(buffer, group.hardState.vote, offset + 16)
        writeU64(buffer, group.hardState.commit, offset + 24)
        writeU64(buffer, group.truncated.index, offset + 32)
        writeU64(buffer, group.truncated.term, offset + 40)
        writeU64(buffer, group.last, offset + 48)
        offset += CHECKPOINT_GROUP_BYTES
      }
      return offset
  }
}

function itemHeader(buffer: Buffer, type: number, groupId: number, offset: number): number {
  buffer[offset] = type
  writeU64(buffer, groupId, offset + 1)
  return offset + ITEM_HEADER_BYTES
}

function encodeEntries(buffer: Buffer, entries: readonly Entry[], offset: number, gaps: DataGap[] | undefined, placement: Placement | undefined): number {
  writeU64(buffer, entries[0]!.index, offset)
  buffer.writeUInt32BE(entries.length, offset + 8)
  offset += ENTRIES_HEADER_BYTES
  if (gaps === undefined) return writeEntries(buffer, entries, offset)
  for (const entry of entries) {
    const length = entry.data.byteLength
    writeU64(buffer, entry.term, offset)
    buffer[offset + 8] = entry.type === 'confChange' ? 1 : 0
    buffer.writeUInt32BE(length, offset + 9)
    offset += ENTRY_HEADER_BYTES
    if (length >= dataByReferenceBytesMin) {
      gaps.push({ at: offset, data: entry.data })
    } else {
      if (placement !== undefined && length >= placement.bytesMin) placement.placed.push({ at: offset, data: entry.data, gapsBefore: gaps.length })
      buffer.set(entry.data, offset)
      offset += length
    }
  }
  return offset
}

/** writeFileHeader writes the magic and version at `offset`; returns the offset after them. */
export function writeFileHeader(buffer: Buffer, offset: number): number {
  buffer.writeUInt32BE(LOG_FILE_MAGIC, offset)
  buffer.writeUInt32BE(LOG_FILE_VERSION, offset + 4)
  return offset + LOG_FILE_HEADER_BYTES
}

/**
 * encodeRecord frames `items` as one record at `offset` (sized LOG_RECORD_HEADER_BYTES + the
 * items' bytes, less referencedBytes with `gaps`); returns the offset after it in `buffer`. With
 * `gaps`, entry data of dataByReferenceBytesMin or more is not copied but pushed to `gaps`: the
 * record on disk is the buffer with each gap's data inserted at its `at` (writeParts), and the
 * length and checksum here are those of that record.
 */
export function encodeRecord(buffer: Buffer, items: readonly EncodableItem[], offset: number, gaps?: DataGap[], placement?: Placement): number {
  const start = offset + LOG_RECORD_HEADER_BYTES
  const firstGap = gaps?.length ?? 0
  let end = start
  for (const item of items) end = encodeItem(buffer, item, end, gaps, placement)
  let length = end - start
  let crc = 0
  let at = start
  for (let i = firstGap; i < (gaps?.length ?? 0); i++) {
    const gap = gaps![i]!
    crc = crc32(gap.data, crc32(buffer.subarray(at, gap.at), crc))
    at = gap.at
    length += gap.data.byteLength
  }
  buffer.writeUInt32BE(length, offset)
  buffer.writeUInt32BE(crc32(buffer.subarray(at, end), crc), offset + 4)
  return end
}

/** writeParts returns what to write for an encoded `buffer` and its `gaps`: the buffer's pieces with each gap's data between them. */
export function writeParts(buffer: Buffer, gaps: readonly DataGap[]): Buffer[] {
  if (gaps.length === 0) return [buffer]
  const parts: Buffer[] = []
  let at = 0
  for (const gap of gaps) {
    if (gap.at > at) parts.push(buffer.subarray(at, gap.at))
    parts.push(Buffer.from(gap.data.buffer, gap.data.byteOffset, gap.data.byteLength))
    at = gap.at
  }
  if (buffer.length > at) parts.push(buffer.subarray(at))
  return parts
}

/** recordBytes is the framed size of a record holding `items`; KV_ERR_VALUE_TOO_LARGE past logRecordBytesMax. */
export function recordBytes(items: readonly EncodableItem[]): number {
  let size = 0
  for (const item of items) size += itemBytes(item)
  if (size > logRecordBytesMax) {
    throw new KvError(ErrorCode.VALUE_TOO_LARGE, `raft log record of ${size} bytes exceeds logRecordBytesMax (${logRecordBytesMax})`, { bytes: size })
  }
  return LOG_RECORD_HEADER_BYTES + size
}

/**
 * decodePayload returns the items of a record payload whose checksum held, or a string naming
 * what is malformed (a checksummed payload that does not parse is damage or a foreign format,
 * never a torn write). Entry data is copied out: the entries must not pin the file buffer.
 */
export function decodePayload(payload: Buffer): LogItem[] | string {
  const items: LogItem[] = []
  let offset = 0
  while (offset < payload.length) {
    if (offset + ITEM_HEADER_BYTES > payload.length) return 'short item header'
    const type = payload[offset]!
    const groupId = readU64(payload, offset + 1)
    offset += ITEM_HEADER_BYTES
    const fixed = FIXED_BODY_BYTES[type]
    if (fixed !== undefined && offset + fixed > payload.length) return `short item of type ${type}`
    switch (type) {
      case ITEM_HARD_STATE:
        items.push({ type: 'hardState', groupId, hardState: { term: readU64(payload, offset), vote: readU64(payload, offset + 8), commit: readU64(payload, offset + 16) } })
        offset += 24
        break
      case ITEM_COMPACT:
      case ITEM_SNAPSHOT:
        items.push({ type: type === ITEM_COMPACT ? 'compact' : 'snapshot', groupId, index: readU64(payload, offset), term: readU64(payload, offset + 8) })
        offset += 16
        break
      case ITEM_DESTROY:
        items.push({ type: 'destroy', groupId })
        break
      case ITEM_ENTRIES: {
        const decoded = decodeEntries(payload, offset)
        if (typeof decoded === 'string') return decoded
        items.push({ type: 'entries', groupId, entries: decoded.entries })
        offset = decoded.end
        break
      }
      case ITEM_CHECKPOINT: {
        const count = payload.readUInt32BE(offset)
        offset += 4
        if (offset + count * CHECKPOINT_GROUP_BYTES > payload.length) return 'short checkpoint'
        const groups: CheckpointGroup[] = []
        for (let i = 0; i < count; i++, offset += CHECKPOINT_GROUP_BYTES) {
          groups.push({
            groupId: readU64(payload, offset),
            hardState: { term: readU64(payload, offset + 8), vote: readU64(payload, offset + 16), commit: readU64(payload, offset + 24) },
            truncated: { index: readU64(payload, offset + 32), term: readU64(payload, offset + 40) },
            last: readU64(payload, offset + 48),
          })
        }
        items.push({ type: 'checkpoint', groups })
        break
      }
      default:
        return `unknown item type ${type}`
    }
  }
  return items.length > 0 ? items : 'empty record'
}

const FIXED_BODY_BYTES: Record<number, number> = {
  [ITEM_HARD_STATE]: 24,
  [ITEM_COMPACT]: 16,
  [ITEM_SNAPSHOT]: 16,
  [ITEM_DESTROY]: 0,
  [ITEM_ENTRIES]: ENTRIES_HEADER_BYTES,
  [ITEM_CHECKPOINT]: 4,
}

function decodeEntries(payload: Buffer, offset: number): { entries: Entry[]; end: number } | string {
  const first = readU64(payload, offset)
  const count = payload.readUInt32BE(offset + 8)
  if (count === 0) return 'entries item with no entries'
  offset += ENTRIES_HEADER_BYTES
  const entries: Entry[] = []
  for (let i = 0; i < count; i++) {
    if (offset + ENTRY_HEADER_BYTES > payload.length) return 'short entry header'
    const typeByte = payload[offset + 8]
    const length = payload.readUInt32BE(offset + 9)
    const end = offset + ENTRY_HEADER_BYTES + length
    if ((typeByte !== 0 && typeByte !== 1) || end > payload.length) return 'bad entry'
    // A copy: the entry must not pin the file's read buffer.
    const data = new Uint8Array(payload.subarray(offset + ENTRY_HEADER_BYTES, end))
    entries.push({ term: readU64(payload, offset), index: first + i, type: typeByte === 1 ? 'confChange' : 'normal', data })
    offset = end
  }
  return { entries, end: offset }
}
