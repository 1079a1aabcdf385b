/**
 * EngineRaftStorage: the durable RaftStorage of one Raft group on an engine shared by many
 * groups (records.ts has the key layout). The core reads storage synchronously while engines
 * are asynchronous, so the uncompacted log is loaded into memory at open and kept there.
 *
 * NB: memory per group is the uncompacted log, bounded by the driver's compaction policy
 * (`compactLogEntriesMax` / `compactLogBytesMax` behind the applied index, plus what the core
 * lets be uncommitted: `uncommittedBytesMax`), and the latest snapshot (`snapshotBytesMax`).
 *
 * Writes never happen here: every mutation is a StagedWrite, engine ops the driver puts into
 * one batch for many groups, and an `onDurable` callback that updates memory only once that
 * batch is on disk. So the core never reads state that a crash could take back.
 *
 * Fault model: at open, a damaged entry (bad checksum, wrong index, gap) above the committed
 * index is a torn tail from a crash mid-write: it and everything after it are deleted, never
 * applied. Damage at or below the commit index, or in the hard/applied/truncated state, cannot
 * be repaired locally and fails the open with KV_ERR_CORRUPTION.
 * NB: an entry above the local commit that was fsynced and acknowledged, then rotted, is also
 * dropped; a leader may have counted it (see "protocol-aware recovery"). Raft alone cannot tell.
 */
import { ErrorCode, KvError, assert } from '../errors.js'
import type { Engine, EngineOp } from '../engine/engine.js'
import type { ConfState, Entry, HardState, RaftStorage, Snapshot } from '../raft/types.js'
import { cloneConfState, emptyConfState, emptyHardState, entryBytes, limitSize, SnapshotTemporarilyUnavailable } from '../raft/util.js'
import * as records from './records.js'
import type { AppliedState, TruncatedState } from './records.js'

/** StagedWrite is engine ops to put in a batch plus what to do to memory once that batch is durable. */
export interface StagedWrite {
  ops: EngineOp[]
  onDurable(): void
  /** beforeWrite must resolve before `ops` are written (ApplyOutput.beforeWrite). */
  beforeWrite?: Promise<void>
}

/** LogStorageOptions tunes how a group's storage is opened. */
export interface LogStorageOptions {
  /** logger receives warnings such as a truncated torn tail. */
  logger?: (message: string, details: Record<string, unknown>) => void
}

/** BOOTSTRAP_INDEX is the index (and term) of the implicit initial snapshot of a bootstrapped group. */
export const BOOTSTRAP_INDEX = 5

const LOAD_BATCH_RUNS = 256
const NO_WRITE: StagedWrite = Object.freeze({ ops: [], onDurable: () => {} })

function corruption(groupId: number, message: string, details: Record<string, unknown> = {}): KvError {
  return new KvError(ErrorCode.CORRUPTION, `raft group ${groupId}: ${message}`, { groupId, ...details })
}

interface LoadedLog {
  entries: Entry[]
  /** runs are the first indexes of the stored runs holding `entries`, ascending. */
  runs: number[]
  /** damagedAt is the first index that failed validation; undefined when the log is intact. */
  damagedAt: number | undefined
  /** damagedKeys are the keys from damagedAt on, to delete when repairing the tail. */
  damagedKeys: Buffer[]
}

/**
 * loadLog reads a group's log runs in key order. The first run may start at or below the
 * compaction point (compaction deletes only runs wholly behind it); its compacted entries are
 * skipped. Every later run must start where the previous one ended, with non-decreasing terms.
 */
async function loadLog(engine: Engine, groupId: number, truncated: TruncatedState): Promise<LoadedLog> {
  const iterator = engine.iterator({ gte: records.entryKey(groupId, 0), lt: records.entryKey(groupId, Number.MAX_SAFE_INTEGER) })
  const loaded: LoadedLog = { entries: [], runs: [], damagedAt: undefined, damagedKeys: [] }
  let expected = truncated.index + 1
  let lastTerm = truncated.term
  try {
    for (;;) {
      const batch = await iterator.nextBatch(LOAD_BATCH_RUNS)
      if (batch.length === 0) break
      for (const [key, value] of batch) {
        if (loaded.damagedAt === undefined) {
          const first = records.entryIndexFromKey(key)
          const run = first <= expected ? records.decodeRun(value, first) : undefined
          const live = run?.filter((entry) => entry.index > truncated.index)
          // A run wholly behind the compaction point (left by a crash between writes) is kept for the next compaction to delete.
          if (live !== undefined && (live.length === 0 || (live[0]!.index === expected && termsAscend(live, lastTerm)))) {
            loaded.runs.push(first)
            for (const entry of live) loaded.entries.push(entry)
            if (live.length > 0) {
              lastTerm = live[live.length - 1]!.term
              expected = live[live.length - 1]!.index + 1
            }
            continue
          }
          loaded.damagedAt = expected
        }
        loaded.damagedKeys.push(key)
      }
    }
  } finally {
    await iterator.close()
  }
  return loaded
}

function termsAscend(entries: readonly Entry[], previousTerm: number): boolean {
  let term = previousTerm
  for (const entry of entries) {
    if (entry.term < term) return false
    term = entry.term
  }
  return true
}

async function readState<T>(engine: Engine, groupId: number, key: Buffer, name: string, decode: (record: Buffer) => T | undefined, fallback: T): Promise<T> {
  const record = await engine.get(key)
  if (record === undefined) return fallback
  const state = decode(record)
  if (state === undefined) throw corruption(groupId, `${name} record fails its checksum`)
  return state
}

/** EngineRaftStorage is one group's log, hard state and applied state on a shared engine. */
export class EngineRaftStorage implements RaftStorage {
  readonly groupId: number
  // Invariant: truncated.index <= applied.index <= hardState.commit <= lastIndex();
  // log[i].index === truncated.index + 1 + i.
  private hs: HardState
  private applied: AppliedState
  private truncated: TruncatedState
  private log: Entry[]
  // runs: first indexes of the stored log runs, ascending. Invariant: when the log is not empty,
  // runs[0] <= firstIndex() and run i holds [runs[i], runs[i + 1] - 1] (the last one up to
  // lastIndex()); a run wholly behind the compaction point is deleted with the compaction.
  private runs: number[]
  private bytes: number
  // Invariant: when set, cachedSnapshot.meta.index >= truncated.index.
  private cachedSnapshot: Snapshot | undefined
  // wanted: snapshot() was asked for one that is not generated yet (the driver generates it).
  private wanted = false
  // stagedSnapshotIndex: a snapshot staged but not yet durable, which appendOps must build on.
  private stagedSnapshotIndex: number | undefined

  private constructor(groupId: number, state: { hs: HardState; applied: AppliedState; truncated: TruncatedState; log: Entry[]; runs: number[] }) {
    this.groupId = groupId
    this.hs = state.hs
    this.applied = state.applied
    this.truncated = state.truncated
    this.log = state.log
    this.runs = state.runs
    this.bytes = state.log.reduce((sum, entry) => sum + entryBytes(entry), 0)
  }

  /**
   * EngineRaftStorage.bootstrap records the initial membership of a brand-new group on one of
   * its initial replicas; a no-op returning false if the group exists. The state starts as if a
   * snapshot at BOOTSTRAP_INDEX had been taken, so a replica added later (whose log is empty)
   * is caught up by a snapshot carrying the membership, never by replaying a log that does not
   * contain the initial configuration.
   */
  static async bootstrap(engine: Engine, groupId: number, confState: ConfState): Promise<boolean> {
    records.checkGroupId(groupId)
    if (confState.voters.length === 0) throw new KvError(ErrorCode.INVALID, 'bootstrap needs at least one voter', { groupId })
    if ((await engine.get(records.appliedStateKey(groupId))) !== undefined) return false
    const at = { index: BOOTSTRAP_INDEX, term: BOOTSTRAP_INDEX }
    const applied: AppliedState = { ...at, confState: cloneConfState(confState) }
    await engine.batch([
      { type: 'put', key: records.truncatedStateKey(groupId), value: records.encodeTruncatedState(at) },
      { type: 'put', key: records.hardStateKey(groupId), value: records.encodeHardState({ term: at.term, vote: 0, commit: at.index }) },
      { type: 'put', key: records.appliedStateKey(groupId), value: records.encodeAppliedState(applied) },
    ], { sync: true })
    return true
  }

  /** EngineRaftStorage.open loads a group's state, repairing a torn log tail (see the module comment). */
  static async open(engine: Engine, groupId: number, options: LogStorageOptions = {}): Promise<EngineRaftStorage> {
    records.checkGroupId(groupId)
    const hs = await readState(engine, groupId, records.hardStateKey(groupId), 'hard state', records.decodeHardState, emptyHardState())
    const applied = await readState(engine, groupId, records.appliedStateKey(groupId), 'applied state', records.decodeAppliedState, { index: 0, term: 0, confState: emptyConfState() })
    const truncated = await readState(engine, groupId, records.truncatedStateKey(groupId), 'truncated state', records.decodeTruncatedState, { index: 0, term: 0 })
    const loaded = await loadLog(engine, groupId, truncated)
    if (loaded.damagedAt !== undefined) {
      if (loaded.damagedAt <= hs.commit) throw corruption(groupId, `log entry ${loaded.damagedAt} is damaged at or below the commit index ${hs.commit}`, { index: loaded.damagedAt, commit: hs.commit })
      options.logger?.('raft log: dropping a torn tail', { groupId, from: loaded.damagedAt, keys: loaded.damagedKeys.length })
      await engine.batch(loaded.damagedKeys.map((key) => ({ type: 'del' as const, key })), { sync: true })
    }
    const lastIndex = truncated.index + loaded.entries.length
    if (!(truncated.index <= applied.index && applied.index <= Math.max(hs.commit, truncated.index) && hs.commit <= lastIndex)) {
      throw corruption(groupId, 'inconsistent raft state', { truncated: truncated.index, applied: applied.index, commit: hs.commit, lastIndex })
    }
    return new EngineRaftStorage(groupId, { hs, applied, truncated, log: loaded.entries, runs: loaded.runs })
  }

  initialState(): { hardState: HardState; confState: ConfState } {
    return { hardState: { ...this.hs }, confState: cloneConfState(this.applied.confState) }
  }

  entries(lo: number, hi: number, maxBytes: number): Entry[] {
    assert(lo >= this.firstIndex(), `EngineRaftStorage.entries: lo ${lo} is compacted (firstIndex ${this.firstIndex()})`)
    assert(hi <= this.lastIndex() + 1, `EngineRaftStorage.entries: hi ${hi} beyond lastIndex ${this.lastIndex()}`)
    if (lo >= hi) return []
    const offset = this.truncated.index + 1
    return limitSize(this.log.slice(lo - offset, hi - offset), maxBytes)
  }

  term(index: number): number {
    if (index === this.truncated.index) return this.truncated.term
    assert(index > this.truncated.index && index <= this.lastIndex(), `EngineRaftStorage.term: index ${index} outside [${this.truncated.index}, ${this.lastIndex()}]`)
    return this.log[index - this.truncated.index - 1]!.term
  }

  firstIndex(): number {
    return this.truncated.index + 1
  }

  lastIndex(): number {
    return this.truncated.index + this.log.length
  }

  /**
   * snapshot returns the generated snapshot, or throws SnapshotTemporarilyUnavailable and marks
   * one as wanted (snapshotWanted) when the log is compacted and none covers it: snapshots are
   * generated on demand, not at every compaction, so compacting costs O(entries dropped), not
   * O(state machine size).
   */
  snapshot(): Snapshot {
    if (this.cachedSnapshot !== undefined) return this.cachedSnapshot
    if (this.truncated.index === 0) return { meta: { index: 0, term: 0, confState: cloneConfState(this.applied.confState) }, data: new Uint8Array(0) }
    this.wanted = true
    throw new SnapshotTemporarilyUnavailable(this.groupId)
  }

  /** snapshotWanted tells whether the core asked for a snapshot that setSnapshot has not provided yet. */
  get snapshotWanted(): boolean {
    return this.wanted
  }

  /** hardState is the durable HardState. */
  get hardState(): HardState {
    return { ...this.hs }
  }

  /** appliedState is the durable AppliedState. */
  get appliedState(): AppliedState {
    return { ...this.applied, confState: cloneConfState(this.applied.confState) }
  }

  /** appliedIndex is the durable applied index. */
  get appliedIndex(): number {
    return this.applied.index
  }

  /** logBytes is the memory the uncompacted log costs, as counted by the core's entryBytes. */
  get logBytes(): number {
    return this.bytes
  }

  /** hasSnapshot tells whether snapshot() can answer without a generated snapshot. */
  get hasSnapshot(): boolean {
    return this.cachedSnapshot !== undefined || this.truncated.index === 0
  }

  /** setSnapshot records a snapshot generated from the state machine, served to lagging followers. */
  setSnapshot(snapshot: Snapshot): void {
    assert(snapshot.meta.index >= this.truncated.index, `setSnapshot: snapshot ${snapshot.meta.index} is behind the compaction point ${this.truncated.index}`)
    assert(snapshot.meta.index <= this.applied.index, `setSnapshot: snapshot ${snapshot.meta.index} is ahead of applied ${this.applied.index}`)
    this.cachedSnapshot = snapshot
    this.wanted = false
  }

  /** appendOps stages entries from a Ready, deleting any stored suffix they replace. */
  appendOps(entries: readonly Entry[]): StagedWrite {
    if (entries.length === 0) return NO_WRITE
    for (let i = 1; i < entries.length; i++) assert(entries[i]!.index === entries[i - 1]!.index + 1, 'appendOps: entries are not contiguous')
    // A snapshot staged in the same batch empties the log before these entries land.
    const firstIndex = this.stagedSnapshotIndex !== undefined ? this.stagedSnapshotIndex + 1 : this.firstIndex()
    const previousLast = this.stagedSnapshotIndex ?? this.lastIndex()
    const kept = entries[0]!.index < firstIndex ? entries.slice(firstIndex - entries[0]!.index) : entries.slice()
    if (kept.length === 0) return NO_WRITE
    const first = kept[0]!.index
    const last = kept[kept.length - 1]!.index
    assert(first <= previousLast + 1, `appendOps: gap, lastIndex ${previousLast} but entries start at ${first}`)
    assert(first > Math.max(this.hs.commit, this.stagedSnapshotIndex ?? 0), `appendOps: entry ${first} would overwrite the committed log (commit ${this.hs.commit})`)
    const { ops, removeFrom, rewritten } = this.replaceRunsFrom(first, previousLast)
    ops.push({ type: 'put', key: records.entryKey(this.groupId, first), value: records.encodeRun(kept) })
    return {
      ops,
      onDurable: () => {
        assert(this.lastIndex() === previousLast, 'appendOps: the log changed between staging and durability')
        const dropped = this.log.splice(first - this.firstIndex())
        for (const entry of dropped) this.bytes -= entryBytes(entry)
        for (const entry of kept) {
          this.log.push(entry)
          this.bytes += entryBytes(entry)
        }
        while (this.runs.length > 0 && this.runs[this.runs.length - 1]! >= removeFrom) this.runs.pop()
        if (rewritten !== undefined) this.runs.push(rewritten)
        this.runs.push(first)
      },
    }
  }

  /**
   * replaceRunsFrom stages removing the stored entries from `first` on, before a run is put at
   * `first`: runs starting after it are deleted, and a run that straddles it is rewritten with
   * only its entries before `first` (taken from memory: they are above the commit index, so
   * never compacted). Appending after the last entry stages nothing.
   */
  private replaceRunsFrom(first: number, previousLast: number): { ops: EngineOp[]; removeFrom: number; rewritten: number | undefined } {
    const ops: EngineOp[] = []
    // A snapshot staged in the same batch deletes every run (snapshotOps).
    const runs = this.stagedSnapshotIndex !== undefined ? [] : this.runs
    let cut = runs.length
    while (cut > 0 && runs[cut - 1]! >= first) cut--
    for (let i = cut; i < runs.length; i++) if (runs[i] !== first) ops.push({ type: 'del', key: records.entryKey(this.groupId, runs[i]!) })
    const straddling = cut > 0 && first <= previousLast && (cut === runs.length || runs[cut]! > first)
    if (!straddling) return { ops, removeFrom: first, rewritten: undefined }
    const start = runs[cut - 1]!
    const keepFrom = Math.max(start, this.firstIndex())
    if (keepFrom !== start) ops.push({ type: 'del', key: records.entryKey(this.groupId, start) })
    if (keepFrom >= first) return { ops, removeFrom: start, rewritten: undefined }
    const keep = this.log.slice(keepFrom - this.firstIndex(), first - this.firstIndex())
    ops.push({ type: 'put', key: records.entryKey(this.groupId, keepFrom), value: records.encodeRun(keep) })
    return { ops, removeFrom: start, rewritten: keepFrom }
  }

  /** hardStateOps stages a HardState from a Ready. */
  hardStateOps(hs: HardState): StagedWrite {
    const copy = { ...hs }
    return {
      ops: [{ type: 'put', key: records.hardStateKey(this.groupId), value: records.encodeHardState(copy) }],
      onDurable: () => {
        this.hs = copy
      },
    }
  }

  /** appliedStateOps stages the applied index; put it in the same batch as the data it covers. */
  appliedStateOps(state: AppliedState): StagedWrite {
    assert(state.index >= this.applied.index, `appliedStateOps: applied index going back from ${this.applied.index} to ${state.index}`)
    const copy: AppliedState = { index: state.index, term: state.term, confState: cloneConfState(state.confState) }
    return {
      ops: [{ type: 'put', key: records.appliedStateKey(this.groupId), value: records.encodeAppliedState(copy) }],
      onDurable: () => {
        this.applied = copy
      },
    }
  }

  /** snapshotOps stages installing a snapshot: the log is replaced and applied jumps to its index (with the restored data in the same batch). */
  snapshotOps(snapshot: Snapshot): StagedWrite {
    const meta = snapshot.meta
    assert(meta.index > this.applied.index, `snapshotOps: snapshot ${meta.index} is not ahead of applied ${this.applied.index}`)
    const truncated: TruncatedState = { index: meta.index, term: meta.term }
    const applied: AppliedState = { index: meta.index, term: meta.term, confState: cloneConfState(meta.confState) }
    const ops: EngineOp[] = [
      { type: 'put', key: records.truncatedStateKey(this.groupId), value: records.encodeTruncatedState(truncated) },
      { type: 'put', key: records.appliedStateKey(this.groupId), value: records.encodeAppliedState(applied) },
    ]
    for (const start of this.runs) ops.push({ type: 'del', key: records.entryKey(this.groupId, start) })
    this.stagedSnapshotIndex = meta.index
    return {
      ops,
      onDurable: () => {
        this.stagedSnapshotIndex = undefined
        this.truncated = truncated
        this.applied = applied
        this.log = []
        this.runs = []
        this.bytes = 0
        this.cachedSnapshot = snapshot
      },
    }
  }

  /** destroyOps stages deleting every Raft record of this group (the replica is being removed from this node). */
  destroyOps(): StagedWrite {
    const ops: EngineOp[] = [records.hardStateKey(this.groupId), records.appliedStateKey(this.groupId), records.truncatedStateKey(this.groupId)].map((key) => ({ type: 'del', key }))
    for (const start of this.runs) ops.push({ type: 'del', key: records.entryKey(this.groupId, start) })
    return {
      ops,
      onDurable: () => {
        this.log = []
        this.runs = []
        this.bytes = 0
        this.cachedSnapshot = undefined
      },
    }
  }

  /** compactOps stages dropping the log up to and including `index`, which must be applied (and covered by a snapshot). */
  compactOps(index: number): StagedWrite {
    if (index <= this.truncated.index) return NO_WRITE
    assert(index <= this.applied.index, `compactOps: index ${index} is not applied yet (applied ${this.applied.index})`)
    const truncated: TruncatedState = { index, term: this.term(index) }
    const ops: EngineOp[] = [{ type: 'put', key: records.truncatedStateKey(this.groupId), value: records.encodeTruncatedState(truncated) }]
    // Only runs wholly behind the compaction point go; the one straddling it keeps its compacted entries until it does.
    let whole = 0
    while (whole < this.runs.length && (whole + 1 < this.runs.length ? this.runs[whole + 1]! - 1 : this.lastIndex()) <= index) {
      ops.push({ type: 'del', key: records.entryKey(this.groupId, this.runs[whole]!) })
      whole++
    }
    return {
      ops,
      onDurable: () => {
        assert(this.truncated.index < index, 'compactOps: compacted twice')
        const dropped = this.log.splice(0, index - this.truncated.index)
        for (const entry of dropped) this.bytes -= entryBytes(entry)
        this.runs.splice(0, whole)
        this.truncated = truncated
        // A snapshot behind the compaction point can no longer catch anyone up (the entries after it are gone).
        if (this.cachedSnapshot !== undefined && this.cachedSnapshot.meta.index < index) this.cachedSnapshot = undefined
      },
    }
  }
}
