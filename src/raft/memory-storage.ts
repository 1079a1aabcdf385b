/**
 * MemoryRaftStorage: an in-memory RaftStorage for tests, the simulator and single-process use.
 * It mirrors what a durable store must do (append with suffix truncation, snapshots, compaction)
 * so that the simulator exercises the same contract as src/raftstore. Fault model: none of its
 * own; a simulated crash is modelled by the driver keeping only what it "fsynced" here.
 */
import { ErrorCode, KvError, assert } from '../errors.js'
import type { ConfState, Entry, HardState, RaftStorage, Snapshot } from './types.js'
import { cloneConfState, emptyConfState, emptyHardState, limitSize } from './util.js'

/** MemoryRaftStorage keeps the log, hard state and latest snapshot in memory. */
export class MemoryRaftStorage implements RaftStorage {
  private hs: HardState = emptyHardState()
  private snap: Snapshot = { meta: { index: 0, term: 0, confState: emptyConfState() }, data: new Uint8Array(0) }
  // Invariant: ents[0] is a dummy entry at (snap.meta.index or the compaction point, its term);
  // ents[i].index === ents[0].index + i.
  private ents: Entry[] = [{ term: 0, index: 0, type: 'normal', data: new Uint8Array(0) }]

  /**
   * MemoryRaftStorage.withPeers builds the storage of a founding member of a new group: the
   * membership is recorded in a snapshot at index 1, term 1 (as TiKV's RAFT_INIT_LOG_INDEX), so
   * a node added later can only be caught up by a snapshot, which carries the founding members.
   */
  static withPeers(voters: number[], learners: number[] = []): MemoryRaftStorage {
    const storage = new MemoryRaftStorage()
    const confState: ConfState = { voters: [...voters], learners: [...learners], votersOutgoing: [] }
    storage.applySnapshot({ meta: { index: 1, term: 1, confState }, data: new Uint8Array(0) })
    storage.setHardState({ term: 1, vote: 0, commit: 1 })
    return storage
  }

  /** hardState is the last persisted HardState. */
  get hardState(): HardState {
    return { ...this.hs }
  }

  /** confState is the membership recorded by the latest snapshot (or the initial peers). */
  get confState(): ConfState {
    return cloneConfState(this.snap.meta.confState)
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: this.hardState, confState: this.confState }
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    const offset = this.ents[0]!.index
    assert(lo > offset, `MemoryRaftStorage.entries: lo ${lo} is compacted (firstIndex ${offset + 1})`)
    assert(hi <= this.lastIndex() + 1, `MemoryRaftStorage.entries: hi ${hi} beyond lastIndex ${this.lastIndex()}`)
    if (lo >= hi) return []
    return limitSize(this.ents.slice(lo - offset, hi - offset), maxBytes)
  }

  term(index: number): number {
    const offset = this.ents[0]!.index
    assert(index >= offset && index <= this.lastIndex(), `MemoryRaftStorage.term: index ${index} outside [${offset}, ${this.lastIndex()}]`)
    return this.ents[index - offset]!.term
  }

  firstIndex(): number {
    return this.ents[0]!.index + 1
  }

  lastIndex(): number {
    return this.ents[0]!.index + this.ents.length - 1
  }

  snapshot(): Snapshot {
    return this.snap
  }

  /** setHardState records the hard state from a Ready. */
  setHardState(hs: HardState): void {
    this.hs = { ...hs }
  }

  /** append stores entries from a Ready, dropping any existing suffix they conflict with. */
  append(entries: readonly Entry[]): void {
    if (entries.length === 0) return
    const first = this.firstIndex()
    const last = entries[0]!.index + entries.length - 1
    if (last < first) return // entirely compacted already: nothing to keep
    for (let i = 1; i < entries.length; i++) {
      if (entries[i]!.index !== entries[i - 1]!.index + 1) {
        throw new KvError(ErrorCode.INVALID, 'MemoryRaftStorage.append: entries are not contiguous', { at: i })
      }
    }
    const kept = entries[0]!.index < first ? entries.slice(first - entries[0]!.index) : entries
    const offset = kept[0]!.index - this.ents[0]!.index
    if (offset > this.ents.length) {
      throw new KvError(ErrorCode.INVALID, `MemoryRaftStorage.append: gap, lastIndex ${this.lastIndex()} but entries start at ${kept[0]!.index}`)
    }
    // Truncate in place and push: appending must not copy the whole log.
    this.ents.length = offset
    for (const entry of kept) this.ents.push(copyEntry(entry))
  }

  /** applySnapshot replaces the whole log with `snapshot` (a follower installing the leader's snapshot). */
  applySnapshot(snapshot: Snapshot): void {
    if (snapshot.meta.index < this.snap.meta.index) {
      throw new KvError(ErrorCode.INVALID, `MemoryRaftStorage.applySnapshot: snapshot ${snapshot.meta.index} is older than ${this.snap.meta.index}`)
    }
    this.snap = { meta: { ...snapshot.meta, confState: cloneConfState(snapshot.meta.confState) }, data: snapshot.data }
    this.ents = [{ term: snapshot.meta.term, index: snapshot.meta.index, type: 'normal', data: new Uint8Array(0) }]
  }

  /** createSnapshot records the application's snapshot at applied index `index`; the log is kept (see compact). */
  createSnapshot(index: number, confState: ConfState, data: Uint8Array): Snapshot {
    if (index <= this.snap.meta.index) {
      throw new KvError(ErrorCode.INVALID, `MemoryRaftStorage.createSnapshot: index ${index} is not after snapshot ${this.snap.meta.index}`)
    }
    if (index > this.lastIndex()) {
      throw new KvError(ErrorCode.INVALID, `MemoryRaftStorage.createSnapshot: index ${index} beyond lastIndex ${this.lastIndex()}`)
    }
    this.snap = { meta: { index, term: this.term(index), confState: cloneConfState(confState) }, data }
    return this.snap
  }

  /** compact discards entries up to and including `index`, which must already be applied (and snapshotted). */
  compact(index: number): void {
    const offset = this.ents[0]!.index
    if (index <= offset) return
    if (index > this.lastIndex()) {
      throw new KvError(ErrorCode.INVALID, `MemoryRaftStorage.compact: index ${index} beyond lastIndex ${this.lastIndex()}`)
    }
    const dummy = { term: this.ents[index - offset]!.term, index, type: 'normal' as const, data: new Uint8Array(0) }
    this.ents = [dummy, ...this.ents.slice(index - offset + 1)]
  }
}

function copyEntry(entry: Entry): Entry {
  return { term: entry.term, index: entry.index, type: entry.type, data: entry.data }
}
