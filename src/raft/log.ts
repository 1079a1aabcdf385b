/**
 * RaftLog: the replicated log as the core sees it, stitched from stable storage (read-only,
 * written by the driver) and the unstable tail. It enforces the Log Matching property on
 * append (truncating a conflicting suffix, never a committed entry) and tracks commit/apply.
 */
import { assert } from '../errors.js'
import type { Entry, RaftStorage, Snapshot } from './types.js'
import { Unstable } from './log-unstable.js'
import { limitSize } from './util.js'

/** RaftLog combines storage and unstable entries and tracks the commit and apply points. */
export class RaftLog {
  readonly storage: RaftStorage
  readonly unstable: Unstable
  // Invariant: applied <= committed <= lastIndex(); committed never decreases.
  committed: number
  applied: number
  /** applying: the last entry handed out for application (applied <= applying <= committed), not yet advanced. */
  applying: number

  constructor(storage: RaftStorage) {
    this.storage = storage
    const firstIndex = storage.firstIndex()
    this.unstable = new Unstable(storage.lastIndex() + 1)
    this.committed = firstIndex - 1
    this.applied = firstIndex - 1
    this.applying = firstIndex - 1
  }

  /** firstIndex is the first index still readable (after the latest snapshot). */
  firstIndex(): number {
    return this.unstable.maybeFirstIndex() ?? this.storage.firstIndex()
  }

  /** lastIndex is the index of the newest entry, persisted or not. */
  lastIndex(): number {
    return this.unstable.maybeLastIndex() ?? this.storage.lastIndex()
  }

  /** persistedLastIndex is the newest index advance() confirmed persisted (storage's, under an unstable snapshot). */
  persistedLastIndex(): number {
    return this.unstable.snapshot !== undefined ? this.storage.lastIndex() : this.unstable.offset - 1
  }

  /** lastTerm is the term of the newest entry. */
  lastTerm(): number {
    const term = this.term(this.lastIndex())
    assert(term !== undefined, 'RaftLog.lastTerm: last entry has no term')
    return term
  }

  /** term is the term at `index`, or undefined when it is compacted or beyond the log. */
  term(index: number): number | undefined {
    const dummyIndex = this.firstIndex() - 1
    if (index < dummyIndex || index > this.lastIndex()) return undefined
    const unstableTerm = this.unstable.maybeTerm(index)
    if (unstableTerm !== undefined) return unstableTerm
    if (index < this.storage.firstIndex() - 1) return undefined
    return this.storage.term(index)
  }

  /** matchTerm tells whether the entry at `index` has `term`. */
  matchTerm(index: number, term: number): boolean {
    return this.term(index) === term
  }

  /** isUpToDate is §5.4.1's election restriction: is (lastIndex, term) at least as new as this log? */
  isUpToDate(lastIndex: number, term: number): boolean {
    const ourTerm = this.lastTerm()
    return term > ourTerm || (term === ourTerm && lastIndex >= this.lastIndex())
  }

  /**
   * maybeAppend appends a leader's entries that follow (index, logTerm), truncating any conflicting
   * suffix, and advances commit; it returns the last index now known to match the leader, or
   * undefined when the logs do not agree at `index` (the append must be rejected).
   */
  maybeAppend(index: number, logTerm: number, committed: number, entries: readonly Entry[]): { lastNewIndex: number; appended: Entry[] } | undefined {
    if (!this.matchTerm(index, logTerm)) return undefined
    const lastNewIndex = index + entries.length
    const conflict = this.findConflict(entries)
    let appended: Entry[] = []
    if (conflict !== 0) {
      assert(conflict > this.committed, `RaftLog.maybeAppend: entry ${conflict} conflicts with committed entry (committed ${this.committed})`)
      appended = entries.slice(conflict - (index + 1))
      this.append(appended)
    }
    this.commitTo(Math.min(committed, lastNewIndex))
    return { lastNewIndex, appended }
  }

  /** append adds entries after the committed prefix, replacing any suffix from their first index. */
  append(entries: readonly Entry[]): number {
    if (entries.length === 0) return this.lastIndex()
    const after = entries[0]!.index - 1
    assert(after >= this.committed, `RaftLog.append: index ${after + 1} would overwrite committed ${this.committed}`)
    assert(after <= this.lastIndex(), `RaftLog.append: gap after ${this.lastIndex()}`)
    this.unstable.truncateAndAppend(entries)
    return this.lastIndex()
  }

  /** findConflict returns the first index whose term differs from ours (0 if none; new entries do not count). */
  findConflict(entries: readonly Entry[]): number {
    for (const entry of entries) {
      if (!this.matchTerm(entry.index, entry.term)) return entry.index
    }
    return 0
  }

  /**
   * findConflictByTerm returns the largest index <= `index` whose term is <= `term` (and that term),
   * the hint that lets a leader skip a whole divergent term per rejection. An unknown term
   * (compacted) is reported as a possible match with term 0.
   */
  findConflictByTerm(index: number, term: number): { index: number; term: number } {
    for (let i = Math.min(index, this.lastIndex()); i > 0; i--) {
      const ourTerm = this.term(i)
      if (ourTerm === undefined) return { index: i, term: 0 }
      if (ourTerm <= term) return { index: i, term: ourTerm }
    }
    return { index: 0, term: 0 }
  }

  /** commitTo raises the commit index (never lowers it). */
  commitTo(index: number): void {
    if (index <= this.committed) return
    assert(index <= this.lastIndex(), `RaftLog.commitTo: ${index} beyond lastIndex ${this.lastIndex()}`)
    this.committed = index
  }

  /** maybeCommit commits `index` if its entry is from `term` (§5.4.2: only current-term entries commit by counting). */
  maybeCommit(index: number, term: number): boolean {
    if (index > this.committed && this.matchTerm(index, term)) {
      this.commitTo(index)
      return true
    }
    return false
  }

  /** appliedTo records that the application applied everything up to `index`. */
  appliedTo(index: number): void {
    if (index === 0) return
    assert(index <= this.committed && index >= this.applied, `RaftLog.appliedTo: ${index} outside [applied ${this.applied}, committed ${this.committed}]`)
    this.applied = index
    this.applying = Math.max(this.applying, index)
  }

  /** hasNextCommittedEntries tells whether committed entries await application (and were not handed out yet). */
  hasNextCommittedEntries(): boolean {
    if (this.unstable.snapshot !== undefined) return false
    return this.committed > Math.max(this.applying, this.firstIndex() - 1)
  }

  /** nextCommittedEntries returns committed entries not yet handed out for application (bounded by `maxBytes`, at least one). */
  nextCommittedEntries(maxBytes: number): Entry[] {
    if (!this.hasNextCommittedEntries()) return []
    const lo = Math.max(this.applying + 1, this.firstIndex())
    return this.slice(lo, this.committed + 1, maxBytes) ?? []
  }

  /** unstableEntries are the entries the driver must persist next (not yet handed out in a Ready). */
  unstableEntries(): Entry[] {
    return this.unstable.pendingEntries()
  }

  /** snapshot is the latest snapshot, unstable first. */
  snapshot(): Snapshot {
    return this.unstable.snapshot ?? this.storage.snapshot()
  }

  /** entriesFrom returns entries from `lo` up to the end (bounded by `maxBytes`), or undefined if compacted. */
  entriesFrom(lo: number, maxBytes: number): Entry[] | undefined {
    if (lo > this.lastIndex()) return []
    return this.slice(lo, this.lastIndex() + 1, maxBytes)
  }

  /** slice returns entries [lo, hi) within `maxBytes` (at least one), or undefined if `lo` is compacted. */
  slice(lo: number, hi: number, maxBytes: number): Entry[] | undefined {
    assert(lo <= hi && hi <= this.lastIndex() + 1, `RaftLog.slice: [${lo}, ${hi}) outside log ending at ${this.lastIndex()}`)
    if (lo < this.firstIndex()) return undefined
    if (lo === hi) return []
    let result: Entry[] = []
    const unstableOffset = this.unstable.offset
    if (lo < unstableOffset) {
      const stored = this.storage.entries(lo, Math.min(hi, unstableOffset), maxBytes)
      if (stored.length < Math.min(hi, unstableOffset) - lo) return stored // the byte bound stopped it
      result = stored
    }
    if (hi > unstableOffset) {
      const tail = this.unstable.slice(Math.max(lo, unstableOffset), hi)
      result = result.length > 0 ? result.concat(tail) : tail
    }
    return limitSize(result, maxBytes)
  }

  /** restore replaces the log with a snapshot (a follower far behind). */
  restore(snapshot: Snapshot): void {
    this.committed = snapshot.meta.index
    this.unstable.restore(snapshot)
  }

  /** stableTo is advance's note that entries up to (index, term) are persisted. */
  stableTo(index: number, term: number): void {
    this.unstable.stableTo(index, term)
  }

  /** stableSnapTo is advance's note that the snapshot at `index` is persisted and applied. */
  stableSnapTo(index: number): void {
    this.unstable.stableSnapTo(index)
    if (index > this.applied) this.applied = index
    if (index > this.applying) this.applying = index
  }
}
