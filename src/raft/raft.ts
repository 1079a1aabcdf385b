/**
 * Raft: the protocol state machine of one node (the etcd-io/raft design). Each role has its own
 * step function, swapped on transition (becomeLeader sets `this.stepFn = stepLeader`). All
 * output is buffered in `msgs` and `readStates` and drained by RaftNode into a Ready.
 *
 * Fault model: messages may be lost, duplicated, reordered or arbitrarily delayed; nodes crash
 * and restart from what the driver persisted. Safety never depends on timing; liveness needs a
 * quorum that can talk within an election timeout. A message is only ever emitted together
 * with (in the same Ready as) the log entries and hard state it depends on.
 */
import { ErrorCode, KvError, assert } from '../errors.js'
import type { ConfState, Entry, EntryType, Message, MessageType, NodeId, ProposeResult, ReadState, Role, Snapshot } from './types.js'
import { NONE } from './types.js'
import type { ResolvedRaftConfig } from './config.js'
import { RaftLog } from './log.js'
import { ProgressTracker } from './tracker.js'
import { ConfHistory, validateConfChange, decodeConfChange } from './confchange.js'
import { ReadOnly, READ_INDEX_PENDING_MAX } from './read-only.js'
import { jointVote } from './quorum.js'
import { isEmptyHardState, SnapshotTemporarilyUnavailable } from './util.js'

type StepFn = (r: Raft, m: Message) => void

/** TRANSFER_CONTEXT marks the vote requests of an election forced by leadership transfer; they bypass the leader lease. */
export const TRANSFER_CONTEXT = new TextEncoder().encode('transfer')

/** ProposalEntry is an entry as proposed: the leader assigns its term and index. */
export interface ProposalEntry {
  type: EntryType
  data: Uint8Array
}

/** newMessage builds a Message with every unused field at its zero value. */
export function newMessage(fields: Partial<Message> & { type: MessageType }): Message {
  // One literal shape for every message keeps property access monomorphic on the hot path.
  const m: Message = {
    type: fields.type,
    from: fields.from ?? NONE,
    to: fields.to ?? NONE,
    term: fields.term ?? 0,
    logTerm: fields.logTerm ?? 0,
    index: fields.index ?? 0,
    entries: fields.entries ?? [],
    commit: fields.commit ?? 0,
    reject: fields.reject ?? false,
    rejectHint: fields.rejectHint ?? 0,
  }
  if (fields.snapshot !== undefined) m.snapshot = fields.snapshot
  if (fields.context !== undefined) m.context = fields.context
  return m
}

function isTransferContext(context: Uint8Array | undefined): boolean {
  return context !== undefined && context.byteLength === TRANSFER_CONTEXT.byteLength && context.every((b, i) => b === TRANSFER_CONTEXT[i])
}

function voteRespType(type: MessageType): MessageType {
  return type === 'preVote' ? 'preVoteResp' : 'voteResp'
}

/** Raft is the consensus state of one node; RaftNode wraps it with the Ready/advance protocol. */
export class Raft {
  readonly id: NodeId
  readonly config: ResolvedRaftConfig
  // Invariant: term never decreases; vote is NONE or a node voted for in `term`.
  term = 0
  vote: NodeId = NONE
  lead: NodeId = NONE
  role: Role = 'follower'
  readonly log: RaftLog
  readonly tracker: ProgressTracker
  readonly confs: ConfHistory
  readOnly = new ReadOnly()
  /** pendingReadIndexMessages wait for the leader's first commit in its term (bounded by READ_INDEX_PENDING_MAX). */
  pendingReadIndexMessages: Message[] = []
  msgs: Message[] = []
  readStates: ReadState[] = []
  // Invariant: electionElapsed counts ticks since the last reset; heartbeatElapsed only on a leader.
  electionElapsed = 0
  heartbeatElapsed = 0
  randomizedElectionTimeout = 0
  /** leadTransferee is the node leadership is being handed to (leader only). */
  leadTransferee: NodeId = NONE
  /** uncommittedBytes is the payload of entries appended by this leader and not yet committed. */
  uncommittedBytes = 0
  stepFn: StepFn = stepFollower

  constructor(config: ResolvedRaftConfig) {
    this.id = config.id
    this.config = config
    const storage = config.storage
    const { hardState, confState } = storage.initialState()
    this.log = new RaftLog(storage)
    this.tracker = new ProgressTracker(config.inflightMessagesMax)
    this.confs = new ConfHistory(storage.firstIndex() - 1, confState)
    this.replayStoredConfChanges()
    if (!isEmptyHardState(hardState)) this.loadHardState(hardState)
    if (config.applied > this.log.applied) this.restoreApplied(config.applied)
    this.confs.compactTo(this.log.applied)
    this.tracker.applyConfState(this.confs.current(), this.log.lastIndex() + 1)
    this.becomeFollower(this.term, NONE)
  }

  private replayStoredConfChanges(): void {
    const storage = this.config.storage
    const last = storage.lastIndex()
    for (let lo = storage.firstIndex(); lo <= last; ) {
      const batch = storage.entries(lo, last + 1, this.config.entryBytesMaxPerMessage)
      assert(batch.length > 0, 'RaftStorage.entries returned nothing for a non-empty range')
      this.confs.onAppend(batch.filter((e) => e.type === 'confChange'))
      lo = batch.at(-1)!.index + 1
    }
  }

  private loadHardState(hs: { term: number; vote: NodeId; commit: number }): void {
    assert(hs.commit <= this.log.lastIndex(), `hardState.commit ${hs.commit} beyond lastIndex ${this.log.lastIndex()}`)
    // NB: a snapshot is committed by definition, so a commit index below it (a driver that crashed
    // between persisting a snapshot and the hard state) is raised to it rather than refused.
    this.log.committed = Math.max(hs.commit, this.log.committed)
    this.term = hs.term
    this.vote = hs.vote
  }

  private restoreApplied(applied: number): void {
    if (applied > this.log.lastIndex()) {
      throw new KvError(ErrorCode.INVALID, `RaftConfig.applied ${applied} is beyond the stored log (lastIndex ${this.log.lastIndex()})`, { field: 'applied', value: applied })
    }
    // NB: applied entries are committed by definition; a commit index that lagged it on disk (a
    // commit-only hard state is written without fsync) is raised rather than refused.
    this.log.commitTo(applied)
    this.log.appliedTo(applied)
  }

  /** send queues a message; vote traffic carries an explicit term, forwarded proposals and reads none. */
  send(fields: Partial<Message> & { type: MessageType; to: NodeId }): void {
    const m = newMessage(fields)
    if (m.from === NONE) m.from = this.id
    if (fields.term === undefined && m.type !== 'prop' && m.type !== 'readIndex') m.term = this.term
    this.msgs.push(m)
  }

  /** promotable tells whether this node may campaign: it must be a voter in its configuration. */
  promotable(): boolean {
    return this.tracker.isVoter(this.id)
  }

  /** confState is the configuration in force (the latest in the log). */
  confState(): ConfState {
    return this.tracker.confState()
  }

  private resetRandomizedElectionTimeout(): void {
    const draw = this.config.random()
    assert(draw >= 0 && draw < 1, `RaftConfig.random returned ${draw}, outside [0, 1)`)
    this.randomizedElectionTimeout = this.config.electionTimeoutTicks + Math.floor(draw * this.config.electionTimeoutTicks)
  }

  private reset(term: number): void {
    if (this.term !== term) {
      this.term = term
      this.vote = NONE
    }
    this.lead = NONE
    this.electionElapsed = 0
    this.heartbeatElapsed = 0
    this.resetRandomizedElectionTimeout()
    this.leadTransferee = NONE
    this.tracker.resetVotes()
    this.tracker.resetProgress(this.log.lastIndex(), this.id, this.log.persistedLastIndex())
    this.uncommittedBytes = 0
    this.readOnly = new ReadOnly()
    this.pendingReadIndexMessages = []
  }

  /** becomeFollower enters the follower role in `term`, following `lead` (or no one). */
  becomeFollower(term: number, lead: NodeId): void {
    this.stepFn = stepFollower
    this.reset(term)
    this.lead = lead
    this.role = 'follower'
  }

  /** becomeCandidate starts a real election: a new term with a vote for itself. */
  becomeCandidate(): void {
    assert(this.role !== 'leader', 'becomeCandidate: a leader cannot become a candidate')
    this.stepFn = stepCandidate
    this.reset(this.term + 1)
    this.vote = this.id
    this.role = 'candidate'
  }

  /** becomePreCandidate starts a pre-election (§9.6): no term change, so a partitioned node cannot disrupt. */
  becomePreCandidate(): void {
    assert(this.role !== 'leader', 'becomePreCandidate: a leader cannot become a pre-candidate')
    this.stepFn = stepCandidate
    this.tracker.resetVotes()
    this.lead = NONE
    this.role = 'preCandidate'
  }

  /** becomeLeader takes over and appends the empty entry that lets it commit entries of earlier terms (§5.4.2, §8). */
  becomeLeader(): void {
    assert(this.role !== 'follower', 'becomeLeader: a follower must win an election first')
    this.stepFn = stepLeader
    this.reset(this.term)
    this.lead = this.id
    this.role = 'leader'
    this.tracker.progress.get(this.id)?.becomeReplicate()
    const self = this.tracker.progress.get(this.id)
    if (self !== undefined) self.recentActive = true
    this.appendEntries([{ type: 'normal', data: new Uint8Array(0) }])
  }

  /** tick advances logical time: elections on followers and candidates, heartbeats and check-quorum on leaders. */
  tick(): void {
    if (this.role === 'leader') this.tickHeartbeat()
    else this.tickElection()
  }

  private tickElection(): void {
    this.electionElapsed++
    if (this.promotable() && this.electionElapsed >= this.randomizedElectionTimeout) {
      this.electionElapsed = 0
      this.step(newMessage({ type: 'hup', from: this.id }))
    }
  }

  private tickHeartbeat(): void {
    this.heartbeatElapsed++
    this.electionElapsed++
    if (this.electionElapsed >= this.config.electionTimeoutTicks) {
      this.electionElapsed = 0
      if (this.config.checkQuorum) this.step(newMessage({ type: 'checkQuorum', from: this.id }))
      // A transfer that did not finish within an election timeout is abandoned (§3.10).
      if (this.role === 'leader' && this.leadTransferee !== NONE) this.leadTransferee = NONE
    }
    if (this.role !== 'leader') return
    if (this.heartbeatElapsed >= this.config.heartbeatIntervalTicks) {
      this.heartbeatElapsed = 0
      this.step(newMessage({ type: 'beat', from: this.id }))
    }
  }

  /** step is the single entry point for messages: term bookkeeping first, then the role's step function. */
  step(m: Message): void {
    if (m.term > this.term) {
      if (!this.stepHigherTerm(m)) return
    } else if (m.term !== 0 && m.term < this.term) {
      this.stepLowerTerm(m)
      return
    }
    switch (m.type) {
      case 'hup':
        this.hup(isTransferContext(m.context))
        return
      case 'vote':
      case 'preVote':
        this.handleVoteRequest(m)
        return
      default:
        this.stepFn(this, m)
    }
  }

  /** stepHigherTerm handles a message from a newer term; false means the message is dropped. */
  private stepHigherTerm(m: Message): boolean {
    if (m.type === 'vote' || m.type === 'preVote') {
      const inLease = this.config.checkQuorum && this.lead !== NONE && this.electionElapsed < this.config.electionTimeoutTicks
      // §9.6 / §4.2.3: with a live leader, a disruptive candidate (e.g. a removed or partitioned node) is ignored.
      if (inLease && !isTransferContext(m.context)) return false
    }
    if (m.type === 'preVote') return true // a pre-vote never changes our term
    if (m.type === 'preVoteResp' && !m.reject) return true // we bump the term ourselves if we win
    const fromLeader = m.type === 'app' || m.type === 'heartbeat' || m.type === 'snap'
    this.becomeFollower(m.term, fromLeader ? m.from : NONE)
    return true
  }

  private stepLowerTerm(m: Message): void {
    if ((this.config.checkQuorum || this.config.preVote) && (m.type === 'heartbeat' || m.type === 'app')) {
      // A stale leader cut off by check-quorum or pre-vote would never learn the new term otherwise.
      this.send({ type: 'appResp', to: m.from })
    } else if (m.type === 'preVote') {
      this.send({ type: 'preVoteResp', to: m.from, reject: true })
    }
  }

  private handleVoteRequest(m: Message): void {
    const canVote =
      this.vote === m.from ||
      (this.vote === NONE && this.lead === NONE) ||
      (m.type === 'preVote' && m.term > this.term)
    if (canVote && this.log.isUpToDate(m.index, m.logTerm)) {
      // A granted pre-vote answers in the candidate's future term so the candidate can count it.
      this.send({ type: voteRespType(m.type), to: m.from, term: m.term })
      if (m.type === 'vote') {
        this.electionElapsed = 0
        this.vote = m.from
      }
    } else {
      this.send({ type: voteRespType(m.type), to: m.from, term: this.term, reject: true })
    }
  }

  /** hup starts a (pre-)election if this node may lead. */
  hup(transfer: boolean): void {
    if (this.role === 'leader' || !this.promotable()) return
    if (this.config.preVote && !transfer) this.campaign('preElection', false)
    else this.campaign('election', transfer)
  }

  /** campaign asks every voter for a (pre-)vote; a lone voter wins at once. */
  campaign(kind: 'preElection' | 'election', transfer: boolean): void {
    let voteMsg: MessageType
    let term: number
    if (kind === 'preElection') {
      this.becomePreCandidate()
      voteMsg = 'preVote'
      term = this.term + 1
    } else {
      this.becomeCandidate()
      voteMsg = 'vote'
      term = this.term
    }
    if (this.poll(this.id, true) === 'won') {
      if (kind === 'preElection') this.campaign('election', transfer)
      else this.becomeLeaderAndBroadcast()
      return
    }
    for (const id of this.tracker.voterIds()) {
      if (id === this.id) continue
      this.send({
        type: voteMsg,
        to: id,
        term,
        index: this.log.lastIndex(),
        logTerm: this.log.lastTerm(),
        ...(transfer ? { context: TRANSFER_CONTEXT } : {}),
      })
    }
  }

  /** poll records a vote and returns the election outcome so far. */
  poll(id: NodeId, granted: boolean): 'won' | 'lost' | 'pending' {
    this.tracker.recordVote(id, granted)
    return this.tracker.tallyVotes().result
  }

  /** becomeLeaderAndBroadcast takes over and sends the term's first append to every peer. */
  becomeLeaderAndBroadcast(): void {
    this.becomeLeader()
    this.bcastAppend()
  }

  /**
   * appendEntries appends new entries on the leader. Its own copy counts toward commit only once
   * the driver has persisted it (onPersisted, from advance): counted at append, a lone voter
   * would commit, apply and answer an entry a crash can still take back, and a driver that
   * persists in the background would let two acknowledgements commit what one disk holds.
   */
  appendEntries(proposals: readonly ProposalEntry[]): void {
    const lastIndex = this.log.lastIndex()
    const entries: Entry[] = proposals.map((p, i) => ({ term: this.term, index: lastIndex + 1 + i, type: p.type, data: p.data }))
    for (const entry of entries) this.uncommittedBytes += entry.data.byteLength
    this.log.append(entries)
    if (this.confs.onAppend(entries)) this.applyConfig()
  }

  /** onPersisted counts the leader's own log as durable up to `index` (advance), and commits what that lets it. */
  onPersisted(index: number): void {
    if (this.role !== 'leader') return
    if (this.tracker.progress.get(this.id)?.maybeUpdate(index) !== true) return
    if (this.maybeCommit()) this.bcastAppend()
  }

  /** proposeEntries is the leader's admission control for new entries (local or forwarded). */
  proposeEntries(proposals: readonly ProposalEntry[]): ProposeResult {
    assert(this.role === 'leader', 'proposeEntries on a non-leader')
    if (!this.tracker.isVoter(this.id)) return { ok: false, reason: 'dropped', message: 'the leader is being removed from the group' }
    if (this.leadTransferee !== NONE) {
      return { ok: false, reason: 'dropped', message: `leadership transfer to ${this.leadTransferee} is in progress` }
    }
    const refusal = this.checkConfChangeProposal(proposals)
    if (refusal !== undefined) return { ok: false, reason: 'dropped', message: refusal }
    let bytes = 0
    for (const p of proposals) bytes += p.data.byteLength
    if (this.uncommittedBytes > 0 && this.uncommittedBytes + bytes > this.config.uncommittedBytesMax) {
      return { ok: false, reason: 'dropped', message: `uncommitted entries would exceed uncommittedBytesMax=${this.config.uncommittedBytesMax}` }
    }
    this.appendEntries(proposals)
    this.bcastAppend()
    return { ok: true, index: this.log.lastIndex(), term: this.term }
  }

  private checkConfChangeProposal(proposals: readonly ProposalEntry[]): string | undefined {
    const changes = proposals.filter((p) => p.type === 'confChange')
    if (changes.length === 0) return undefined
    if (changes.length > 1) return 'at most one confChange entry per proposal'
    const pendingIndex = this.confs.lastChangeIndex()
    if (pendingIndex > this.log.committed) return `a membership change is pending (index ${pendingIndex} is not committed)`
    // The dissertation's fix for one-server changes: a new leader first commits an entry of its own term.
    if (this.log.term(this.log.committed) !== this.term) return 'the leader has not yet committed an entry in its term'
    let change
    try {
      change = decodeConfChange(changes[0]!.data)
    } catch (error) {
      return `malformed confChange: ${(error as Error).message}`
    }
    return validateConfChange(this.confs.current(), change)
  }

  /** applyConfig switches the tracker to the configuration now in force (called whenever it may have changed). */
  applyConfig(): void {
    this.tracker.applyConfState(this.confs.current(), this.log.lastIndex() + 1)
    if (this.role !== 'leader') return
    if (this.leadTransferee !== NONE && !this.tracker.isVoter(this.leadTransferee)) this.leadTransferee = NONE
    if (this.maybeCommit()) this.bcastAppend()
  }

  /** maybeCommit advances commit to what a quorum has, if that entry is from this term (§5.4.2). */
  maybeCommit(): boolean {
    const before = this.log.committed
    if (!this.log.maybeCommit(this.tracker.committed(), this.term)) return false
    if (this.log.term(before) !== this.term) this.releasePendingReadIndexMessages()
    return true
  }

  /** maybeStepDownAfterRemoval ends the term of a leader whose removal has committed (§4.2.2). */
  maybeStepDownAfterRemoval(): void {
    if (this.role !== 'leader' || this.tracker.isVoter(this.id)) return
    if (this.log.committed < this.confs.lastChangeIndex()) return
    // Hand over to an up-to-date voter at once rather than leave the group leaderless for an
    // election timeout (the transferee campaigns past the followers' leader lease).
    const successor = this.tracker.voterIds().find((id) => this.tracker.progress.get(id)?.match === this.log.lastIndex())
    if (successor !== undefined) this.sendTimeoutNow(successor)
    this.becomeFollower(this.term, NONE)
  }

  /** bcastAppend sends every peer the entries it is missing (or an empty append carrying commit). */
  bcastAppend(): void {
    for (const id of this.tracker.progress.keys()) {
      if (id !== this.id) this.maybeSendAppend(id, true)
    }
  }

  /** bcastHeartbeat sends heartbeats carrying the latest pending ReadIndex context. */
  bcastHeartbeat(): void {
    const context = this.readOnly.lastPendingContext()
    for (const [id, pr] of this.tracker.progress) {
      if (id === this.id) continue
      this.send({ type: 'heartbeat', to: id, commit: Math.min(pr.match, this.log.committed), ...(context !== undefined ? { context } : {}) })
    }
  }

  /**
   * maybeSendAppend sends `to` the next batch of entries (bounded by entryBytesMaxPerMessage),
   * or a snapshot when they are compacted; false when flow control holds it back or, unless
   * `sendIfEmpty`, there is nothing new to send.
   */
  maybeSendAppend(to: NodeId, sendIfEmpty: boolean): boolean {
    const pr = this.tracker.progress.get(to)
    if (pr === undefined || pr.isPaused()) return false
    const prevIndex = pr.next - 1
    const prevTerm = this.log.term(prevIndex)
    const entries = prevTerm === undefined ? undefined : this.log.entriesFrom(pr.next, this.config.entryBytesMaxPerMessage)
    if (prevTerm === undefined || entries === undefined) return this.maybeSendSnapshot(to)
    if (entries.length === 0 && !sendIfEmpty) return false
    this.send({ type: 'app', to, index: prevIndex, logTerm: prevTerm, entries, commit: this.log.committed })
    pr.sentEntries(entries.length, prevIndex + entries.length)
    return true
  }

  private maybeSendSnapshot(to: NodeId): boolean {
    const pr = this.tracker.progress.get(to)!
    // An unresponsive peer would only waste the transfer; wait until it is heard from.
    if (!pr.recentActive) return false
    let snapshot: Snapshot
    try {
      snapshot = this.log.snapshot()
    } catch (error) {
      // Being generated: nothing is sent and the peer is not paused, so its next heartbeat response retries.
      if (error instanceof SnapshotTemporarilyUnavailable) return false
      throw error
    }
    assert(snapshot.meta.index > 0, `peer ${to} needs compacted entries but storage has no snapshot`)
    this.send({ type: 'snap', to, snapshot })
    pr.becomeSnapshot(snapshot.meta.index)
    return true
  }

  /** sendTimeoutNow tells the transferee to start an election at once (§3.10). */
  sendTimeoutNow(to: NodeId): void {
    this.send({ type: 'timeoutNow', to })
  }

  /** committedEntryInCurrentTerm: until true, this leader's commit index may lag the true one (§6.4). */
  committedEntryInCurrentTerm(): boolean {
    return this.log.term(this.log.committed) === this.term
  }

  private releasePendingReadIndexMessages(): void {
    if (!this.committedEntryInCurrentTerm()) return
    const pending = this.pendingReadIndexMessages
    this.pendingReadIndexMessages = []
    for (const m of pending) this.sendReadIndexResponse(m)
  }

  /** handleReadIndex serves a ReadIndex request on the leader (§6.4). */
  handleReadIndex(m: Message): void {
    if (this.tracker.isSingleton() && this.tracker.isVoter(this.id)) {
      this.respondToReadIndex(m, this.log.committed)
      return
    }
    if (!this.committedEntryInCurrentTerm()) {
      if (this.pendingReadIndexMessages.length < READ_INDEX_PENDING_MAX) this.pendingReadIndexMessages.push(m)
      return
    }
    this.sendReadIndexResponse(m)
  }

  private sendReadIndexResponse(m: Message): void {
    if (this.tracker.isSingleton() && this.tracker.isVoter(this.id)) {
      this.respondToReadIndex(m, this.log.committed)
      return
    }
    if (!this.readOnly.addRequest(this.log.committed, m)) return // READ_INDEX_PENDING_MAX reached: the caller times out
    this.readOnly.recvAck(this.id, m.context)
    this.bcastHeartbeat()
  }

  /** respondToReadIndex answers a confirmed read locally or to the follower that forwarded it. */
  respondToReadIndex(m: Message, index: number): void {
    const context = m.context ?? new Uint8Array(0)
    if (m.from === NONE || m.from === this.id) this.readStates.push({ index, context })
    else this.send({ type: 'readIndexResp', to: m.from, index, context })
  }

  /** readQuorumReached tells whether the acks for a heartbeat round form a quorum. */
  readQuorumReached(acks: ReadonlySet<NodeId>): boolean {
    const votes = new Map<NodeId, boolean>()
    for (const id of acks) votes.set(id, true)
    return jointVote(this.tracker.voters, this.tracker.votersOutgoing, votes) === 'won'
  }

  /** handleAppendEntries is the follower side of AppendEntries (§5.3), answering with a conflict hint on mismatch. */
  handleAppendEntries(m: Message): void {
    if (m.index < this.log.committed) {
      this.send({ type: 'appResp', to: m.from, index: this.log.committed })
      return
    }
    const result = this.log.maybeAppend(m.index, m.logTerm, m.commit, m.entries)
    if (result !== undefined) {
      if (this.confs.onAppend(result.appended)) this.applyConfig()
      this.send({ type: 'appResp', to: m.from, index: result.lastNewIndex })
      return
    }
    const hint = this.log.findConflictByTerm(Math.min(m.index, this.log.lastIndex()), m.logTerm)
    this.send({ type: 'appResp', to: m.from, index: m.index, reject: true, rejectHint: hint.index, logTerm: hint.term })
  }

  /** handleHeartbeat learns the commit index and echoes the ReadIndex context. */
  handleHeartbeat(m: Message): void {
    this.log.commitTo(Math.min(m.commit, this.log.lastIndex()))
    this.send({ type: 'heartbeatResp', to: m.from, ...(m.context !== undefined ? { context: m.context } : {}) })
  }

  /** handleSnapshot installs a leader's snapshot (§7) unless the log already covers it. */
  handleSnapshot(m: Message): void {
    assert(m.snapshot !== undefined, 'snap message without a snapshot')
    if (this.restore(m.snapshot)) this.send({ type: 'appResp', to: m.from, index: this.log.lastIndex() })
    else this.send({ type: 'appResp', to: m.from, index: this.log.committed })
  }

  private restore(snapshot: NonNullable<Message['snapshot']>): boolean {
    const meta = snapshot.meta
    if (meta.index <= this.log.committed) return false
    // NB: unlike etcd, a snapshot whose configuration does not include this node is accepted: a
    // node being added is caught up from a snapshot taken before its addition, and learns of its
    // membership from the entries that follow (configurations take effect when appended).
    const cs = meta.confState
    if (this.log.matchTerm(meta.index, meta.term)) {
      // The log already has the snapshot's last entry: just fast-forward commit.
      this.log.commitTo(meta.index)
      return false
    }
    this.log.restore(snapshot)
    this.confs.restore(meta.index, cs)
    this.applyConfig()
    return true
  }
}

/** stepFollower handles messages while following: it resets the election timer on any sign of a leader. */
function stepFollower(r: Raft, m: Message): void {
  switch (m.type) {
    case 'prop':
      if (r.lead !== NONE && r.config.proposalForwarding) r.send({ ...m, to: r.lead, term: 0 })
      return
    case 'app':
      r.electionElapsed = 0
      r.lead = m.from
      r.handleAppendEntries(m)
      return
    case 'heartbeat':
      r.electionElapsed = 0
      r.lead = m.from
      r.handleHeartbeat(m)
      return
    case 'snap':
      r.electionElapsed = 0
      r.lead = m.from
      r.handleSnapshot(m)
      return
    case 'transferLeader':
      if (r.lead !== NONE) r.send({ type: 'transferLeader', to: r.lead, from: m.from, term: r.term })
      return
    case 'timeoutNow':
      r.hup(true)
      return
    case 'readIndex':
      if (r.lead !== NONE) r.send({ type: 'readIndex', to: r.lead, ...(m.context !== undefined ? { context: m.context } : {}) })
      return
    case 'readIndexResp':
      r.readStates.push({ index: m.index, context: m.context ?? new Uint8Array(0) })
      return
    default:
      return
  }
}

/** stepCandidate handles messages while campaigning (pre-candidates and candidates). */
function stepCandidate(r: Raft, m: Message): void {
  const myVoteResp: MessageType = r.role === 'preCandidate' ? 'preVoteResp' : 'voteResp'
  switch (m.type) {
    case 'app':
      r.becomeFollower(m.term, m.from) // a leader of our term exists
      r.handleAppendEntries(m)
      return
    case 'heartbeat':
      r.becomeFollower(m.term, m.from)
      r.handleHeartbeat(m)
      return
    case 'snap':
      r.becomeFollower(m.term, m.from)
      r.handleSnapshot(m)
      return
    case myVoteResp: {
      const result = r.poll(m.from, !m.reject)
      if (result === 'won') {
        if (r.role === 'preCandidate') r.campaign('election', false)
        else r.becomeLeaderAndBroadcast()
      } else if (result === 'lost') {
        r.becomeFollower(r.term, NONE)
      }
      return
    }
    default:
      return
  }
}

/** stepLeader handles messages while leading. */
function stepLeader(r: Raft, m: Message): void {
  switch (m.type) {
    case 'beat':
      r.bcastHeartbeat()
      return
    case 'checkQuorum':
      stepCheckQuorum(r)
      return
    case 'prop':
      r.proposeEntries(m.entries)
      return
    case 'readIndex':
      r.handleReadIndex(m)
      return
    default:
      break
  }
  const pr = r.tracker.progress.get(m.from)
  if (pr === undefined) return
  switch (m.type) {
    case 'appResp':
      stepAppendResponse(r, m)
      break
    case 'heartbeatResp':
      stepHeartbeatResponse(r, m)
      break
    case 'snapStatus':
      if (pr.state !== 'snapshot') return
      if (m.reject) pr.pendingSnapshot = 0
      pr.becomeProbe()
      // Wait for the next heartbeat response before probing again: the snapshot may still be applying.
      pr.probeSent = true
      return
    case 'unreachable':
      if (pr.state === 'replicate') pr.becomeProbe()
      return
    case 'transferLeader':
      stepTransferLeader(r, m.from)
      return
    default:
      return
  }
  r.maybeStepDownAfterRemoval()
}

function stepCheckQuorum(r: Raft): void {
  // §6.2 / §9.6: a leader that cannot reach a quorum within an election timeout steps down.
  if (!r.tracker.quorumActive(r.id)) r.becomeFollower(r.term, NONE)
  for (const [id, pr] of r.tracker.progress) {
    if (id !== r.id) pr.recentActive = false
  }
}

function stepAppendResponse(r: Raft, m: Message): void {
  const pr = r.tracker.progress.get(m.from)!
  pr.recentActive = true
  if (m.reject) {
    // Skip a whole divergent term per round trip using the follower's (index, term) hint.
    const nextProbe = m.logTerm > 0 ? r.log.findConflictByTerm(m.rejectHint, m.logTerm).index : m.rejectHint
    if (pr.maybeDecrTo(m.index, nextProbe)) {
      if (pr.state === 'replicate') pr.becomeProbe()
      r.maybeSendAppend(m.from, true)
    }
    return
  }
  const wasPaused = pr.isPaused()
  if (!pr.maybeUpdate(m.index)) return
  if (pr.state === 'probe') pr.becomeReplicate()
  else if (pr.state === 'snapshot' && pr.match + 1 >= r.log.firstIndex()) {
    pr.becomeProbe()
    pr.becomeReplicate()
  } else if (pr.state === 'replicate') pr.inflights.freeLE(m.index)
  if (r.maybeCommit()) r.bcastAppend()
  else if (wasPaused) r.maybeSendAppend(m.from, true)
  // Pipelining: keep the window full, bounded by inflightMessagesMax.
  while (r.maybeSendAppend(m.from, false)) {
    /* each send fills one inflight slot */
  }
  if (m.from === r.leadTransferee && pr.match === r.log.lastIndex()) r.sendTimeoutNow(m.from)
}

function stepHeartbeatResponse(r: Raft, m: Message): void {
  const pr = r.tracker.progress.get(m.from)!
  pr.recentActive = true
  pr.probeSent = false
  // Appends in the window may have been lost: free one slot so the next append (or its rejection) gets through.
  if (pr.state === 'replicate' && pr.inflights.full()) pr.inflights.freeFirstOne()
  if (pr.match < r.log.lastIndex()) r.maybeSendAppend(m.from, true)
  if (m.context === undefined || r.readOnly.size() === 0) return
  const acks = r.readOnly.recvAck(m.from, m.context)
  if (acks === undefined || !r.readQuorumReached(acks)) return
  for (const status of r.readOnly.advance(m.context)) r.respondToReadIndex(status.request, status.index)
}

function stepTransferLeader(r: Raft, transferee: NodeId): void {
  const pr = r.tracker.progress.get(transferee)
  if (pr === undefined || pr.isLearner || transferee === r.id) return
  if (r.leadTransferee === transferee) return
  r.leadTransferee = transferee
  // The transfer must finish within an election timeout or it is abandoned (tickHeartbeat).
  r.electionElapsed = 0
  if (pr.match === r.log.lastIndex()) r.sendTimeoutNow(transferee)
  else r.maybeSendAppend(transferee, true)
}
