/**
 * Unstable: the tail of the Raft log (and possibly an incoming snapshot) that the core has
 * accepted but the driver has not yet confirmed as persisted. It is handed out in a Ready and
 * dropped once `advance` says it reached stable storage (stableTo / stableSnapTo). A driver that
 * persists Readies in the background asks for the next one before advancing the last:
 * `inProgress` keeps what was handed out from being handed out twice.
 */
import { assert } from '../errors.js'
import type { Entry, Snapshot } from './types.js'

/** Unstable holds entries and a snapshot not yet persisted by the driver. */
export class Unstable {
  /** snapshot is an incoming snapshot not yet persisted; it precedes `entries`. */
  snapshot: Snapshot | undefined = undefined
  // Invariant: entries[i].index === offset + i; if snapshot is set, offset === snapshot.meta.index + 1
  // at the time it was restored (later entries may follow it).
  entries: Entry[] = []
  offset: number
  /**
   * inProgress: entries below this index were handed out in a Ready not yet advanced (being
   * persisted), so the next Ready leaves them out; snapshotInProgress likewise for the snapshot.
   * Invariant: offset <= inProgress <= offset + entries.length.
   */
  inProgress: number
  snapshotInProgress = false

  constructor(offset: number) {
    this.offset = offset
    this.inProgress = offset
  }

  /** pendingEntries are the entries no Ready has handed out yet. */
  pendingEntries(): Entry[] {
    return this.inProgress === this.offset ? this.entries : this.entries.slice(this.inProgress - this.offset)
  }

  /** pendingSnapshot is the snapshot if no Ready has handed it out yet. */
  pendingSnapshot(): Snapshot | undefined {
    return this.snapshotInProgress ? undefined : this.snapshot
  }

  /** acceptInProgress notes that a Ready handed out everything held now. */
  acceptInProgress(): void {
    this.inProgress = this.offset + this.entries.length
    if (this.snapshot !== undefined) this.snapshotInProgress = true
  }

  /** maybeFirstIndex is the first log index implied by an unstable snapshot, if there is one. */
  maybeFirstIndex(): number | undefined {
    return this.snapshot === undefined ? undefined : this.snapshot.meta.index + 1
  }

  /** maybeLastIndex is the last index held here (entries first, else the snapshot's), if any. */
  maybeLastIndex(): number | undefined {
    if (this.entries.length > 0) return this.offset + this.entries.length - 1
    return this.snapshot === undefined ? undefined : this.snapshot.meta.index
  }

  /** maybeTerm is the term at `index` if this unstable part knows it. */
  maybeTerm(index: number): number | undefined {
    if (index < this.offset) {
      return this.snapshot !== undefined && this.snapshot.meta.index === index ? this.snapshot.meta.term : undefined
    }
    const last = this.maybeLastIndex()
    if (last === undefined || index > last) return undefined
    return this.entries[index - this.offset]!.term
  }

  /** stableTo drops entries up to `index` once the driver persisted them, unless they were since replaced. */
  stableTo(index: number, term: number): void {
    const known = this.maybeTerm(index)
    // A term mismatch means the entries were truncated and replaced after that Ready: keep the new ones.
    if (known === undefined || known !== term || index < this.offset) return
    this.entries = this.entries.slice(index + 1 - this.offset)
    this.offset = index + 1
    this.inProgress = Math.max(this.inProgress, this.offset)
  }

  /** stableSnapTo forgets the snapshot once the driver persisted it. */
  stableSnapTo(index: number): void {
    if (this.snapshot !== undefined && this.snapshot.meta.index === index) {
      this.snapshot = undefined
      this.snapshotInProgress = false
    }
  }

  /** restore replaces everything with an incoming snapshot. */
  restore(snapshot: Snapshot): void {
    this.offset = snapshot.meta.index + 1
    this.inProgress = this.offset
    this.entries = []
    this.snapshot = snapshot
    this.snapshotInProgress = false
  }

  /** truncateAndAppend appends `entries`, first dropping any held suffix they overwrite. */
  truncateAndAppend(entries: readonly Entry[]): void {
    if (entries.length === 0) return
    const after = entries[0]!.index
    // A replaced suffix that was handed out must be handed out again, as the new entries.
    this.inProgress = Math.max(this.offset, Math.min(this.inProgress, after))
    if (after === this.offset + this.entries.length) {
      this.entries = this.entries.concat(entries)
    } else if (after <= this.offset) {
      // The new entries replace everything here (and shadow the storage suffix from `after`).
      this.offset = after
      this.inProgress = after
      this.entries = [...entries]
    } else {
      this.entries = this.entries.slice(0, after - this.offset).concat(entries)
    }
  }

  /** slice returns entries [lo, hi), which must lie within this unstable part. */
  slice(lo: number, hi: number): Entry[] {
    assert(lo >= this.offset && hi <= this.offset + this.entries.length && lo <= hi, `Unstable.slice [${lo}, ${hi}) outside [${this.offset}, ${this.offset + this.entries.length})`)
    return this.entries.slice(lo - this.offset, hi - this.offset)
  }
}
