/**
 * Replay of the Raft log files at open (src/raftstore/log-files.ts): scanning one file's records
 * (torn tail or corruption) and applying their items, in file order, to per-group state.
 *
 * Files are garbage-collected in any order, not as a prefix, so a replay can walk a kept old
 * file holding entries that a record in a deleted file replaced (dead entries), and can see
 * holes where a deleted file held entries that died later. So the replayed log of a group is
 * sparse (a map by index) while replaying and is checked once at the end: every index in
 * (truncated, last] must be present, else KV_ERR_CORRUPTION (a file holding live entries is
 * missing or an entries record left a gap). Why the result is right: every file but the first
 * starts with a checkpoint carrying each live group's hard state, truncated state and last index;
 * a group not in it is forgotten and entries past its last index are dropped. An entry live at
 * the last checkpoint is either in a kept file (and the latest record covering its index before
 * the checkpoint, so it is what the map holds) or its file was deleted because a record after
 * the checkpoint, in the active file that is never deleted, killed it (replacement, compaction,
 * snapshot, destroy): replaying that record kills whatever the map holds at the index too.
 */
import { open, readFile } from 'node:fs/promises'
import { basename } from 'node:path'
import { ErrorCode, KvError } from '../../errors.js'
import type { Entry, HardState } from '../../raft/types.js'
import { crc32 } from '../../crc32.js'
import { LOG_FILE_HEADER_BYTES, LOG_FILE_MAGIC, LOG_FILE_VERSION, LOG_RECORD_HEADER_BYTES, decodePayload, logRecordBytesMax, type LogItem } from './codec.js'

/** Run is a stretch of a group's live entries written to one file. */
export interface Run {
  first: number
  last: number
  file: number
}

/** ReplayedGroup is one group's state at the end of replay, with where its entries live. */
export interface ReplayedGroup {
  hardState: HardState
  truncated: { index: number; term: number }
  entries: Entry[]
  runs: Run[]
}

interface SparseGroup {
  hardState: HardState
  truncated: { index: number; term: number }
  /** last: the group's last index as the records say (truncated.index when the log is empty). */
  last: number
  entries: Map<number, { entry: Entry; file: number }>
  /** Invariant: every key of `entries` is in [low, high] (bounds, not necessarily present). */
  low: number
  high: number
}

function corruption(message: string, details: Record<string, unknown>): KvError {
  return new KvError(ErrorCode.CORRUPTION, message, details)
}

/** ScanResult: where the good records of a file end, and whether a torn tail follows them. */
export interface ScanResult {
  end: number
  torn: boolean
  /** headerMissing: the (last) file is too short for its header; it starts again empty. */
  headerMissing: boolean
}

/**
 * scanFile checks `buffer` (all of file `file`, at `path`) and hands each record's items to
 * `apply` in order. A damaged record at the tail of the last file is a torn write (ScanResult.torn);
 * damage anywhere else is KV_ERR_CORRUPTION naming the file and offset.
 */
export function scanFile(buffer: Buffer, path: string, isLast: boolean, apply: (items: LogItem[], offset: number) => void): ScanResult {
  // All zeros is a preallocated file whose first write was lost (or never made): nothing torn.
  const zeros = isLast && allZero(buffer, 0)
  if (buffer.length < LOG_FILE_HEADER_BYTES || zeros) {
    if (isLast) return { end: 0, torn: !zeros, headerMissing: true }
    throw corruption(`raft log file ${path} is shorter than its header`, { path, offset: 0 })
  }
  if (buffer.readUInt32BE(0) !== LOG_FILE_MAGIC || buffer.readUInt32BE(4) !== LOG_FILE_VERSION) {
    throw corruption(`raft log file ${path} has a foreign header`, { path, offset: 0 })
  }
  let offset = LOG_FILE_HEADER_BYTES
  while (offset < buffer.length) {
    const damage = checkRecord(buffer, offset)
    if (damage !== undefined) {
      // Zeros to the end of the last file are its preallocated space (RaftLogFiles writes each
      // file full of zeros before using it), or writes lost whole: the records end here, and the
      // file keeps its length (appends continue in place, still without growing it).
      if (isLast && allZero(buffer, offset)) return { end: offset, torn: false, headerMissing: false }
      // In the last file every other damage is a torn tail (see checkRecord's NB): cut there.
      if (isLast) return { end: offset, torn: true, headerMissing: false }
      throw corruption(`raft log file ${path} is damaged at offset ${offset}: ${damage.reason}`, { path, offset })
    }
    const length = buffer.readUInt32BE(offset)
    const items = decodePayload(buffer.subarray(offset + LOG_RECORD_HEADER_BYTES, offset + LOG_RECORD_HEADER_BYTES + length))
    if (typeof items === 'string') throw corruption(`raft log file ${path} holds a malformed record at offset ${offset}: ${items}`, { path, offset })
    apply(items, offset)
    offset += LOG_RECORD_HEADER_BYTES + length
  }
  return { end: offset, torn: false, headerMissing: false }
}

/**
 * checkRecord returns undefined for a sound record at `offset`, else why not and whether the
 * damage can be a torn write: one that reaches the end of the file (short header, short record,
 * or a bad checksum on the record that ends the file) or a zero-filled rest of the file (a file
 * system may expose unwritten blocks as zeros after a crash).
 * `tail` only matters for the error's wording: scanFile cuts the last file at ANY damage. A power
 * cut can keep a later unsynced write and lose (or tear) an earlier one, since the disk writes
 * dirty pages back in no particular order; bytes after damage in the last file were then never
 * covered by a completed fdatasync (it covers every earlier byte of the file), so nothing there
 * was acknowledged, and refusing to open would only keep the node down. The exception is a
 * synced record that rotted on the medium: it is dropped too (docs/raftstore.md, fault model).
 */
function checkRecord(buffer: Buffer, offset: number): { reason: string; tail: boolean } | undefined {
  if (offset + LOG_RECORD_HEADER_BYTES > buffer.length) return { reason: 'short record header', tail: true }
  const length = buffer.readUInt32BE(offset)
  const end = offset + LOG_RECORD_HEADER_BYTES + length
  if (length === 0 || length > logRecordBytesMax) return { reason: `record length ${length} out of range (logRecordBytesMax ${logRecordBytesMax})`, tail: allZero(buffer, offset) }
  if (end > buffer.length) return { reason: 'short record', tail: true }
  if (crc32(buffer.subarray(offset + LOG_RECORD_HEADER_BYTES, end)) !== buffer.readUInt32BE(offset + 4)) {
    return { reason: 'checksum mismatch', tail: end === buffer.length || allZero(buffer, offset) }
  }
  return undefined
}

const ZEROS = Buffer.alloc(64 * 1024)

/** allZero tells whether buffer[from..] is all zero bytes (compared a slice at a time: a preallocated file is mostly zeros). */
function allZero(buffer: Buffer, from: number): boolean {
  for (let at = from; at < buffer.length; at += ZEROS.length) {
    const end = Math.min(buffer.length, at + ZEROS.length)
    if (!buffer.subarray(at, end).equals(ZEROS.subarray(0, end - at))) return false
  }
  return true
}

/** Replay applies decoded items in log order to a sparse per-group state (module comment). */
export class Replay {
  readonly #groups = new Map<number, SparseGroup>()

  apply(item: LogItem, file: number): void {
    if (item.type === 'checkpoint') return this.applyCheckpoint(item.groups)
    if (item.type === 'destroy') {
      this.#groups.delete(item.groupId)
      return
    }
    const group = this.group(item.groupId)
    switch (item.type) {
      case 'hardState':
        group.hardState = item.hardState
        return
      case 'entries':
        return appendEntries(group, item.entries, file)
      case 'compact':
        if (item.index < group.truncated.index) return
        dropBelow(group, item.index)
        group.truncated = { index: item.index, term: item.term }
        group.last = Math.max(group.last, item.index)
        return
      case 'snapshot':
        group.entries.clear()
        group.truncated = { index: item.index, term: item.term }
        group.last = item.index
    }
  }

  /** finish checks every group's log is whole and returns the groups (KV_ERR_CORRUPTION naming the first missing index otherwise). */
  finish(): Map<number, ReplayedGroup> {
    const out = new Map<number, ReplayedGroup>()
    for (const [groupId, group] of this.#groups) {
      const entries: Entry[] = []
      const runs: Run[] = []
      for (let index = group.truncated.index + 1; index <= group.last; index++) {
        const found = group.entries.get(index)
        if (found === undefined) {
          throw corruption(`raft log of group ${groupId} is missing entry ${index} (truncated ${group.truncated.index}, last ${group.last}): a log file holding it is missing or damaged`, { groupId, index })
        }
        entries.push(found.entry)
        const run = runs[runs.length - 1]
        if (run !== undefined && run.file === found.file) run.last = index
        else runs.push({ first: index, last: index, file: found.file })
      }
      out.set(groupId, { hardState: group.hardState, truncated: group.truncated, entries, runs })
    }
    return out
  }

  private group(groupId: number): SparseGroup {
    let group = this.#groups.get(groupId)
    if (group === undefined) {
      group = { hardState: { term: 0, vote: 0, commit: 0 }, truncated: { index: 0, term: 0 }, last: 0, entries: new Map(), low: 0, high: 0 }
      this.#groups.set(groupId, group)
    }
    return group
  }

  private applyCheckpoint(groups: readonly { groupId: number; hardState: HardState; truncated: { index: number; term: number }; last: number }[]): void {
    const listed = new Set<number>()
    for (const state of groups) {
      listed.add(state.groupId)
      const group = this.group(state.groupId)
      group.hardState = state.hardState
      group.truncated = state.truncated
      group.last = state.last
      dropBelow(group, state.truncated.index)
      dropFrom(group, state.last + 1)
    }
    for (const groupId of this.#groups.keys()) if (!listed.has(groupId)) this.#groups.delete(groupId)
  }
}

/** appendEntries replaces the log from the first entry above truncated on (entries at or below it are skipped). */
function appendEntries(group: SparseGroup, entries: readonly Entry[], file: number): void {
  const last = entries[entries.length - 1]!.index
  if (last <= group.truncated.index) return
  const skip = Math.max(0, group.truncated.index + 1 - entries[0]!.index)
  const first = entries[skip]!.index
  dropFrom(group, first)
  if (group.entries.size === 0) group.low = first
  for (let i = skip; i < entries.length; i++) group.entries.set(entries[i]!.index, { entry: entries[i]!, file })
  group.high = last
  group.last = last
}

/** dropBelow forgets entries at or below `index`. */
function dropBelow(group: SparseGroup, index: number): void {
  if (group.entries.size === 0) return
  if (index >= group.high) {
    group.entries.clear()
    return
  }
  for (let i = group.low; i <= index; i++) group.entries.delete(i)
  group.low = Math.max(group.low, index + 1)
}

/** dropFrom forgets entries at or above `index`. */
function dropFrom(group: SparseGroup, index: number): void {
  if (group.entries.size === 0) return
  if (index <= group.low) {
    group.entries.clear()
    return
  }
  for (let i = index; i <= group.high; i++) group.entries.delete(i)
  group.high = Math.min(group.high, index - 1)
}

/** ReplayResult is the state of every group after replaying all files, with each file's length of good records. */
export interface ReplayResult {
  groups: Map<number, ReplayedGroup>
  sizes: number[]
  /** headerMissing: the last file is too short for its header (it starts again, with a header and checkpoint). */
  headerMissing: boolean
}

/** replayFiles reads `paths` (file `numbers[i]` each) in order, cutting a torn tail off the last one (a warning), and replays them. */
export async function replayFiles(paths: string[], numbers: number[], logger?: (level: 'warn', message: string, details: Record<string, unknown>) => void): Promise<ReplayResult> {
  const replay = new Replay()
  const sizes: number[] = []
  let headerMissing = false
  for (const [i, path] of paths.entries()) {
    const number = numbers[i]!
    const scanned = scanFile(await readFile(path), path, i === paths.length - 1, (items) => items.forEach((item) => replay.apply(item, number)))
    sizes.push(scanned.end)
    headerMissing = scanned.headerMissing
    if (!scanned.torn) continue
    // Made durable by the fdatasync of the last file at open.
    const handle = await open(path, 'r+')
    try {
      const size = (await handle.stat()).size
      await handle.truncate(scanned.end)
      logger?.('warn', `raft log: torn write at the tail of ${basename(path)} cut off`, { path, offset: scanned.end, bytes: size - scanned.end })
    } finally {
      await handle.close()
    }
  }
  return { groups: replay.finish(), sizes, headerMissing }
}
