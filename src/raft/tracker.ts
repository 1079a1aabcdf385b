/**
 * ProgressTracker: the current membership (voters, learners, and the outgoing voters of a joint
 * configuration) with a Progress per member, plus the votes of the current election. Quorum
 * questions (commit index, election outcome, check-quorum liveness) are answered here.
 */
import type { ConfState, NodeId } from './types.js'
import { Progress } from './progress.js'
import { jointCommitted, jointVote, type VoteResult } from './quorum.js'

/** ProgressTracker tracks membership, per-peer progress and votes. */
export class ProgressTracker {
  // Invariant: progress has exactly one entry per id in voters ∪ votersOutgoing ∪ learners;
  // learners is disjoint from voters and votersOutgoing.
  voters = new Set<NodeId>()
  votersOutgoing = new Set<NodeId>()
  learners = new Set<NodeId>()
  readonly progress = new Map<NodeId, Progress>()
  readonly votes = new Map<NodeId, boolean>()

  constructor(private readonly inflightMessagesMax: number) {}

  /** applyConfState switches to membership `cs`, keeping the progress of members that stay. */
  applyConfState(cs: ConfState, nextIndex: number): void {
    this.voters = new Set(cs.voters)
    this.votersOutgoing = new Set(cs.votersOutgoing)
    this.learners = new Set(cs.learners.filter((id) => !this.voters.has(id) && !this.votersOutgoing.has(id)))
    const members = new Set([...this.voters, ...this.votersOutgoing, ...this.learners])
    for (const id of [...this.progress.keys()]) {
      if (!members.has(id)) this.progress.delete(id)
    }
    for (const id of members) {
      const existing = this.progress.get(id)
      if (existing === undefined) {
        const pr = new Progress({ next: nextIndex, inflightMessagesMax: this.inflightMessagesMax, isLearner: this.learners.has(id) })
        // A new member counts as active so that adding it cannot make check-quorum depose the leader at once.
        pr.recentActive = true
        this.progress.set(id, pr)
      } else {
        existing.isLearner = this.learners.has(id)
      }
    }
  }

  /** resetProgress starts every peer afresh at the end of the log (a new term begins); this node matches what it has persisted. */
  resetProgress(lastIndex: number, self: NodeId, selfPersisted: number): void {
    for (const [id, old] of this.progress) {
      const pr = new Progress({ next: lastIndex + 1, inflightMessagesMax: this.inflightMessagesMax, isLearner: old.isLearner })
      if (id === self) pr.match = Math.min(lastIndex, selfPersisted)
      this.progress.set(id, pr)
    }
  }

  /** confState reports the membership in its persisted shape. */
  confState(): ConfState {
    return {
      voters: [...this.voters].sort((a, b) => a - b),
      learners: [...this.learners].sort((a, b) => a - b),
      votersOutgoing: [...this.votersOutgoing].sort((a, b) => a - b),
    }
  }

  /** isVoter tells whether `id` votes in the current (possibly joint) configuration. */
  isVoter(id: NodeId): boolean {
    return this.voters.has(id) || this.votersOutgoing.has(id)
  }

  /** voterIds lists every voter of either half. */
  voterIds(): NodeId[] {
    return [...new Set([...this.voters, ...this.votersOutgoing])]
  }

  /** isSingleton tells whether this node alone decides (one voter, not joint). */
  isSingleton(): boolean {
    return this.voters.size === 1 && this.votersOutgoing.size === 0
  }

  /** committed is the largest index replicated on a quorum of voters. */
  committed(): number {
    return jointCommitted(this.voters, this.votersOutgoing, (id) => this.progress.get(id)?.match)
  }

  /** resetVotes forgets the previous election. */
  resetVotes(): void {
    this.votes.clear()
  }

  /** recordVote notes `id`'s answer; only the first answer per election counts. */
  recordVote(id: NodeId, granted: boolean): void {
    if (!this.votes.has(id)) this.votes.set(id, granted)
  }

  /** tallyVotes reports the election outcome so far. */
  tallyVotes(): { granted: number; rejected: number; result: VoteResult } {
    let granted = 0
    let rejected = 0
    for (const id of this.voterIds()) {
      const vote = this.votes.get(id)
      if (vote === true) granted++
      else if (vote === false) rejected++
    }
    return { granted, rejected, result: jointVote(this.voters, this.votersOutgoing, this.votes) }
  }

  /** quorumActive tells whether a quorum of voters was heard from recently (check-quorum). */
  quorumActive(self: NodeId): boolean {
    const active = new Map<NodeId, boolean>()
    for (const [id, pr] of this.progress) {
      if (!pr.isLearner) active.set(id, id === self || pr.recentActive)
    }
    return jointVote(this.voters, this.votersOutgoing, active) === 'won'
  }
}
