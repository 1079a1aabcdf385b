/**
 * Types shared by the Raft core (src/raft), durable storage (src/raftstore) and the
 * deterministic simulator (test/sim). The core is pure and synchronous: it never does I/O,
 * reads no clock and draws no randomness of its own (see DESIGN.md, "The Raft core does no I/O").
 *
 * Indexes and terms are JavaScript numbers (safe up to 2^53). Node id 0 means "none".
 */

/** NodeId identifies a replica within one Raft group; 0 (`NONE`) means no node. */
export type NodeId = number
export const NONE: NodeId = 0

/** EntryType: normal entries carry application commands; confChange entries carry a ConfChange. */
export type EntryType = 'normal' | 'confChange'

/** Entry is one log entry. An empty normal entry is the leader's no-op at the start of its term. */
export interface Entry {
  term: number
  index: number
  type: EntryType
  data: Uint8Array
}

/** HardState is what must be on stable storage before any message that depends on it is sent. */
export interface HardState {
  term: number
  vote: NodeId
  commit: number
}

/** ConfState is a group's membership. `votersOutgoing` is non-empty only inside a joint configuration. */
export interface ConfState {
  voters: NodeId[]
  learners: NodeId[]
  votersOutgoing: NodeId[]
}

/** ConfChangeType names the single-node membership changes the core accepts. */
export type ConfChangeType = 'addVoter' | 'addLearner' | 'removeNode'

/** ConfChange is the payload of a confChange entry. */
export interface ConfChange {
  type: ConfChangeType
  nodeId: NodeId
  /** context is opaque to the core (for example the new node's address). */
  context?: Uint8Array
}

/** SnapshotMeta says which log prefix a snapshot replaces and the membership at that point. */
export interface SnapshotMeta {
  index: number
  term: number
  confState: ConfState
}

/** Snapshot is the application state at `meta.index`, opaque to the core. */
export interface Snapshot {
  meta: SnapshotMeta
  data: Uint8Array
}

/** MessageType lists the messages of the protocol (local ones never leave the node). */
export type MessageType =
  | 'hup' // local: start an election (or pre-election)
  | 'beat' // local: leader sends heartbeats
  | 'prop' // local or forwarded: propose entries
  | 'app' // append entries
  | 'appResp'
  | 'vote'
  | 'voteResp'
  | 'preVote'
  | 'preVoteResp'
  | 'snap' // install snapshot
  | 'heartbeat'
  | 'heartbeatResp'
  | 'unreachable' // local: transport could not reach `from`
  | 'snapStatus' // local: transport finished (or failed) sending a snapshot to `from`
  | 'checkQuorum' // local
  | 'transferLeader'
  | 'timeoutNow'
  | 'readIndex'
  | 'readIndexResp'

/** Message is what Raft nodes exchange. Unused fields are left at their zero values. */
export interface Message {
  type: MessageType
  from: NodeId
  to: NodeId
  term: number
  /** logTerm: term of the entry at `index` (app), or of the candidate's last entry (vote). */
  logTerm: number
  index: number
  entries: Entry[]
  commit: number
  reject: boolean
  /** rejectHint: on a rejected append, the follower's guess of where the logs agree. */
  rejectHint: number
  snapshot?: Snapshot
  /** context: the ReadIndex request context, or the campaign type for a forced election. */
  context?: Uint8Array
}

/** ReadState answers a readIndex(context): a read may be served once applied >= index. */
export interface ReadState {
  index: number
  context: Uint8Array
}

/** Role of a node in its current term. */
export type Role = 'follower' | 'preCandidate' | 'candidate' | 'leader'

/** SoftState is volatile state worth reporting (leader changes); it is never persisted. */
export interface SoftState {
  leader: NodeId
  role: Role
}

/**
 * Ready is one batch of work for the driver. The driver must, in this order:
 * 1. persist `snapshot` (if any), `entries` and `hardState` (if any), fsyncing when `mustSync`;
 * 2. only then send `messages`;
 * 3. apply `committedEntries` (and `snapshot`) to the state machine;
 * 4. call `advance(ready)`.
 * NB: messages from a leader that do not depend on unpersisted state may be sent earlier,
 * but the simple order above is always correct.
 */
export interface Ready {
  softState?: SoftState
  hardState?: HardState
  readStates: ReadState[]
  entries: Entry[]
  snapshot?: Snapshot
  committedEntries: Entry[]
  messages: Message[]
  mustSync: boolean
}

/** RaftStorage is the core's read-only view of stable storage; the driver does every write. */
export interface RaftStorage {
  initialState(): { hardState: HardState; confState: ConfState }
  /** entries returns entries [lo, hi), stopping early once `maxBytes` is exceeded (at least one is returned). */
  entries(lo: number, hi: number, maxBytes: number): Entry[]
  /** term of the entry at `index`; valid for firstIndex()-1 <= index <= lastIndex(). */
  term(index: number): number
  firstIndex(): number
  lastIndex(): number
  /** snapshot is the latest snapshot; it may throw SnapshotTemporarilyUnavailable (util.ts) while one is generated. */
  snapshot(): Snapshot
}

/** RandomSource is the injected randomness: a float in [0, 1). Seeded in the simulator. */
export type RandomSource = () => number

/** RaftConfig configures one node of one group; validated once at construction. */
export interface RaftConfig {
  id: NodeId
  storage: RaftStorage
  random: RandomSource
  /** electionTimeoutTicks: base election timeout; the actual one is random in [base, 2*base). */
  electionTimeoutTicks: number
  heartbeatIntervalTicks: number
  /** applied: last index already applied by the application (on restart). */
  applied?: number
  /** entryBytesMaxPerMessage: bound on the entries bytes in one append message. */
  entryBytesMaxPerMessage?: number
  /** inflightMessagesMax: bound on unacknowledged append messages per follower. */
  inflightMessagesMax?: number
  /** uncommittedBytesMax: bound on proposed-but-uncommitted entry bytes on a leader. */
  uncommittedBytesMax?: number
  preVote?: boolean
  checkQuorum?: boolean
  /** proposalForwarding: a follower forwards proposals to the leader instead of refusing them. */
  proposalForwarding?: boolean
}

/**
 * ProposeResult: a proposal is either accepted (appended at `index` on the leader) or refused.
 * With `proposalForwarding` a follower's proposal is sent on to the leader: it is reported as
 * `ok` with `forwardedTo` set and index/term 0, since only the leader learns where it lands.
 */
export type ProposeResult =
  | { ok: true; index: number; term: number; forwardedTo?: NodeId }
  | { ok: false; reason: 'notLeader'; leader: NodeId }
  | { ok: false; reason: 'dropped'; message: string }

/** Status is a snapshot of a node's state for inspection, metrics and tests. */
export interface Status {
  id: NodeId
  role: Role
  term: number
  vote: NodeId
  leader: NodeId
  commit: number
  applied: number
  lastIndex: number
  confState: ConfState
  /** progress: per-peer match/next, only on a leader. */
  progress?: Record<number, { match: number; next: number; state: 'probe' | 'replicate' | 'snapshot' }>
  leadTransferee: NodeId
}

/**
 * RaftCore is the public surface of the consensus core (implemented by `RaftNode` in
 * src/raft/node.ts). Inputs mutate state; all outputs come out through `ready()`.
 */
export interface RaftCore {
  /** tick advances logical time by one tick (election and heartbeat timeouts are in ticks). */
  tick(): void
  /** step feeds one message received from a peer (or a local message type). */
  step(message: Message): void
  propose(data: Uint8Array): ProposeResult
  /** proposeBatch (optional) proposes several normal entries at once, ending at the result's index; RaftNode implements it. */
  proposeBatch?(datas: readonly Uint8Array[]): ProposeResult
  proposeConfChange(change: ConfChange): ProposeResult
  /** applyConfChange is called by the driver when it applies a confChange entry. */
  applyConfChange(change: ConfChange): ConfState
  /** readIndex asks for a linearizable read point; the answer comes as a ReadState with `context`. */
  readIndex(context: Uint8Array): void
  transferLeadership(to: NodeId): void
  campaign(): void
  reportUnreachable(peer: NodeId): void
  reportSnapshot(peer: NodeId, ok: boolean): void
  hasReady(): boolean
  ready(): Ready
  advance(ready: Ready): void
  status(): Status
}
