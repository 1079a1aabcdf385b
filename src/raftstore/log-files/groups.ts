/**
 * The writer's view of each group in the Raft log files (src/raftstore/log-files.ts): its hard
 * and truncated state, last index, and the runs of live entries by file, with a count of live
 * runs per file so garbage collection knows which files hold nothing live. Also the checks a
 * write's records must pass before a byte of them is encoded (the file must stay replayable).
 */
import { ErrorCode, KvError } from '../../errors.js'
import type { Entry, HardState } from '../../raft/types.js'
import { checkGroupId } from '../records.js'
import type { Run } from './replay.js'
import type { LogRecord } from '../log-files.js'

/** GroupState is one live group as the files hold it. Invariant: runs are contiguous and cover exactly truncated.index+1 .. last. */
export interface GroupState {
  hardState: HardState
  truncated: { index: number; term: number }
  last: number
  runs: Run[]
}

/** FileLiveness counts a file's live runs; deadSeq is the write that made the count reach zero. */
export interface FileLiveness {
  liveRuns: number
  deadSeq: number
}

function invalid(message: string, details: Record<string, unknown>): KvError {
  return new KvError(ErrorCode.INVALID, message, details)
}

function checkCounter(value: unknown, field: string, groupId: number): void {
  if (!Number.isSafeInteger(value) || (value as number) < 0) throw invalid(`raft log record: ${field} must be a non-negative safe integer`, { groupId, field, value })
}

/**
 * checkRecords validates `records` against the groups' current state, as applied in order
 * (KV_ERR_INVALID on the first bad one; nothing is written then). Entries must be contiguous and
 * must not leave a gap after the group's last index; compaction never moves truncated backwards.
 */
export function checkRecords(records: readonly LogRecord[], groups: ReadonlyMap<number, GroupState>): void {
  if (!Array.isArray(records)) throw invalid('raft log write: records must be an array', {})
  let touched: Map<number, { truncated: number; last: number }> | undefined
  for (const record of records) {
    checkGroupId(record.groupId)
    const groupId = record.groupId
    let state = touched?.get(groupId)
    if (state === undefined) {
      const group = groups.get(groupId)
      state = { truncated: group?.truncated.index ?? 0, last: group?.last ?? 0 }
      if (records.length > 1) (touched ??= new Map()).set(groupId, state)
    }
    switch (record.type) {
      case 'hardState':
        checkCounter(record.hardState.term, 'hardState.term', groupId)
        checkCounter(record.hardState.vote, 'hardState.vote', groupId)
        checkCounter(record.hardState.commit, 'hardState.commit', groupId)
        break
      case 'entries': {
        checkEntries(record.entries, groupId)
        const first = record.entries[0]!.index
        if (first > state.last + 1) throw invalid(`raft log record: group ${groupId} entries start at ${first}, past its last index ${state.last} + 1 (a gap)`, { groupId, first, last: state.last })
        const last = first + record.entries.length - 1
        // Entries at or below truncated are skipped (as replay does); the rest replace the log from their first index.
        if (last > state.truncated) state.last = last
        break
      }
      case 'compact':
      case 'snapshot':
        checkCounter(record.index, 'index', groupId)
        checkCounter(record.term, 'term', groupId)
        if (record.type === 'compact' && record.index < state.truncated) {
          throw invalid(`raft log record: group ${groupId} compact to ${record.index} is below its truncated index ${state.truncated}`, { groupId, index: record.index })
        }
        state.last = record.type === 'snapshot' ? record.index : Math.max(state.last, record.index)
        state.truncated = record.index
        break
      case 'destroy':
        state.truncated = 0
        state.last = 0
        break
      default:
        throw invalid(`raft log record: unknown type ${String((record as { type: unknown }).type)}`, { groupId })
    }
  }
}

function checkEntries(entries: readonly Entry[], groupId: number): void {
  if (!Array.isArray(entries) || entries.length === 0) throw invalid('raft log record: entries must be a non-empty array', { groupId })
  const first = entries[0]!.index
  if (!Number.isSafeInteger(first) || first < 1) throw invalid('raft log record: entry index must be a positive safe integer', { groupId, index: first })
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!
    if (entry.index !== first + i) throw invalid(`raft log record: group ${groupId} entries are not contiguous at ${first + i}`, { groupId, index: entry.index })
    if (!Number.isSafeInteger(entry.term) || entry.term < 0) throw invalid('raft log record: entry term must be a non-negative safe integer', { groupId, index: entry.index })
    if (!(entry.data instanceof Uint8Array)) throw invalid('raft log record: entry data must be a Uint8Array', { groupId, index: entry.index })
    if (entry.type !== 'normal' && entry.type !== 'confChange') throw invalid('raft log record: entry type must be normal or confChange', { groupId, index: entry.index })
  }
}

/** GroupTracker applies checked records to the groups' state and the files' live-run counts. */
export class GroupTracker {
  readonly groups = new Map<number, GroupState>()

  constructor(private readonly liveness: (file: number) => FileLiveness) {}

  /** apply records `record`, written to file `file` by write number `seq`. */
  apply(record: LogRecord, file: number, seq: number): void {
    if (record.type === 'destroy') {
      const group = this.groups.get(record.groupId)
      if (group !== undefined) this.release(group.runs.splice(0), seq)
      this.groups.delete(record.groupId)
      return
    }
    const group = this.group(record.groupId)
    switch (record.type) {
      case 'hardState':
        group.hardState = record.hardState
        return
      case 'entries':
        return this.append(group, record.entries, file, seq)
      case 'compact':
        this.compact(group, record.index, seq)
        group.truncated = { index: record.index, term: record.term }
        group.last = Math.max(group.last, record.index)
        return
      case 'snapshot':
        this.release(group.runs.splice(0), seq)
        group.truncated = { index: record.index, term: record.term }
        group.last = record.index
    }
  }

  group(groupId: number): GroupState {
    let group = this.groups.get(groupId)
    if (group === undefined) {
      group = { hardState: { term: 0, vote: 0, commit: 0 }, truncated: { index: 0, term: 0 }, last: 0, runs: [] }
      this.groups.set(groupId, group)
    }
    return group
  }

  /** adopt takes a group replayed at open. */
  adopt(groupId: number, state: GroupState): void {
    this.groups.set(groupId, state)
    for (const run of state.runs) this.liveness(run.file).liveRuns++
  }

  private append(group: GroupState, entries: readonly Entry[], file: number, seq: number): void {
    const last = entries[entries.length - 1]!.index
    if (last <= group.truncated.index) return
    const first = Math.max(entries[0]!.index, group.truncated.index + 1)
    const runs = group.runs
    // Entries from `first` on are replaced (a suffix conflict) or extended.
    while (runs.length > 0 && runs[runs.length - 1]!.first >= first) this.release([runs.pop()!], seq)
    const tail = runs[runs.length - 1]
    if (tail !== undefined && tail.last >= first) tail.last = first - 1
    if (tail !== undefined && tail.file === file) tail.last = last
    else {
      runs.push({ first, last, file })
      this.liveness(file).liveRuns++
    }
    group.last = last
  }

  private compact(group: GroupState, index: number, seq: number): void {
    const runs = group.runs
    let dead = 0
    while (dead < runs.length && runs[dead]!.last <= index) dead++
    this.release(runs.splice(0, dead), seq)
    if (runs.length > 0 && runs[0]!.first <= index) runs[0]!.first = index + 1
  }

  private release(runs: readonly Run[], seq: number): void {
    for (const run of runs) {
      const liveness = this.liveness(run.file)
      if (--liveness.liveRuns === 0) liveness.deadSeq = seq
    }
  }
}
