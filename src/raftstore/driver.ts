/**
 * RaftDriver runs every Raft group of one node on one engine. One iteration:
 *   1. feed each group's inbox (ticks, received messages, proposals, reads) to its core;
 *   2. collect ready() from every group that has one;
 *   3. apply committed entries through each group's StateMachine (committed: durable in a
 *      quorum's logs), then write ONE engine batch: apply output left over from an earlier
 *      iteration (removals, a failed apply), every Ready's snapshot, entries and hard state,
 *      and this iteration's apply output with its applied index; fsync once if any Ready must
 *      sync (group commit: the cost of an fsync is shared by all groups and all proposals).
 *      The applied index is always written with the data it covers, and waiters are answered
 *      once it is written (see persist);
 *   4. only then send the messages (nothing leaves that depends on unpersisted state; a
 *      leader's appends and heartbeats go out before the write, see maySendBeforePersist);
 *   5. advance(); a group whose Ready carried a snapshot applies after the write instead and
 *      writes that output in one more, unsynced batch (writeApplied);
 *   6. compact the log of groups past the compaction policy; serialise a snapshot only when
 *      the core asked for one (a follower needs compacted entries).
 *
 * Fault model: a failed engine write leaves the cores ahead of the disk, which cannot be
 * undone, so the driver stops (every waiter gets KV_ERR_UNAVAILABLE) and the node must restart
 * and recover from what is durable. Crashes at any point are safe: nothing is acknowledged
 * (proposals, messages) before the batch that covers it is written.
 */
import { ErrorCode, KvError, assert, isKvError } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import type { ConfChange, ConfState, Entry, Message, NodeId, RaftConfig, RaftCore, RandomSource, Ready, Status } from '../raft/types.js'
import { GroupReplica, type DriverLimits, type StateMachine } from './group.js'
import { EngineRaftStorage, type StagedWrite } from './log-storage.js'
import type { LogRecord, RaftLogFiles } from './log-files.js'
import type { EngineOp } from '../engine/engine.js'
import type { RaftEnvelope, Transport, TransportHandler } from './transport.js'
import type { Ticker } from './ticker.js'
import { compactionIndex, resolveDriverOptions, softCompactionWanted, type CompactionPolicy, type ResolvedDriverOptions } from './options.js'

export type { ApplyOutput, DriverLimits, StateMachine } from './group.js'
export type { CompactionPolicy } from './options.js'

/** DriverOptions configures a RaftDriver; validated once at construction. */
export interface DriverOptions {
  nodeId: NodeId
  engine: Engine
  /** logFiles: the node's Raft log (every group's entries and hard state); the engine keeps applied state. */
  logFiles: RaftLogFiles
  transport: Transport
  ticker: Ticker
  random?: RandomSource
  /** raft: options passed to every group's core (id, storage, random and applied are filled in). */
  raft?: Partial<Omit<RaftConfig, 'id' | 'storage' | 'random' | 'applied'>>
  limits?: Partial<DriverLimits>
  compaction?: Partial<CompactionPolicy>
  /** createCore builds a group's consensus core; RaftNode unless a test substitutes one. */
  createCore?: (config: RaftConfig) => RaftCore
  /** decodeConfChange parses the data of a confChange entry (the core's encoding). */
  decodeConfChange?: (data: Uint8Array) => ConfChange
  logger?: (level: 'info' | 'warn' | 'error', message: string, details: Record<string, unknown>) => void
  /** leaderSendsBeforePersist: a leader's appends leave before its own log write (default true; see maySendBeforePersist). */
  leaderSendsBeforePersist?: boolean
  /** deferCommitAppends: a leader holds back appends that only carry a new commit index for up to one tick (default true; see send). */
  deferCommitAppends?: boolean
}

/** DriverStats counts what the driver did, for tests (group commit) and metrics. */
export interface DriverStats {
  iterations: number
  writes: number
  syncWrites: number
  readiesPersisted: number
  /** readiesPerWriteMax: the most groups' Readies one engine write has carried. */
  readiesPerWriteMax: number
  messagesSent: number
  compactions: number
  /** snapshotsGenerated: state machine snapshots taken for lagging followers. */
  snapshotsGenerated: number
  snapshotsInstalled: number
  /** commitAppendsDeferred: commit-only appends held back (deferCommitAppends); commitAppendsSuperseded: those never sent because a later message told the peer the same commit. */
  commitAppendsDeferred: number
  commitAppendsSuperseded: number
  /** engineSyncs: engine syncs made so the log could be compacted past applied state (syncEngine). */
  engineSyncs: number
  /** engineWritesAfterLog: apply output that answered no one here, written after the log write and its messages. */
  engineWritesAfterLog: number
}

const READ_CONTEXT_BYTES = 8
/** EARLY_MESSAGE_TYPES are the leader messages that depend on no state the leader has yet to persist. */
const EARLY_MESSAGE_TYPES: ReadonlySet<Message['type']> = new Set(['app', 'heartbeat', 'snap', 'readIndexResp'])
/** TICKS_PER_ITERATION_MAX: ticks fed at once after a stall; the rest are dropped so a paused process does not fire a burst of timeouts. */
const TICKS_PER_ITERATION_MAX = 64

/**
 * heartbeatAlignment is how many extra ticks a group that became leader at tick `leaderAt` needs
 * so that its heartbeats fall on ticks that are multiples of `interval`, as those of every
 * other group this node leads: the core heartbeats every `interval` ticks counted from its
 * election, and the driver sends all messages of one iteration to a peer as one batch, so
 * aligned groups cost one batch (and one reply batch) per peer per heartbeat, not one per
 * group. The extra ticks also bring the new leader's first check-quorum that much closer
 * (fewer than `interval` ticks of its election timeout).
 */
export function heartbeatAlignment(leaderAt: number, interval: number): number {
  return interval > 1 ? leaderAt % interval : 0
}

/** slowestPeerMatch is the lowest match index of a leader's peers (voters and learners), or 0 when it has no progress to show. */
function slowestPeerMatch(core: RaftCore, self: NodeId): number {
  const progress = core.status().progress
  if (progress === undefined) return 0
  let lowest = Infinity
  for (const [id, peer] of Object.entries(progress)) if (Number(id) !== self) lowest = Math.min(lowest, peer.match)
  return lowest
}

/** engineOnly: a staged write that is all unsynced engine ops (apply output), done once the engine batch is. */
function engineOnly(s: StagedWrite): boolean {
  return s.log === undefined && s.syncEngine !== true && s.ops.length > 0
}

/** Work is one group's Ready in an iteration; appliedEarly: its committed entries were applied before the write (persist). */
interface Work { group: GroupReplica; ready: Ready; appliedEarly: boolean }

/** RaftDriver hosts many Raft groups on one engine and one transport. */
export class RaftDriver {
  readonly stats: DriverStats = { iterations: 0, writes: 0, syncWrites: 0, readiesPersisted: 0, readiesPerWriteMax: 0, messagesSent: 0, compactions: 0, snapshotsGenerated: 0, snapshotsInstalled: 0, commitAppendsDeferred: 0, commitAppendsSuperseded: 0, engineSyncs: 0, engineWritesAfterLog: 0 }
  private readonly options: ResolvedDriverOptions
  private readonly groups = new Map<number, GroupReplica>()
  // active: groups that may have work (an input arrived, or last iteration gave them a Ready),
  // so an iteration costs O(busy groups), not O(hosted groups), between ticks.
  private readonly active = new Set<GroupReplica>()
  // deferring: groups holding back commit-only appends (see send).
  private readonly deferring = new Set<GroupReplica>()
  private readonly onTick = (): void => this.tick()
  private stagedNext: StagedWrite[] = []
  private removals: Array<{ group: GroupReplica; destroy: boolean; resolve(): void; reject(error: Error): void }> = []
  private currentTick = 0
  private readCounter = 0
  private running = false
  private wanted = false
  private engineSyncing = false
  private state: 'new' | 'running' | 'closed' | 'failed' = 'new'
  private failure: KvError | undefined
  private idle: Array<() => void> = []

  constructor(options: DriverOptions) {
    this.options = resolveDriverOptions(options)
  }

  /** nodeId is this node's id in every group it hosts. */
  get nodeId(): NodeId {
    return this.options.nodeId
  }

  /** start begins receiving messages and ticking. */
  async start(): Promise<void> {
    assert(this.state === 'new', 'RaftDriver.start: called twice')
    await this.options.transport.start(this.transportHandler())
    this.options.ticker.start(this.onTick)
    this.state = 'running'
  }

  /** addGroup opens a group's durable state (bootstrap it first with EngineRaftStorage.bootstrap) and starts its core. */
  async addGroup(groupId: number, stateMachine: StateMachine): Promise<void> {
    this.checkUsable()
    if (this.groups.has(groupId)) throw new KvError(ErrorCode.INVALID, `raft group ${groupId} is already hosted`, { groupId })
    const o = this.options
    // A snapshot of a compacted log is generated when a lagging follower first needs it (maybeGenerateSnapshot).
    const storage = await EngineRaftStorage.open(o.engine, o.logFiles, groupId, { logger: (message, details) => o.logger('warn', message, details) })
    // Checked again: another addGroup of the same id may have finished while this one awaited.
    if (this.groups.has(groupId)) throw new KvError(ErrorCode.INVALID, `raft group ${groupId} is already hosted`, { groupId })
    const core = o.createCore({ ...o.raft, id: o.nodeId, storage, random: o.random, applied: storage.appliedIndex })
    const group = new GroupReplica(groupId, core, storage, stateMachine, o.limits)
    this.groups.set(groupId, group)
    this.schedule(group)
  }

  /** propose replicates `data` in `groupId` and resolves with the state machine's result once applied here. */
  propose(groupId: number, data: Uint8Array): Promise<unknown> {
    if (!(data instanceof Uint8Array)) return Promise.reject(new KvError(ErrorCode.INVALID, 'proposal data must be a Uint8Array'))
    if (data.byteLength > this.options.limits.proposalBytesMax) {
      return Promise.reject(new KvError(ErrorCode.VALUE_TOO_LARGE, `proposal of ${data.byteLength} bytes exceeds proposalBytesMax (${this.options.limits.proposalBytesMax})`, { limit: 'proposalBytesMax' }))
    }
    return new Promise((resolve, reject) => {
      this.checkUsable()
      const group = this.group(groupId)
      group.enqueueProposal({ deadlineTick: this.currentTick + this.options.limits.requestTimeoutTicks, resolve, reject, data, term: 0 })
      this.schedule(group)
    })
  }

  /** proposeConfChange changes the membership of `groupId`; resolves with the new ConfState once applied. */
  proposeConfChange(groupId: number, change: ConfChange): Promise<ConfState> {
    return this.enqueue(groupId, (group, waiter) => group.enqueueProposal({ ...waiter, change, term: 0 })) as Promise<ConfState>
  }

  /** readIndex resolves once this node may serve a linearizable read of `groupId` from the engine. */
  readIndex(groupId: number): Promise<void> {
    return this.enqueue(groupId, (group, waiter) => group.enqueueRead(waiter)) as Promise<void>
  }

  /** campaign makes this node start an election in `groupId` (tests, leadership placement). */
  campaign(groupId: number): void {
    const group = this.group(groupId)
    group.enqueueReport((core) => core.campaign())
    this.schedule(group)
  }

  /** transferLeadership asks the leader of `groupId` to hand over to `to`. */
  transferLeadership(groupId: number, to: NodeId): void {
    const group = this.group(groupId)
    group.enqueueReport((core) => core.transferLeadership(to))
    this.schedule(group)
  }

  /** status reports a group's core state. */
  status(groupId: number): Status {
    return this.group(groupId).core.status()
  }

  /** liveEntries is a hosted group's uncompacted log ([] if not hosted), for the log files' rewrites. */
  liveEntries(groupId: number): readonly Entry[] {
    return this.groups.get(groupId)?.storage.liveEntries() ?? []
  }

  /** groupIds lists the hosted groups. */
  groupIds(): number[] {
    return [...this.groups.keys()]
  }

  /** whenIdle resolves once the driver has no iteration running or wanted (tests). */
  whenIdle(): Promise<void> {
    if (!this.running && !this.wanted) return Promise.resolve()
    return new Promise((resolve) => this.idle.push(resolve))
  }

  /**
   * removeGroup stops hosting `groupId` at the next iteration boundary (its waiters get
   * KV_ERR_CLOSED); with `destroy`, its Raft state is deleted in that iteration's batch (the
   * state machine's data is the caller's to delete). Resolves once done.
   */
  removeGroup(groupId: number, options: { destroy?: boolean } = {}): Promise<void> {
    const group = this.group(groupId)
    return new Promise((resolve, reject) => {
      this.removals.push({ group, destroy: options.destroy === true, resolve, reject })
      this.schedule()
    })
  }

  /** close stops ticking and receiving, waits for the running iteration and fails every waiter with KV_ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.state === 'closed') return
    const wasRunning = this.state === 'running' || this.state === 'failed'
    this.state = 'closed'
    this.options.ticker.stop(this.onTick)
    if (wasRunning) await this.options.transport.close()
    while (this.running) await new Promise<void>((resolve) => this.idle.push(resolve))
    for (const group of this.groups.values()) group.failAll(new KvError(ErrorCode.CLOSED, 'raft driver closed', { groupId: group.id }))
    for (const removal of this.removals.splice(0)) removal.reject(new KvError(ErrorCode.CLOSED, 'raft driver closed'))
  }

  private group(groupId: number): GroupReplica {
    const group = this.groups.get(groupId)
    if (group === undefined) throw new KvError(ErrorCode.INVALID, `raft group ${groupId} is not hosted on node ${this.options.nodeId}`, { groupId })
    return group
  }

  private checkUsable(): void {
    if (this.state === 'failed') throw new KvError(ErrorCode.UNAVAILABLE, `raft driver stopped: ${this.failure?.message}`)
    if (this.state === 'closed') throw new KvError(ErrorCode.CLOSED, 'raft driver closed')
  }

  private enqueue(groupId: number, admit: (group: GroupReplica, waiter: { deadlineTick: number; resolve(v: unknown): void; reject(e: Error): void }) => void): Promise<unknown> {
    return new Promise((resolve, reject) => {
      this.checkUsable()
      const group = this.group(groupId)
      admit(group, { deadlineTick: this.currentTick + this.options.limits.requestTimeoutTicks, resolve, reject })
      this.schedule(group)
    })
  }

  private transportHandler(): TransportHandler {
    return {
      receive: (_from, envelopes) => {
        for (const { groupId, message } of envelopes) {
          const group = this.groups.get(groupId)
          if (group === undefined) continue
          group.enqueueMessage(message)
          this.active.add(group)
        }
        this.schedule()
      },
      unreachable: (groupId, to) => this.report(groupId, (core) => core.reportUnreachable(to)),
      snapshotStatus: (groupId, to, ok) => this.report(groupId, (core) => core.reportSnapshot(to, ok)),
    }
  }

  private report(groupId: number, report: (core: RaftCore) => void): void {
    const group = this.groups.get(groupId)
    if (group === undefined) return
    group.enqueueReport(report)
    this.schedule(group)
  }

  private tick(): void {
    this.currentTick++
    for (const group of this.groups.values()) {
      group.inbox.ticks++
      group.expire(this.currentTick)
      this.active.add(group)
    }
    this.schedule()
  }

  private schedule(group?: GroupReplica): void {
    if (group !== undefined) this.active.add(group)
    this.wanted = true
    if (this.running || this.state !== 'running') return
    this.running = true
    // Start on the next turn, never inside the caller: every input of this turn (a burst of
    // proposals, a batch of received messages) then goes into one iteration and one write.
    setImmediate(() => void this.runLoop())
  }

  private async runLoop(): Promise<void> {
    try {
      while (this.wanted && this.state === 'running') {
        this.wanted = false
        await this.iterate()
      }
    } catch (error) {
      this.fail(error)
    } finally {
      this.running = false
      const idle = this.idle
      this.idle = []
      for (const resolve of idle) resolve()
    }
  }

  private fail(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error)
    this.options.logger('error', 'raft driver stopped after a failed iteration', { error: message, stack: (error as Error)?.stack })
    this.failure = new KvError(ErrorCode.UNAVAILABLE, `raft driver stopped: ${message}`, { nodeId: this.options.nodeId })
    this.state = 'failed'
    this.options.ticker.stop(this.onTick)
    for (const group of this.groups.values()) group.failAll(this.failure)
  }

  /** takeRemovals unhosts groups between iterations; their destroy ops join this iteration's batch. */
  private takeRemovals(): void {
    const removals = this.removals
    this.removals = []
    for (const removal of removals) {
      const { group } = removal
      if (this.groups.get(group.id) !== group) {
        removal.resolve()
        continue
      }
      this.groups.delete(group.id)
      this.active.delete(group)
      this.deferring.delete(group)
      group.failAll(new KvError(ErrorCode.CLOSED, `raft group ${group.id} was removed from node ${this.options.nodeId}`, { groupId: group.id }))
      // Apply output not yet written is dropped with the group: nothing waits for it any more.
      group.pendingApply = undefined
      if (!removal.destroy) {
        this.stagedNext.push({ ops: [], onDurable: () => removal.resolve() })
        continue
      }
      // The log forgets the group first, then the engine its applied state (destroyOps).
      const destroy = group.storage.destroyOps()
      this.stagedNext.push({
        ops: [],
        log: destroy.log,
        syncLog: true,
        onDurable: () => {
          destroy.onDurable()
          this.stagedNext.push({ ops: destroy.engineOps, syncEngine: true, onDurable: () => removal.resolve() })
          this.wanted = true
        },
      })
    }
  }

  private async iterate(): Promise<void> {
    if (this.removals.length > 0) this.takeRemovals()
    const candidates = [...this.active]
    this.active.clear()
    const work: Work[] = []
    for (const group of candidates) {
      this.feed(group)
      if (group.core.hasReady()) work.push({ group, ready: group.core.ready(), appliedEarly: false })
    }
    const applying = candidates.filter((group) => group.pendingApply !== undefined)
    // The core asks for snapshots while stepping (feed), so the groups wanting one are known here.
    const wanting = candidates.filter((group) => group.storage.snapshotWanted)
    if (work.length === 0 && applying.length === 0 && this.stagedNext.length === 0) {
      if (this.deferring.size > 0) this.send([], true)
      for (const group of wanting) await this.maybeGenerateSnapshot(group)
      return
    }
    this.stats.iterations++
    const early = work.filter(({ group, ready }) => this.maySendBeforePersist(group, ready))
    if (early.length > 0) {
      this.send(early)
      // Let the transport flush before the write: an fsync may block this thread (RocksDB does).
      await new Promise((resolve) => setImmediate(resolve))
    }
    // Committed entries are applied before the write, and their output joins its batch: one
    // engine write per iteration (see persist). A snapshot, or output left from an earlier
    // iteration, keeps the order write-then-apply.
    for (const item of work) {
      if (item.ready.snapshot !== undefined || item.group.pendingApply !== undefined) continue
      await this.apply(item.group, item.ready)
      item.appliedEarly = true
    }
    // The other messages wait for the log write (a follower's acknowledgement, a vote), and leave
    // as soon as it is durable: see write() for the apply output that is written after them.
    const held = work.filter((item) => !early.includes(item))
    let heldSent = false
    const sendHeld = (): void => {
      if (heldSent) return
      heldSent = true
      this.send(held, true)
    }
    await this.persist(work, applying, sendHeld)
    sendHeld()
    for (const { group, ready, appliedEarly } of work) {
      if (!appliedEarly) await this.apply(group, ready)
      group.core.advance(ready)
    }
    await this.writeApplied(work)
    for (const group of wanting) await this.maybeGenerateSnapshot(group)
    for (const { group } of work) {
      this.maybeCompact(group)
      // advance() may have left more to do.
      this.active.add(group)
    }
    if (this.active.size > 0 || this.stagedNext.length > 0) this.wanted = true
  }

  /** feed hands a group's inbox to its core, between advance() and the next ready(). */
  private feed(group: GroupReplica): void {
    const inbox = group.inbox
    const ticks = Math.min(inbox.ticks, TICKS_PER_ITERATION_MAX) + group.alignTicks
    inbox.ticks = 0
    group.alignTicks = 0
    group.fedTick = this.currentTick
    for (let i = 0; i < ticks; i++) group.core.tick()
    const messages = inbox.messages
    inbox.messages = []
    for (const message of messages) this.step(group, message)
    const reports = inbox.reports
    inbox.reports = []
    for (const report of reports) report(group.core)
    group.proposeQueued()
    if (inbox.reads.length > 0) {
      const context = Buffer.alloc(READ_CONTEXT_BYTES)
      context.writeUInt32BE(this.options.nodeId >>> 0, 0)
      context.writeUInt32BE(++this.readCounter >>> 0, 4)
      group.requestReadIndex(context)
    }
  }

  private step(group: GroupReplica, message: Message): void {
    try {
      group.core.step(message)
    } catch (error) {
      // A malformed message from a peer is its problem, not a reason to stop this node.
      if (!isKvError(error)) throw error
      this.options.logger('warn', 'raft message refused', { groupId: group.id, from: message.from, type: message.type, error: error.message })
    }
  }

  /**
   * persist writes one batch for every group: applies left from an earlier iteration, then
   * snapshots, entries, hard states, and the output of this iteration's applies. Applying
   * before the log write is safe: committed entries are durable in a quorum's logs (a leader
   * counts a follower's acknowledgement only after its own write, see maySendBeforePersist),
   * and the apply output (data and applied index) is in the same atomic batch as the log
   * entries it may cover, so no crash leaves the applied index ahead of the durable log; the
   * proposals and reads it answers resolve only once that batch is written.
   */
  private async persist(work: Work[], applying: GroupReplica[], onLogDurable: () => void): Promise<void> {
    for (const { group, ready } of work) {
      // A snapshot's restore ops are computed from the engine, so earlier applies must be written first.
      if (ready.snapshot !== undefined && group.pendingApply !== undefined) await this.write([this.stageApply(group)], false)
    }
    const staged: StagedWrite[] = this.stagedNext
    this.stagedNext = []
    for (const group of applying) if (group.pendingApply !== undefined) staged.push(this.stageApply(group))
    for (const { group, ready } of work) {
      if (ready.snapshot !== undefined) {
        const snapshot = ready.snapshot
        const restoreOps = await group.stateMachine.restore(snapshot)
        const install = group.storage.snapshotOps(snapshot)
        staged.push({ ops: [...restoreOps, ...install.ops], syncEngine: true, log: install.log, onDurable: () => { install.onDurable(); group.onSnapshotInstalled(snapshot.meta.index); this.stats.snapshotsInstalled++ } })
      }
      staged.push(group.storage.appendOps(ready.entries))
      if (ready.hardState !== undefined) staged.push(group.storage.hardStateOps(ready.hardState))
    }
    // Apply output that waits for data outside the engine (beforeWrite) is written right after the
    // log: its wait then overlaps the log's sync instead of delaying it. Unsynced is enough, as in
    // writeApplied: the entries are committed and this node's log holds them once this write returns.
    const late: StagedWrite[] = []
    for (const { group, appliedEarly } of work) {
      if (appliedEarly && group.pendingApply !== undefined) (group.pendingApply.beforeWrite === undefined ? staged : late).push(this.stageApply(group))
    }
    this.stats.readiesPersisted += work.length
    this.stats.readiesPerWriteMax = Math.max(this.stats.readiesPerWriteMax, work.length)
    await this.write(staged, work.some(({ ready }) => ready.mustSync) || staged.some((s) => s.syncLog === true), onLogDurable)
    if (late.length > 0) await this.write(late, false)
  }

  /**
   * writeApplied writes the output of applies made after the write (a group whose Ready
   * carried a snapshot; every other group's went into persist's batch), data and applied index
   * in one batch, without an fsync, and only then answers the proposals and reads it covers. No
   * fsync is needed: the entries are committed, so durable in a quorum's logs including this
   * node's (persisted earlier in the iteration), and a crash only makes them be applied again.
   */
  private async writeApplied(work: Array<{ group: GroupReplica; ready: Ready }>): Promise<void> {
    const staged: StagedWrite[] = []
    for (const { group } of work) if (group.pendingApply !== undefined) staged.push(this.stageApply(group))
    if (staged.length > 0) await this.write(staged, false)
  }

  private stageApply(group: GroupReplica): StagedWrite {
    const pending = group.pendingApply!
    group.pendingApply = undefined
    const applied = group.storage.appliedStateOps(pending.state)
    return {
      ops: [...pending.ops, ...applied.ops],
      beforeWrite: pending.beforeWrite,
      afterLog: !group.mayAnswerUpTo(pending.state.index),
      onDurable: () => { applied.onDurable(); group.onApplied(pending.entries, pending.results, pending.state.index) },
    }
  }

  /**
   * write writes staged changes: engine ops that must be synced first (a snapshot install), then
   * the log records (fdatasynced when `sync`) side by side with the other engine ops, unsynced:
   * those are applied state, replayed from the log after a crash (log-storage.ts).
   * `onLogDurable` runs once the log records are durable (the iteration's held messages).
   */
  private async write(staged: StagedWrite[], sync: boolean, onLogDurable?: () => void): Promise<void> {
    for (const s of staged) if (s.beforeWrite !== undefined) await s.beforeWrite
    const first: EngineOp[] = []
    const ops: EngineOp[] = []
    const log: LogRecord[] = []
    for (const s of staged) {
      const into = s.syncEngine === true ? first : ops
      for (const op of s.ops) into.push(op)
      if (s.log !== undefined) for (const record of s.log) log.push(record)
    }
    if (first.length > 0) await this.options.engine.batch(first, { sync: true })
    const logWrite = log.length > 0 ? this.options.logFiles.write(log, sync) : undefined
    if (logWrite !== undefined || ops.length > 0 || first.length > 0) {
      this.stats.writes++
      if (sync && logWrite !== undefined) this.stats.syncWrites++
    }
    // Apply output is answered as soon as the engine has it, not after this write's fsync: its
    // entries are committed (durable in a quorum's logs; a leader's own log held them before it
    // counted itself), so the fsync of the entries appended in this iteration is not theirs to
    // wait for. That takes one fsync off every commit's latency. Apply output that answers no one
    // here (a follower's) goes the other way, after the log: the engine writes on this thread, so
    // written first it would hold back the acknowledgement the leader waits for.
    const afterLog = ops.length > 0 && logWrite !== undefined && onLogDurable !== undefined && staged.every((s) => s.ops.length === 0 || s.afterLog === true)
    const writeEngine = (): Promise<void> => this.options.engine.batch(ops, { sync: false }).then(() => {
      for (const s of staged) if (engineOnly(s)) s.onDurable()
    })
    let engineWrite = ops.length > 0 && !afterLog ? writeEngine() : undefined
    if (logWrite !== undefined && onLogDurable !== undefined) {
      // Both settle before either failure is thrown: a rejection left unobserved would be unhandled.
      const [logResult] = await Promise.allSettled([logWrite, engineWrite])
      if (logResult.status === 'rejected') throw logResult.reason
      onLogDurable()
    }
    if (afterLog) {
      this.stats.engineWritesAfterLog++
      engineWrite = writeEngine()
    }
    const [logResult, engineResult] = await Promise.allSettled([logWrite, engineWrite])
    if (logResult.status === 'rejected') throw logResult.reason
    if (engineResult.status === 'rejected') throw engineResult.reason
    for (const s of staged) if (engineWrite === undefined || !engineOnly(s)) s.onDurable()
  }

  /**
   * syncEngine makes the applied state written so far durable in the engine (one engine sync,
   * off the iteration), so the log may be compacted up to it: until then a crash could take
   * those applies back and the log must keep the entries to replay them.
   */
  private syncEngine(): void {
    if (this.engineSyncing || this.state !== 'running') return
    this.engineSyncing = true
    const written = [...this.groups.values()].map((group) => [group, group.storage.appliedIndex] as const)
    this.options.engine.sync().then(() => {
      this.engineSyncing = false
      this.stats.engineSyncs++
      for (const [group, applied] of written) group.storage.engineSynced(applied)
    }, (error: unknown) => {
      this.engineSyncing = false
      if (this.state === 'running') this.fail(error)
    })
  }

  /**
   * maySendBeforePersist lets a leader replicate in parallel with its own log write (Raft
   * thesis §10.2.1), saving one fsync of latency. Safe here because (a) a leader's term and
   * vote are already durable (its campaign persisted them before asking for votes), so only
   * Readies that do not change them qualify, and (b) acknowledgements are fed to the core only
   * in a later iteration, after this batch is durable, so the leader never counts its own
   * unwritten entries towards a commit.
   */
  private maySendBeforePersist(group: GroupReplica, ready: Ready): boolean {
    if (!this.options.leaderSendsBeforePersist || (ready.softState?.role ?? group.role) !== 'leader' || ready.snapshot !== undefined) return false
    const durable = group.storage.hardState
    if (ready.hardState !== undefined && (ready.hardState.term !== durable.term || ready.hardState.vote !== durable.vote)) return false
    return ready.messages.every((m) => EARLY_MESSAGE_TYPES.has(m.type))
  }

  /**
   * send hands the Readies' messages to the transport, with (`withDue`) the held-back appends
   * that are due, in one call so each peer gets one batch.
   *
   * With deferCommitAppends, an append without entries (a leader's broadcast of a new commit
   * index) is held back until the next tick: when proposals keep coming, the next append to that
   * peer carries the commit anyway (and a heartbeat carries it too), so the held one is dropped
   * and the follower applies in the same iteration, write and reply as its next append, instead
   * of one more of each (and one more reply for the leader to step): at one proposer this is a
   * third of the messages, iterations and engine writes per commit. Holding back or dropping a
   * message is safe in Raft (any message may be lost or late); it only delays a follower's
   * applies by up to one tick when the group goes quiet. The leader's own commits, and so the
   * answers to proposals, do not wait for it.
   */
  private send(work: Array<{ group: GroupReplica; ready: Ready }>, withDue = false): void {
    const envelopes: RaftEnvelope[] = []
    const defer = this.options.deferCommitAppends
    for (const { group, ready } of work) {
      for (const message of ready.messages) {
        if (defer && message.type === 'app' && message.entries.length === 0 && message.snapshot === undefined) {
          group.defer(message, this.currentTick)
          this.deferring.add(group)
          this.stats.commitAppendsDeferred++
          continue
        }
        if ((message.type === 'app' || message.type === 'heartbeat') && group.hasDeferred) this.stats.commitAppendsSuperseded += group.supersede(message)
        envelopes.push({ groupId: group.id, message })
      }
    }
    if (withDue && this.deferring.size > 0) this.takeDueDeferred(envelopes)
    if (envelopes.length === 0) return
    this.stats.messagesSent += envelopes.length
    this.options.transport.send(envelopes)
  }

  /** takeDueDeferred moves the held-back appends due at this tick into `envelopes`. */
  private takeDueDeferred(envelopes: RaftEnvelope[]): void {
    for (const group of this.deferring) {
      for (const message of group.takeDeferred(this.currentTick)) envelopes.push({ groupId: group.id, message })
      if (!group.hasDeferred) this.deferring.delete(group)
    }
  }

  /** apply runs committed entries through the state machine; the output is written by the next batch. */
  private async apply(group: GroupReplica, ready: Ready): Promise<void> {
    if (ready.softState !== undefined) {
      if (ready.softState.role === 'leader' && group.role !== 'leader') group.alignTicks = heartbeatAlignment(group.fedTick, this.options.raft.heartbeatIntervalTicks)
      group.onRoleChange(ready.softState.role, ready.softState.leader)
    }
    for (const readState of ready.readStates) group.onReadState(readState.context, readState.index)
    const committed = ready.committedEntries
    if (committed.length === 0) return
    assert(group.pendingApply === undefined, 'apply: previous apply output not written yet')
    const commands = committed.filter((entry) => entry.type === 'normal' && entry.data.byteLength > 0)
    const output = commands.length > 0 ? await group.stateMachine.apply(commands) : { ops: [], results: [] }
    assert(output.results.length === commands.length, `StateMachine.apply returned ${output.results.length} results for ${commands.length} entries`)
    let confState = group.storage.appliedState.confState
    let next = 0
    const results = new Array<unknown>(committed.length)
    for (let i = 0; i < committed.length; i++) {
      const entry = committed[i]!
      if (entry.type === 'confChange') {
        confState = group.core.applyConfChange(this.options.decodeConfChange(entry.data))
        results[i] = confState
      } else if (entry.data.byteLength > 0) {
        results[i] = output.results[next++]
      }
    }
    const last = committed[committed.length - 1]!
    group.pendingApply = { ops: output.ops, state: { index: last.index, term: last.term, confState }, entries: committed, results, ...(output.beforeWrite === undefined ? {} : { beforeWrite: output.beforeWrite }) }
  }

  /** maybeCompact stages dropping the applied log past the policy's bounds (no snapshot: see maybeGenerateSnapshot). */
  private maybeCompact(group: GroupReplica): void {
    const storage = group.storage
    const log = { firstIndex: storage.firstIndex(), lastIndex: storage.lastIndex(), applied: storage.appliedIndex, logBytes: storage.logBytes }
    // Asked only past the soft threshold (status() builds an object): once per ~logRetainEntries entries while peers keep up.
    const replicatedTo = group.role === 'leader' && softCompactionWanted(this.options.compaction, log) ? slowestPeerMatch(group.core, this.options.nodeId) : Infinity
    const wanted = compactionIndex(this.options.compaction, log, replicatedTo)
    if (wanted === undefined) return
    // Only up to what the engine has synced as applied; past it, sync the engine for next time.
    if (wanted > storage.durableAppliedIndex) this.syncEngine()
    const index = Math.min(wanted, storage.durableAppliedIndex)
    if (index < log.firstIndex) return
    this.stagedNext.push(storage.compactOps(index))
    this.stats.compactions++
  }

  /**
   * maybeGenerateSnapshot serialises the state machine at the durable applied index once the
   * core has asked for a snapshot of a compacted log (a follower needs one). Called between
   * writeApplied and the next iteration, so the engine holds exactly the applied state. A
   * snapshot past snapshotBytesMax is not kept (it would be held in memory); it is retried
   * after compactLogEntriesMax more applied entries, and until then the follower waits.
   */
  private async maybeGenerateSnapshot(group: GroupReplica): Promise<void> {
    const storage = group.storage
    if (!storage.snapshotWanted || group.pendingApply !== undefined) return
    if (storage.appliedIndex < group.snapshotRefusedAt + this.options.compaction.compactLogEntriesMax) return
    const applied = storage.appliedState
    const data = await group.stateMachine.snapshot()
    if (data.byteLength > this.options.compaction.snapshotBytesMax) {
      this.options.logger('warn', 'snapshot exceeds snapshotBytesMax; not kept', { groupId: group.id, bytes: data.byteLength, limit: this.options.compaction.snapshotBytesMax })
      group.snapshotRefusedAt = applied.index
      return
    }
    storage.setSnapshot({ meta: { index: applied.index, term: storage.term(applied.index), confState: applied.confState }, data })
    this.stats.snapshotsGenerated++
  }
}
