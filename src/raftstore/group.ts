/**
 * GroupReplica: the driver's bookkeeping for one Raft group on this node. It owns the requests
 * waiting on the group (proposals until applied, reads until the read index is applied) and the
 * inbox of inputs (ticks, messages, proposals, reads) fed to the core between iterations, so
 * the core is only ever touched between advance() and the next ready().
 *
 * Every queue here is bounded by a named limit from DriverLimits; hitting one is a KvError
 * that names it.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { EngineOp } from '../engine/engine.js'
import { NONE, type ConfChange, type ConfState, type Entry, type Message, type NodeId, type ProposeResult, type RaftCore, type Role, type Snapshot } from '../raft/types.js'
import type { EngineRaftStorage } from './log-storage.js'
import type { AppliedState } from './records.js'

/** ApplyOutput is what a state machine returns for a run of committed entries. */
export interface ApplyOutput {
  /** ops are the engine writes the entries cause; the driver writes them with the applied index. */
  ops: EngineOp[]
  /** results has one element per entry, handed to the proposer of that entry. */
  results: unknown[]
  /**
   * beforeWrite, when present, must resolve before `ops` are written: a state machine that keeps
   * data outside the engine (blob files a pointer in `ops` refers to) makes it durable there
   * first. The driver writes such output in its own batch after the iteration's log write, so
   * the two syncs overlap instead of adding up.
   */
  beforeWrite?: Promise<void>
}

/** StateMachine is the application a group replicates; its data lives in the same engine as the log. */
export interface StateMachine {
  /** apply computes the effect of committed normal entries (never empty ones), in log order. */
  apply(entries: Entry[]): Promise<ApplyOutput>
  /** snapshot serialises the state as last written to the engine (the durable applied index). */
  snapshot(): Promise<Uint8Array>
  /** restore returns the ops that replace all of this group's data with a snapshot's. */
  restore(snapshot: Snapshot): Promise<EngineOp[]>
}

/** DriverLimits bounds every queue of the driver; each is named in the error that enforces it. */
export interface DriverLimits {
  /** pendingProposalsMax: proposals per group not yet applied. */
  pendingProposalsMax: number
  /** pendingReadsMax: linearizable reads per group not yet served. */
  pendingReadsMax: number
  /** inboxMessagesMax: received messages (and, separately, local reports) per group waiting for the next iteration; excess is dropped. */
  inboxMessagesMax: number
  /** proposalBytesMax: largest command one proposal may carry. */
  proposalBytesMax: number
  /** requestTimeoutTicks: ticks after which a proposal or read is failed with KV_ERR_TIMEOUT. */
  requestTimeoutTicks: number
}

/** Waiter is a caller blocked on the group. */
interface Waiter<T> {
  deadlineTick: number
  resolve(value: T): void
  reject(error: Error): void
}

/**
 * QueuedProposal waits in the inbox for the next iteration to hand it to the core; once the
 * core accepts it, the same object waits for its entry to apply, with `term` set (one object
 * per proposal from propose() to its answer).
 */
export interface QueuedProposal extends Waiter<unknown> {
  data?: Uint8Array
  change?: ConfChange
  /** term is the term of the proposal's entry once admitted (0 before). */
  term: number
}

/** PendingProposal is a proposal the core accepted at `index` in `term`. */
type PendingProposal = QueuedProposal

/** PendingApply is the previous iteration's apply output, written in the next batch. */
export interface PendingApply {
  ops: EngineOp[]
  state: AppliedState
  /** entries are the committed entries applied (index and term identify their proposals). */
  entries: readonly Entry[]
  /** results[i] is the outcome of entries[i] for its proposer (parallel arrays: no object per entry). */
  results: unknown[]
  /** beforeWrite: ApplyOutput.beforeWrite, awaited before `ops` are written. */
  beforeWrite?: Promise<void>
}

/** GroupReplica is one group's core, storage, state machine and waiting requests. */
export class GroupReplica {
  readonly inbox = { ticks: 0, messages: [] as Message[], proposals: [] as QueuedProposal[], reads: [] as Waiter<void>[], reports: [] as Array<(core: RaftCore) => void> }
  // Invariant: every key is an index > the durable applied index, inserted in deadline order.
  private readonly proposals = new Map<number, PendingProposal>()
  private readonly readsAwaitingIndex = new Map<string, Waiter<void>[]>()
  // Invariant: sorted by index.
  private readsAwaitingApply: Array<{ index: number; waiters: Waiter<void>[] }> = []
  private readCount = 0
  pendingApply: PendingApply | undefined
  leader: NodeId = NONE
  role: Role = 'follower'
  droppedMessages = 0
  /** snapshotRefusedAt: applied index at which a snapshot exceeded snapshotBytesMax (retry only well after). */
  snapshotRefusedAt = -Infinity
  /** fedTick: the driver's tick count when this group's inbox was last fed (its core's clock). */
  fedTick = 0
  /** alignTicks: extra ticks the next feed gives a new leader so its heartbeats fall on the node's common phase. */
  alignTicks = 0
  // deferred: commit-only appends held back by the driver (deferCommitAppends), at most one per
  // peer (a newer one replaces it), so bounded by the group's membership; deferredTick: when the
  // oldest of them was held back.
  private deferred: Message[] = []
  private deferredTick = 0

  constructor(
    readonly id: number,
    readonly core: RaftCore,
    readonly storage: EngineRaftStorage,
    readonly stateMachine: StateMachine,
    private readonly limits: DriverLimits,
  ) {}

  /** confState is the membership as of the last apply (pending or durable). */
  get confState(): ConfState {
    return (this.pendingApply?.state ?? this.storage.appliedState).confState
  }

  /** enqueueProposal admits a proposal for the next iteration, or refuses it when pendingProposalsMax is reached. */
  enqueueProposal(proposal: QueuedProposal): void {
    if (this.inbox.proposals.length + this.proposals.size >= this.limits.pendingProposalsMax) {
      throw new KvError(ErrorCode.TOO_MANY_REQUESTS, `raft group ${this.id}: pendingProposalsMax (${this.limits.pendingProposalsMax}) reached`, { groupId: this.id, limit: 'pendingProposalsMax' })
    }
    this.inbox.proposals.push(proposal)
  }

  /** enqueueRead admits a read for the next iteration, or refuses it when pendingReadsMax is reached. */
  enqueueRead(read: Waiter<void>): void {
    if (this.readCount >= this.limits.pendingReadsMax) {
      throw new KvError(ErrorCode.TOO_MANY_REQUESTS, `raft group ${this.id}: pendingReadsMax (${this.limits.pendingReadsMax}) reached`, { groupId: this.id, limit: 'pendingReadsMax' })
    }
    this.readCount++
    this.inbox.reads.push(read)
  }

  /** enqueueMessage keeps a received message for the next iteration; past inboxMessagesMax it is dropped (Raft retries). */
  enqueueMessage(message: Message): void {
    if (this.inbox.messages.length >= this.limits.inboxMessagesMax) {
      this.droppedMessages++
      return
    }
    this.inbox.messages.push(message)
  }

  /** enqueueReport keeps a local input (transport report, campaign) for the next iteration; past inboxMessagesMax it is dropped like a message. */
  enqueueReport(report: (core: RaftCore) => void): void {
    if (this.inbox.reports.length >= this.limits.inboxMessagesMax) {
      this.droppedMessages++
      return
    }
    this.inbox.reports.push(report)
  }

  /** notLeaderError is the refusal a non-leader gives, with the leader hint. */
  notLeaderError(): KvError {
    return new KvError(ErrorCode.NOT_LEADER, `raft group ${this.id}: this node is not the leader`, { groupId: this.id, leader: this.leader })
  }

  /**
   * proposeQueued hands the queued proposals to the core and tracks the accepted ones. Runs of
   * normal proposals go in as one batch (when the core supports it): one append message per
   * follower per iteration instead of one per proposal, and so one acknowledgement back.
   */
  proposeQueued(): void {
    const queued = this.inbox.proposals
    this.inbox.proposals = []
    let at = 0
    while (at < queued.length) {
      const first = queued[at]!
      if (first.change !== undefined || this.core.proposeBatch === undefined) {
        this.admit([first], first.change !== undefined ? this.core.proposeConfChange(first.change) : this.core.propose(first.data!))
        at++
        continue
      }
      let end = at + 1
      while (end < queued.length && queued[end]!.change === undefined) end++
      const run = queued.slice(at, end)
      this.admit(run, this.core.proposeBatch(run.map((proposal) => proposal.data!)))
      at = end
    }
  }

  /** admit records proposals the core accepted at consecutive indexes ending at result.index, or rejects them all. */
  private admit(run: QueuedProposal[], result: ProposeResult): void {
    if (!result.ok) {
      if (result.reason === 'notLeader') this.leader = result.leader
      for (const proposal of run) {
        proposal.reject(result.reason === 'notLeader' ? this.notLeaderError() : new KvError(ErrorCode.UNAVAILABLE, `raft group ${this.id}: proposal dropped: ${result.message}`, { groupId: this.id }))
      }
      return
    }
    const firstIndex = result.index - run.length + 1
    for (let i = 0; i < run.length; i++) {
      const index = firstIndex + i
      // A proposal still waiting at this index was in a log suffix a new leader overwrote.
      if (this.proposals.has(index)) this.failProposal(index, new KvError(ErrorCode.UNAVAILABLE, `raft group ${this.id}: proposal superseded at index ${index}`, { groupId: this.id }))
      const proposal = run[i]!
      proposal.term = result.term
      this.proposals.set(index, proposal)
    }
  }

  /** requestReadIndex asks the core for one read index covering every queued read. */
  requestReadIndex(context: Uint8Array): void {
    const reads = this.inbox.reads
    this.inbox.reads = []
    if (reads.length === 0) return
    if (this.role !== 'leader') {
      this.readCount -= reads.length
      for (const read of reads) read.reject(this.notLeaderError())
      return
    }
    this.readsAwaitingIndex.set(Buffer.from(context).toString('hex'), reads)
    this.core.readIndex(context)
  }

  /** onReadState moves the reads of `context` to wait for `index` to be applied. */
  onReadState(context: Uint8Array, index: number): void {
    const key = Buffer.from(context).toString('hex')
    const waiters = this.readsAwaitingIndex.get(key)
    if (waiters === undefined) return
    this.readsAwaitingIndex.delete(key)
    if (index <= this.storage.appliedIndex) {
      this.readCount -= waiters.length
      for (const read of waiters) read.resolve()
      return
    }
    this.readsAwaitingApply.push({ index, waiters })
    this.readsAwaitingApply.sort((a, b) => a.index - b.index)
  }

  /** onRoleChange fails reads that can no longer get a read index from this node. */
  onRoleChange(role: Role, leader: NodeId): void {
    this.leader = leader
    if (this.role === 'leader' && role !== 'leader') {
      for (const waiters of this.readsAwaitingIndex.values()) this.rejectReads(waiters, this.notLeaderError())
      this.readsAwaitingIndex.clear()
    }
    this.role = role
  }

  /**
   * mayAnswerUpTo tells whether applying up to `index` may resolve a proposal or read waiting
   * here: any pending proposal counts (cheap, and a leader has some whenever it applies under
   * load), a read only once its index is covered. A follower usually has neither.
   */
  mayAnswerUpTo(index: number): boolean {
    return this.proposals.size > 0 || (this.readsAwaitingApply.length > 0 && this.readsAwaitingApply[0]!.index <= index)
  }

  /** onApplied resolves proposals and reads covered by a batch that is now written. */
  onApplied(entries: readonly Entry[], results: readonly unknown[], appliedIndex: number): void {
    for (let i = 0; i < entries.length; i++) {
      const { index, term } = entries[i]!
      const proposal = this.proposals.get(index)
      if (proposal === undefined) continue
      this.proposals.delete(index)
      if (proposal.term === term) proposal.resolve(results[i])
      else proposal.reject(new KvError(ErrorCode.UNAVAILABLE, `raft group ${this.id}: proposal at index ${index} was superseded by term ${term}`, { groupId: this.id, index }))
    }
    while (this.readsAwaitingApply.length > 0 && this.readsAwaitingApply[0]!.index <= appliedIndex) {
      const { waiters } = this.readsAwaitingApply.shift()!
      this.readCount -= waiters.length
      for (const read of waiters) read.resolve()
    }
  }

  /** onSnapshotInstalled fails proposals a snapshot jumped over: committed or not, this node cannot tell, so the caller retries with its request id. */
  onSnapshotInstalled(index: number): void {
    for (const key of [...this.proposals.keys()]) {
      if (key <= index) this.failProposal(key, new KvError(ErrorCode.UNAVAILABLE, `raft group ${this.id}: outcome of proposal at index ${key} unknown (snapshot installed)`, { groupId: this.id, index: key }))
    }
    this.onApplied([], [], index)
  }

  /** expire fails every request whose deadline is at or before `tick`. */
  expire(tick: number): void {
    const timeout = (what: string) => new KvError(ErrorCode.TIMEOUT, `raft group ${this.id}: ${what} timed out after ${this.limits.requestTimeoutTicks} ticks`, { groupId: this.id })
    for (const [index, proposal] of this.proposals) {
      if (proposal.deadlineTick > tick) break
      this.failProposal(index, timeout('proposal'))
    }
    for (const [key, waiters] of this.readsAwaitingIndex) {
      if (waiters[0]!.deadlineTick > tick) break
      this.readsAwaitingIndex.delete(key)
      this.rejectReads(waiters, timeout('read'))
    }
    const expired = this.readsAwaitingApply.filter((entry) => entry.waiters[0]!.deadlineTick <= tick)
    if (expired.length === 0) return
    this.readsAwaitingApply = this.readsAwaitingApply.filter((entry) => entry.waiters[0]!.deadlineTick > tick)
    for (const entry of expired) this.rejectReads(entry.waiters, timeout('read'))
  }

  /**
   * defer holds back a commit-only append (no entries) to `message.to` until the next tick,
   * replacing one already held for that peer (a later append carries a commit at least as high).
   */
  defer(message: Message, tick: number): void {
    if (this.deferred.length === 0) this.deferredTick = tick
    const i = this.deferred.findIndex((m) => m.to === message.to)
    if (i >= 0) this.deferred[i] = message
    else this.deferred.push(message)
  }

  /** supersede drops the append held for `message.to` when `message` (sent now) tells that peer at least the same commit; returns how many it dropped. */
  supersede(message: Message): number {
    const i = this.deferred.findIndex((m) => m.to === message.to)
    if (i < 0 || message.commit < this.deferred[i]!.commit || message.term < this.deferred[i]!.term) return 0
    this.deferred.splice(i, 1)
    return 1
  }

  /** hasDeferred tells whether any append is held back. */
  get hasDeferred(): boolean {
    return this.deferred.length > 0
  }

  /** takeDeferred returns (and forgets) the held-back appends once a tick has passed since the oldest was held. */
  takeDeferred(tick: number): Message[] {
    if (this.deferred.length === 0 || tick <= this.deferredTick) return []
    const due = this.deferred
    this.deferred = []
    return due
  }

  /** failAll rejects every waiting request, queued or pending (shutdown, fatal error). */
  failAll(error: KvError): void {
    for (const proposal of this.inbox.proposals) proposal.reject(error)
    this.inbox.proposals = []
    this.rejectReads(this.inbox.reads, error)
    this.inbox.reads = []
    for (const index of [...this.proposals.keys()]) this.failProposal(index, error)
    for (const waiters of this.readsAwaitingIndex.values()) this.rejectReads(waiters, error)
    this.readsAwaitingIndex.clear()
    for (const { waiters } of this.readsAwaitingApply) this.rejectReads(waiters, error)
    this.readsAwaitingApply = []
  }

  private failProposal(index: number, error: KvError): void {
    const proposal = this.proposals.get(index)
    if (proposal === undefined) return
    this.proposals.delete(index)
    proposal.reject(error)
  }

  private rejectReads(waiters: Waiter<void>[], error: KvError): void {
    this.readCount -= waiters.length
    for (const read of waiters) read.reject(error)
  }
}
