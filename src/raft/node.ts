/**
 * RaftNode: the public RaftCore. It validates what comes in (config once, messages from the
 * network, proposals) and turns the protocol state into Ready batches, remembering what was
 * handed out so that `advance` can mark it persisted and applied.
 *
 * Persisted-before-send: every message in a Ready may depend on that Ready's entries and hard
 * state; the driver persists them first. No message is meant to be sent early. Readies may be
 * persisted in the background, several outstanding at once (see ready()).
 */
import { ErrorCode, KvError, assert } from '../errors.js'
import type {
  ConfChange,
  ConfState,
  Entry,
  HardState,
  Message,
  MessageType,
  NodeId,
  ProposeResult,
  RaftConfig,
  RaftCore,
  Ready,
  SoftState,
  Status,
} from './types.js'
import { NONE } from './types.js'
import { resolveRaftConfig } from './config.js'
import { Raft, newMessage, type ProposalEntry } from './raft.js'
import { encodeConfChange } from './confchange.js'
import { hardStateEqual } from './util.js'

/** APPLY_BYTES_MAX_PER_READY bounds the committed entry bytes handed to the driver in one Ready. */
export const APPLY_BYTES_MAX_PER_READY = 64 * 1024 * 1024

/** READ_CONTEXT_BYTES_MAX bounds a ReadIndex request context (it travels in every heartbeat). */
export const READ_CONTEXT_BYTES_MAX = 1024

const NETWORK_TYPES: ReadonlySet<MessageType> = new Set<MessageType>([
  'prop', 'app', 'appResp', 'vote', 'voteResp', 'preVote', 'preVoteResp', 'snap', 'heartbeat', 'heartbeatResp',
  'transferLeader', 'timeoutNow', 'readIndex', 'readIndexResp',
])

const TERM_REQUIRED_TYPES: ReadonlySet<MessageType> = new Set<MessageType>(['app', 'heartbeat', 'snap', 'vote', 'preVote', 'timeoutNow'])

function protocolError(message: string, details?: Record<string, unknown>): KvError {
  return new KvError(ErrorCode.PROTOCOL, `raft message: ${message}`, details)
}

function isIndex(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0
}

/** RaftNode is one replica of one Raft group: pure, synchronous, driven by tick/step and drained by ready/advance. */
export class RaftNode implements RaftCore {
  private readonly raft: Raft
  private prevSoftState: SoftState
  private prevHardState: HardState
  /** outstanding: the Readies handed out and not yet advanced, oldest first (see ready()). */
  private readonly outstanding: Ready[] = []

  /** constructor validates `config` (KV_ERR_INVALID naming the field) and restores state from its storage. */
  constructor(config: RaftConfig) {
    this.raft = new Raft(resolveRaftConfig(config))
    this.prevSoftState = this.softState()
    this.prevHardState = this.hardState()
  }

  /** tick advances logical time by one tick. */
  tick(): void {
    this.raft.tick()
  }

  /** step feeds a message from a peer; malformed or local-only messages are a KV_ERR_PROTOCOL error. */
  step(message: Message): void {
    this.validateMessage(message)
    this.raft.step(message)
  }

  /** propose appends a normal entry on the leader (see ProposeResult for refusals and forwarding). */
  propose(data: Uint8Array): ProposeResult {
    if (!(data instanceof Uint8Array)) throw new KvError(ErrorCode.INVALID, 'propose: data must be a Uint8Array')
    return this.proposeEntries([{ type: 'normal', data }])
  }

  /**
   * proposeBatch appends several normal entries as one proposal (consecutive indexes ending at
   * the result's `index`), so a burst of proposals costs one append message per follower
   * instead of one each; refused or forwarded as a whole.
   */
  proposeBatch(datas: readonly Uint8Array[]): ProposeResult {
    if (!Array.isArray(datas) || datas.length === 0) throw new KvError(ErrorCode.INVALID, 'proposeBatch: datas must be a non-empty array')
    const entries: ProposalEntry[] = []
    for (const data of datas) {
      if (!(data instanceof Uint8Array)) throw new KvError(ErrorCode.INVALID, 'proposeBatch: every data must be a Uint8Array')
      entries.push({ type: 'normal', data })
    }
    return this.proposeEntries(entries)
  }

  /** proposeConfChange proposes a one-server membership change (docs/raft.md, "Membership changes"). */
  proposeConfChange(change: ConfChange): ProposeResult {
    if (change === null || typeof change !== 'object') throw new KvError(ErrorCode.INVALID, 'proposeConfChange: change must be an object')
    if (!Number.isSafeInteger(change.nodeId) || change.nodeId <= 0) {
      throw new KvError(ErrorCode.INVALID, `proposeConfChange: nodeId must be a positive integer, got ${String(change.nodeId)}`)
    }
    if (change.type !== 'addVoter' && change.type !== 'addLearner' && change.type !== 'removeNode') {
      throw new KvError(ErrorCode.INVALID, `proposeConfChange: type must be addVoter, addLearner or removeNode, got ${String(change.type)}`)
    }
    return this.proposeEntries([{ type: 'confChange', data: encodeConfChange(change) }])
  }

  private proposeEntries(entries: ProposalEntry[]): ProposeResult {
    const r = this.raft
    if (r.role === 'leader') return r.proposeEntries(entries)
    if (r.lead === NONE || !r.config.proposalForwarding) return { ok: false, reason: 'notLeader', leader: r.lead }
    const forwarded: Entry[] = entries.map((e) => ({ term: 0, index: 0, type: e.type, data: e.data }))
    r.step(newMessage({ type: 'prop', from: r.id, entries: forwarded }))
    return { ok: true, index: 0, term: 0, forwardedTo: r.lead }
  }

  /** applyConfChange is called for each applied confChange entry, in order; it returns the configuration as of that entry. */
  applyConfChange(change: ConfChange): ConfState {
    return this.raft.confs.nextApplied(change)
  }

  /** readIndex requests a linearizable read point, answered by a ReadState carrying `context`. */
  readIndex(context: Uint8Array): void {
    if (!(context instanceof Uint8Array) || context.byteLength === 0 || context.byteLength > READ_CONTEXT_BYTES_MAX) {
      throw new KvError(ErrorCode.INVALID, `readIndex: context must be a non-empty Uint8Array of at most READ_CONTEXT_BYTES_MAX=${READ_CONTEXT_BYTES_MAX} bytes`)
    }
    this.raft.step(newMessage({ type: 'readIndex', from: this.raft.id, context }))
  }

  /** transferLeadership hands leadership to `to` (forwarded to the leader when called on a follower). */
  transferLeadership(to: NodeId): void {
    if (!Number.isSafeInteger(to) || to <= 0) throw new KvError(ErrorCode.INVALID, `transferLeadership: node id must be a positive integer, got ${String(to)}`)
    this.raft.step(newMessage({ type: 'transferLeader', from: to }))
  }

  /** campaign starts a (pre-)election now, as if the election timeout had elapsed. */
  campaign(): void {
    this.raft.step(newMessage({ type: 'hup', from: this.raft.id }))
  }

  /** reportUnreachable tells a leader the transport failed to reach `peer`, so it stops pipelining to it. */
  reportUnreachable(peer: NodeId): void {
    this.raft.step(newMessage({ type: 'unreachable', from: peer }))
  }

  /** reportSnapshot tells a leader how sending a snapshot to `peer` ended. */
  reportSnapshot(peer: NodeId, ok: boolean): void {
    this.raft.step(newMessage({ type: 'snapStatus', from: peer, reject: !ok }))
  }

  /** hasReady tells whether ready() would return any work. */
  hasReady(): boolean {
    const r = this.raft
    if (!softStateEqual(this.softState(), this.prevSoftState)) return true
    if (!hardStateEqual(this.hardState(), this.prevHardState)) return true
    if (r.log.unstable.pendingSnapshot() !== undefined || r.log.unstableEntries().length > 0) return true
    return r.msgs.length > 0 || r.readStates.length > 0 || r.log.hasNextCommittedEntries()
  }

  /**
   * ready returns the next batch of work. A driver that persists in the background may ask for
   * the next Ready before advancing the last, if the outstanding ones carry no snapshot: each
   * hands out only what the earlier ones did not, and advance() takes them in order. The
   * persisted-before-send rule holds per Ready. A leader's own entries count toward commit only
   * once advance() reports them persisted (Raft.onPersisted), so acknowledgements stepped while
   * its write is in flight cannot commit on fewer durable copies than a quorum.
   */
  ready(): Ready {
    assert(this.outstanding.every((rd) => rd.snapshot === undefined), 'RaftNode.ready: an outstanding Ready carries a snapshot; advance it first')
    const r = this.raft
    const softState = this.softState()
    const hardState = this.hardState()
    const snapshot = r.log.unstable.pendingSnapshot()
    const entries = [...r.log.unstableEntries()]
    const rd: Ready = {
      readStates: r.readStates,
      entries,
      committedEntries: r.log.nextCommittedEntries(APPLY_BYTES_MAX_PER_READY),
      messages: r.msgs,
      mustSync: entries.length > 0 || snapshot !== undefined || hardState.term !== this.prevHardState.term || hardState.vote !== this.prevHardState.vote,
    }
    if (!softStateEqual(softState, this.prevSoftState)) rd.softState = softState
    if (!hardStateEqual(hardState, this.prevHardState)) rd.hardState = hardState
    if (snapshot !== undefined) rd.snapshot = snapshot
    // What this Ready hands out is not handed out again by the next one, advanced or not.
    this.prevSoftState = softState
    this.prevHardState = hardState
    r.log.unstable.acceptInProgress()
    const lastCommitted = rd.committedEntries.at(-1)
    if (lastCommitted !== undefined) r.log.applying = lastCommitted.index
    r.msgs = []
    r.readStates = []
    this.outstanding.push(rd)
    return rd
  }

  /** advance acknowledges that `ready` was persisted, sent and applied. */
  advance(ready: Ready): void {
    assert(ready === this.outstanding[0], 'RaftNode.advance: not the oldest Ready returned by ready() and not yet advanced')
    this.outstanding.shift()
    const log = this.raft.log
    if (ready.snapshot !== undefined) log.stableSnapTo(ready.snapshot.meta.index)
    // Mark persisted the longest prefix of the handed-out entries still in the log: a suffix may
    // have been overwritten by a step() between ready() and advance() and must be persisted anew.
    for (let k = ready.entries.length - 1; k >= 0; k--) {
      const entry = ready.entries[k]!
      if (log.unstable.maybeTerm(entry.index) !== entry.term) continue
      log.stableTo(entry.index, entry.term)
      this.raft.onPersisted(entry.index)
      break
    }
    const lastApplied = ready.committedEntries.at(-1)
    if (lastApplied !== undefined) {
      log.appliedTo(lastApplied.index)
      this.reduceUncommittedBytes(ready.committedEntries)
    }
    this.raft.confs.compactTo(log.applied)
  }

  private reduceUncommittedBytes(entries: readonly Entry[]): void {
    if (this.raft.role !== 'leader') return
    let bytes = 0
    for (const entry of entries) bytes += entry.data.byteLength
    this.raft.uncommittedBytes = Math.max(0, this.raft.uncommittedBytes - bytes)
  }

  /** status reports the node's state for inspection, metrics and tests. */
  status(): Status {
    const r = this.raft
    const status: Status = {
      id: r.id,
      role: r.role,
      term: r.term,
      vote: r.vote,
      leader: r.lead,
      commit: r.log.committed,
      applied: r.log.applied,
      lastIndex: r.log.lastIndex(),
      confState: r.confState(),
      leadTransferee: r.leadTransferee,
    }
    if (r.role === 'leader') {
      status.progress = {}
      for (const [id, pr] of r.tracker.progress) status.progress[id] = { match: pr.match, next: pr.next, state: pr.state }
    }
    return status
  }

  private softState(): SoftState {
    return { leader: this.raft.lead, role: this.raft.role }
  }

  private hardState(): HardState {
    return { term: this.raft.term, vote: this.raft.vote, commit: this.raft.log.committed }
  }

  /** validateMessage refuses malformed or local-only messages from the network before they touch state. */
  private validateMessage(m: Message): void {
    if (m === null || typeof m !== 'object' || !NETWORK_TYPES.has(m.type)) throw protocolError(`type ${String(m?.type)} may not arrive from the network`)
    if (!isIndex(m.from) || m.from === NONE) throw protocolError(`from must be a positive node id, got ${String(m.from)}`)
    if (m.to !== this.raft.id) throw protocolError(`addressed to ${String(m.to)}, delivered to ${this.raft.id}`)
    for (const field of ['term', 'logTerm', 'index', 'commit', 'rejectHint'] as const) {
      if (!isIndex(m[field])) throw protocolError(`${field} must be a non-negative safe integer, got ${String(m[field])}`, { type: m.type })
    }
    if (m.from === this.raft.id) throw protocolError(`node ${m.from} sent a message to itself`)
    // A leader's or candidate's request always carries its term; at term 0 it would pass as a local message.
    if (m.term === 0 && TERM_REQUIRED_TYPES.has(m.type)) throw protocolError(`${m.type} must carry a term`)
    if (!Array.isArray(m.entries)) throw protocolError('entries must be an array', { type: m.type })
    if (m.type === 'snap' && (m.snapshot === undefined || !isIndex(m.snapshot.meta?.index))) throw protocolError('snap without a valid snapshot')
    for (let i = 0; i < m.entries.length; i++) {
      const e = m.entries[i]!
      if (e === null || typeof e !== 'object' || !(e.data instanceof Uint8Array) || (e.type !== 'normal' && e.type !== 'confChange')) {
        throw protocolError(`entry ${i} is malformed`, { type: m.type })
      }
      if (m.type === 'app' && (e.index !== m.index + 1 + i || !isIndex(e.term) || e.term > m.term)) {
        throw protocolError(`app entry ${i} is not contiguous after index ${m.index} or has a term above the message's`, { type: m.type })
      }
    }
  }
}

function softStateEqual(a: SoftState, b: SoftState): boolean {
  return a.leader === b.leader && a.role === b.role
}
