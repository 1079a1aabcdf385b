/**
 * EngineRaftStorage: the durable RaftStorage of one Raft group. The log and the hard state live
 * in the node's log files (log-files.ts: one append-only log for every group, one fdatasync per
 * driver iteration); the applied state lives in the engine, written with the data it covers
 * (unsynced: it is replayed from the log after a crash). The core reads storage synchronously
 * while disks are not, so the uncompacted log is loaded into memory at open and kept there.
 *
 * NB: memory per group is the uncompacted log, bounded by the driver's compaction policy
 * (`compactLogEntriesMax` / `compactLogBytesMax` behind the applied index, plus what the core
 * lets be uncommitted: `uncommittedBytesMax`), and the latest snapshot (`snapshotBytesMax`).
 *
 * Writes never happen here: every mutation is a StagedWrite (log records and engine ops the
 * driver writes for many groups at once) with an `onDurable` callback that updates memory only
 * once written. So the core never reads state that a crash could take back.
 *
 * Two stores, one rule between them (open() enforces it, the driver keeps it):
 * - the engine's applied state may be AHEAD of the log (an apply written beside a log write
 *   that a crash lost: the entries were committed, so this is a snapshot in all but name; a
 *   snapshot installed in the engine before its log record; a bootstrap): open() then restarts
 *   the log at the applied state;
 * - the engine's applied state is never BEHIND the log's compaction point: the driver compacts
 *   the log only up to an applied index the engine has synced (`durableAppliedIndex`). If it is,
 *   the engine lost data it had promised: KV_ERR_CORRUPTION.
 *
 * Fault model: a torn last write of the log files is cut at open (log-files.ts); damage
 * anywhere else in them, or in the applied state, fails the open with KV_ERR_CORRUPTION.
 */
import { ErrorCode, KvError, assert } from '../errors.js'
import type { Engine, EngineOp } from '../engine/engine.js'
import type { ConfState, Entry, HardState, RaftStorage, Snapshot } from '../raft/types.js'
import { cloneConfState, emptyConfState, emptyHardState, entryBytes, limitSize, SnapshotTemporarilyUnavailable } from '../raft/util.js'
import { corruption, legacyKeysOps, loadLegacyLog, readState } from './legacy-log.js'
import type { LogRecord, RaftLogFiles, RecoveredGroup } from './log-files.js'
import * as records from './records.js'
import type { AppliedState, TruncatedState } from './records.js'

/** StagedWrite is what to write (log records, engine ops) plus what to do to memory once written. */
export interface StagedWrite {
  /** ops: engine ops, written unsynced beside the log write unless `syncEngine`. */
  ops: EngineOp[]
  /** log: records for the log files, durable once a synced write returns. */
  log?: LogRecord[]
  /** syncEngine: `ops` must be synced, and written BEFORE the log records (a snapshot install). */
  syncEngine?: boolean
  /**
   * syncLog: the write carrying `log` must be synced even when no Ready asks for it, because
   * onDurable does something a lost record would contradict (destroy: the engine's applied
   * state is deleted next, and a log that still held the group would then be behind nothing).
   */
  syncLog?: boolean
  onDurable(): void
  /** beforeWrite must resolve before `ops` are written (ApplyOutput.beforeWrite). */
  beforeWrite?: Promise<void>
  /**
   * afterLog: `ops` may wait until the log write is durable (apply output that answers no one on
   * this node, such as a follower's), so the messages waiting for the log leave first.
   */
  afterLog?: boolean
}

/** LogStorageOptions tunes how a group's storage is opened. */
export interface LogStorageOptions {
  /** logger receives warnings such as a truncated torn tail. */
  logger?: (message: string, details: Record<string, unknown>) => void
}

/** BOOTSTRAP_INDEX is the index (and term) of the implicit initial snapshot of a bootstrapped group. */
export const BOOTSTRAP_INDEX = 5

const NO_WRITE: StagedWrite = Object.freeze({ ops: [], onDurable: () => {} })

/** EngineRaftStorage is one group's log and hard state (log files) and applied state (engine). */
export class EngineRaftStorage implements RaftStorage {
  readonly groupId: number
  // Invariant: truncated.index <= applied.index <= hardState.commit <= lastIndex();
  // log[i].index === truncated.index + 1 + i.
  private hs: HardState
  private applied: AppliedState
  private truncated: TruncatedState
  private log: Entry[]
  private bytes: number
  // durableApplied: an applied index the engine has synced; the log is never compacted past it.
  private durableApplied: number
  // Invariant: when set, cachedSnapshot.meta.index >= truncated.index.
  private cachedSnapshot: Snapshot | undefined
  // wanted: snapshot() was asked for one that is not generated yet (the driver generates it).
  private wanted = false
  // stagedSnapshotIndex: a snapshot staged but not yet durable, which appendOps must build on.
  private stagedSnapshotIndex: number | undefined

  private constructor(groupId: number, state: { hs: HardState; applied: AppliedState; truncated: TruncatedState; log: Entry[] }) {
    this.groupId = groupId
    this.hs = state.hs
    this.applied = state.applied
    this.truncated = state.truncated
    this.log = state.log
    this.durableApplied = state.applied.index
    this.bytes = state.log.reduce((sum, entry) => sum + entryBytes(entry), 0)
  }

  /**
   * EngineRaftStorage.bootstrap records the initial membership of a brand-new group on one of
   * its initial replicas; a no-op returning false if the group exists. The group starts as if a
   * snapshot at BOOTSTRAP_INDEX had been applied (open() starts the log there), so a replica
   * added later (whose log is empty) is caught up by a snapshot carrying the membership, never
   * by replaying a log that does not contain the initial configuration.
   */
  static async bootstrap(engine: Engine, groupId: number, confState: ConfState): Promise<boolean> {
    records.checkGroupId(groupId)
    if (confState.voters.length === 0) throw new KvError(ErrorCode.INVALID, 'bootstrap needs at least one voter', { groupId })
    if ((await engine.get(records.appliedStateKey(groupId))) !== undefined) return false
    const applied: AppliedState = { index: BOOTSTRAP_INDEX, term: BOOTSTRAP_INDEX, confState: cloneConfState(confState) }
    await engine.batch([{ type: 'put', key: records.appliedStateKey(groupId), value: records.encodeAppliedState(applied) }], { sync: true })
    return true
  }

  /** EngineRaftStorage.open loads a group's state (see the module comment for how the two stores are reconciled). */
  static async open(engine: Engine, logFiles: RaftLogFiles, groupId: number, options: LogStorageOptions = {}): Promise<EngineRaftStorage> {
    records.checkGroupId(groupId)
    const applied = await readState(engine, groupId, records.appliedStateKey(groupId), 'applied state', records.decodeAppliedState, { index: 0, term: 0, confState: emptyConfState() })
    let recovered = logFiles.takeRecovered(groupId)
    const legacy = await loadLegacyLog(engine, groupId, options.logger)
    if (legacy !== undefined) {
      // The old layout is read once: written into the log files, then deleted from the engine.
      if (recovered === undefined) {
        recovered = legacy.state
        await logFiles.write(restartRecords(groupId, recovered.truncated, recovered.hardState, recovered.entries), true)
      }
      await engine.batch(legacyKeysOps(legacy), { sync: true })
    }
    let { hardState: hs, truncated, entries } = recovered ?? { hardState: emptyHardState(), truncated: { index: 0, term: 0 }, entries: [] } satisfies RecoveredGroup
    const lastIndex = truncated.index + entries.length
    if (applied.index < truncated.index) {
      throw corruption(groupId, `the applied state (${applied.index}) is behind the log's compaction point (${truncated.index}): the engine lost synced data`, { applied: applied.index, truncated: truncated.index })
    }
    const termAtApplied = applied.index === truncated.index ? truncated.term : applied.index <= lastIndex ? entries[applied.index - truncated.index - 1]!.term : undefined
    if (termAtApplied !== applied.term) {
      // The engine is ahead of the log: the log restarts at the applied state (module comment).
      // A term raised here comes with no vote: a vote in that term was never durable, so never sent.
      truncated = { index: applied.index, term: applied.term }
      entries = []
      hs = hs.term >= applied.term ? { ...hs, commit: Math.max(hs.commit, applied.index) } : { term: applied.term, vote: 0, commit: applied.index }
      await logFiles.write(restartRecords(groupId, truncated, hs, []), true)
    } else if (hs.commit < applied.index) {
      hs = { ...hs, commit: applied.index }
    }
    if (hs.commit > truncated.index + entries.length) {
      throw corruption(groupId, `the commit index ${hs.commit} is beyond the last log entry ${truncated.index + entries.length}`, { commit: hs.commit, lastIndex: truncated.index + entries.length })
    }
    return new EngineRaftStorage(groupId, { hs, applied, truncated, log: entries })
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

  /** liveEntries is the whole uncompacted log (the log files rewrite an idle group's entries from it). */
  liveEntries(): readonly Entry[] {
    return this.log
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

  /** appliedState is the written AppliedState. */
  get appliedState(): AppliedState {
    return { ...this.applied, confState: cloneConfState(this.applied.confState) }
  }

  /** appliedIndex is the written applied index (in the engine, maybe not synced yet). */
  get appliedIndex(): number {
    return this.applied.index
  }

  /** durableAppliedIndex is an applied index the engine has synced: the log may be compacted up to it. */
  get durableAppliedIndex(): number {
    return this.durableApplied
  }

  /** engineSynced records that an engine sync started when `appliedIndex` was written has completed. */
  engineSynced(appliedIndex: number): void {
    if (appliedIndex > this.durableApplied) this.durableApplied = appliedIndex
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

  /** appendOps stages entries from a Ready; on disk and in memory they replace any suffix from their first index. */
  appendOps(entries: readonly Entry[]): StagedWrite {
    if (entries.length === 0) return NO_WRITE
    for (let i = 1; i < entries.length; i++) assert(entries[i]!.index === entries[i - 1]!.index + 1, 'appendOps: entries are not contiguous')
    // A snapshot staged in the same batch empties the log before these entries land.
    const firstIndex = this.stagedSnapshotIndex !== undefined ? this.stagedSnapshotIndex + 1 : this.firstIndex()
    const previousLast = this.stagedSnapshotIndex ?? this.lastIndex()
    const kept = entries[0]!.index < firstIndex ? entries.slice(firstIndex - entries[0]!.index) : entries
    if (kept.length === 0) return NO_WRITE
    const first = kept[0]!.index
    assert(first <= previousLast + 1, `appendOps: gap, lastIndex ${previousLast} but entries start at ${first}`)
    assert(first > Math.max(this.hs.commit, this.stagedSnapshotIndex ?? 0), `appendOps: entry ${first} would overwrite the committed log (commit ${this.hs.commit})`)
    return {
      ops: [],
      log: [{ type: 'entries', groupId: this.groupId, entries: kept }],
      onDurable: () => {
        assert(this.lastIndex() === previousLast, 'appendOps: the log changed between staging and durability')
        if (first <= this.lastIndex()) {
          const dropped = this.log.splice(first - this.firstIndex())
          for (const entry of dropped) this.bytes -= entryBytes(entry)
        }
        for (const entry of kept) {
          this.log.push(entry)
          this.bytes += entryBytes(entry)
        }
      },
    }
  }

  /** hardStateOps stages a HardState from a Ready. */
  hardStateOps(hs: HardState): StagedWrite {
    const copy = { ...hs }
    return {
      ops: [],
      log: [{ type: 'hardState', groupId: this.groupId, hardState: copy }],
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

  /**
   * snapshotOps stages installing a snapshot: applied jumps to its index in the engine (with the
   * restored data the caller adds to `ops`), synced BEFORE the log records that drop the log:
   * a crash in between leaves the engine ahead of the log, which open() repairs.
   */
  snapshotOps(snapshot: Snapshot): StagedWrite {
    const meta = snapshot.meta
    assert(meta.index > this.applied.index, `snapshotOps: snapshot ${meta.index} is not ahead of applied ${this.applied.index}`)
    const truncated: TruncatedState = { index: meta.index, term: meta.term }
    const applied: AppliedState = { index: meta.index, term: meta.term, confState: cloneConfState(meta.confState) }
    this.stagedSnapshotIndex = meta.index
    return {
      ops: [{ type: 'put', key: records.appliedStateKey(this.groupId), value: records.encodeAppliedState(applied) }],
      syncEngine: true,
      log: [{ type: 'snapshot', groupId: this.groupId, index: meta.index, term: meta.term }],
      onDurable: () => {
        this.stagedSnapshotIndex = undefined
        this.truncated = truncated
        this.applied = applied
        this.durableApplied = applied.index
        this.log = []
        this.bytes = 0
        this.cachedSnapshot = snapshot
      },
    }
  }

  /**
   * destroyOps stages forgetting this group (the replica is being removed from this node): the
   * log files first; `engineOps` (deleting the applied state) go in a later, synced write, so a
   * crash in between leaves an engine state without a log, which open() treats as applied data.
   */
  destroyOps(): StagedWrite & { engineOps: EngineOp[] } {
    return {
      ops: [],
      log: [{ type: 'destroy', groupId: this.groupId }],
      syncLog: true,
      engineOps: [{ type: 'del', key: records.appliedStateKey(this.groupId) }],
      onDurable: () => {
        this.log = []
        this.bytes = 0
        this.cachedSnapshot = undefined
      },
    }
  }

  /** compactOps stages dropping the log up to and including `index`, which the engine must have synced as applied. */
  compactOps(index: number): StagedWrite {
    if (index <= this.truncated.index) return NO_WRITE
    assert(index <= this.durableApplied, `compactOps: index ${index} is not durably applied yet (synced applied ${this.durableApplied})`)
    const truncated: TruncatedState = { index, term: this.term(index) }
    return {
      ops: [],
      log: [{ type: 'compact', groupId: this.groupId, index, term: truncated.term }],
      onDurable: () => {
        assert(this.truncated.index < index, 'compactOps: compacted twice')
        const dropped = this.log.splice(0, index - this.truncated.index)
        for (const entry of dropped) this.bytes -= entryBytes(entry)
        this.truncated = truncated
        // A snapshot behind the compaction point can no longer catch anyone up (the entries after it are gone).
        if (this.cachedSnapshot !== undefined && this.cachedSnapshot.meta.index < index) this.cachedSnapshot = undefined
      },
    }
  }
}

/** restartRecords make the log files hold exactly this state for a group (a legacy import, or a restart at the applied state). */
function restartRecords(groupId: number, truncated: TruncatedState, hardState: HardState, entries: Entry[]): LogRecord[] {
  const out: LogRecord[] = [{ type: 'snapshot', groupId, index: truncated.index, term: truncated.term }]
  if (entries.length > 0) out.push({ type: 'entries', groupId, entries })
  out.push({ type: 'hardState', groupId, hardState })
  return out
}
