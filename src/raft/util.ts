/**
 * Small pure helpers shared by the Raft core modules and by RaftStorage implementations,
 * so that every layer agrees on what an entry "costs" when batching by bytes.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { ConfState, Entry, HardState } from './types.js'

/**
 * SnapshotTemporarilyUnavailable is what RaftStorage.snapshot() throws while the snapshot a
 * lagging follower needs is still being generated (etcd's ErrSnapshotTemporarilyUnavailable):
 * the leader sends nothing and retries on the follower's next heartbeat response.
 */
export class SnapshotTemporarilyUnavailable extends KvError {
  constructor(groupId?: number) {
    super(ErrorCode.UNAVAILABLE, 'raft snapshot temporarily unavailable (being generated)', groupId === undefined ? {} : { groupId })
  }
}

/** ENTRY_OVERHEAD_BYTES approximates an entry's framing (term, index, type), so empty entries are not free. */
export const ENTRY_OVERHEAD_BYTES = 24

/** entryBytes is the size an entry counts for in every byte bound of the core. */
export function entryBytes(entry: Entry): number {
  return entry.data.byteLength + ENTRY_OVERHEAD_BYTES
}

/** entriesBytes sums entryBytes over a list. */
export function entriesBytes(entries: readonly Entry[]): number {
  let total = 0
  for (const entry of entries) total += entryBytes(entry)
  return total
}

/** limitSize returns the longest prefix of `entries` within `maxBytes`, but never fewer than one entry. */
export function limitSize(entries: Entry[], maxBytes: number): Entry[] {
  if (entries.length === 0) return entries
  let total = entryBytes(entries[0]!)
  let count = 1
  while (count < entries.length) {
    total += entryBytes(entries[count]!)
    if (total > maxBytes) break
    count++
  }
  return count === entries.length ? entries : entries.slice(0, count)
}

/** emptyHardState is the hard state of a node that has never voted or seen a term. */
export function emptyHardState(): HardState {
  return { term: 0, vote: 0, commit: 0 }
}

/** isEmptyHardState tells whether `hs` carries nothing worth persisting. */
export function isEmptyHardState(hs: HardState): boolean {
  return hs.term === 0 && hs.vote === 0 && hs.commit === 0
}

/** hardStateEqual compares two hard states field by field. */
export function hardStateEqual(a: HardState, b: HardState): boolean {
  return a.term === b.term && a.vote === b.vote && a.commit === b.commit
}

/** cloneConfState copies a ConfState so callers cannot alias the core's membership arrays. */
export function cloneConfState(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners], votersOutgoing: [...cs.votersOutgoing] }
}

/** emptyConfState is the membership of a node that knows no peers yet. */
export function emptyConfState(): ConfState {
  return { voters: [], learners: [], votersOutgoing: [] }
}
