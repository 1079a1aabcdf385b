/**
 * Quorum arithmetic, kept pure: the commit index a set of voters guarantees and the outcome of
 * an election tally, for a simple majority and for a joint configuration (both majorities).
 * An empty voter set imposes no constraint (commit index "infinity", vote "won"), so a joint
 * configuration with an empty outgoing half behaves exactly like its incoming half.
 */

/** VoteResult is the outcome of a tally so far. */
export type VoteResult = 'won' | 'lost' | 'pending'

/** majorityCommitted is the largest index acknowledged by a majority of `voters`. */
export function majorityCommitted(voters: ReadonlySet<number>, matchOf: (id: number) => number | undefined): number {
  if (voters.size === 0) return Number.MAX_SAFE_INTEGER
  const matches: number[] = []
  for (const id of voters) matches.push(matchOf(id) ?? 0)
  matches.sort((a, b) => b - a)
  return matches[Math.floor(voters.size / 2)]!
}

/** jointCommitted is the index committed under both halves of a joint configuration. */
export function jointCommitted(incoming: ReadonlySet<number>, outgoing: ReadonlySet<number>, matchOf: (id: number) => number | undefined): number {
  return Math.min(majorityCommitted(incoming, matchOf), majorityCommitted(outgoing, matchOf))
}

/** majorityVote tallies `votes` (true = granted) among `voters`; missing votes are pending. */
export function majorityVote(voters: ReadonlySet<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  if (voters.size === 0) return 'won'
  let granted = 0
  let missing = 0
  for (const id of voters) {
    const vote = votes.get(id)
    if (vote === undefined) missing++
    else if (vote) granted++
  }
  const quorum = Math.floor(voters.size / 2) + 1
  if (granted >= quorum) return 'won'
  if (granted + missing >= quorum) return 'pending'
  return 'lost'
}

/** jointVote is won only if both halves are won, lost if either half is lost. */
export function jointVote(incoming: ReadonlySet<number>, outgoing: ReadonlySet<number>, votes: ReadonlyMap<number, boolean>): VoteResult {
  const a = majorityVote(incoming, votes)
  const b = majorityVote(outgoing, votes)
  if (a === b) return a
  if (a === 'lost' || b === 'lost') return 'lost'
  return 'pending'
}
