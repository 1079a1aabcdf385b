/**
 * Balancing decisions of the meta leader, as pure functions of the placement and liveness so
 * they can be tested as tables. The reconciler asks for one action per round and carries it
 * out; nothing here has side effects.
 *
 * Priorities, first match wins:
 *   1. a replica on a node down longer than `downAfterMs`, or on a node being drained for
 *      removal, moves to a live store node that does not hold that shard yet (fewest first);
 *   2. replica counts: when the fullest live store node holds 2 or more replicas more than the
 *      emptiest (a node was added), one replica moves from the former to the latter;
 *   3. leaders: when a live node leads at least 2 shards more than another live replica of one
 *      of them (e.g. 2/2/0 leaders for 4 shards on 3 nodes), one leadership moves to the least
 *      loaded such replica. Each move lowers the sum of squared leader counts, so it settles
 *      (at 2/1/1 there); this also covers "leads more than ceil(shards / live nodes)".
 */
import type { Liveness } from './routing.js'
import type { MetaState, NodeRecord } from './state.js'

/** BalanceAction is the one change a round makes. */
export type BalanceAction =
  | { type: 'replace'; shard: number; old: number; new: number; why: 'node down' | 'replica balance' }
  | { type: 'remove'; nodeId: number }
  | { type: 'transfer'; shard: number; to: number }

/** BalanceInput is what the decision depends on. */
export interface BalanceInput {
  state: MetaState
  liveness: Liveness
  nowMs: number
  /** leaderSinceMs: when this meta leader started; a node unseen since then counts as seen then. */
  leaderSinceMs: number
  downAfterMs: number
}

function lastSeen(input: BalanceInput, node: NodeRecord): number {
  return input.liveness.lastSeenMs.get(node.id) ?? input.leaderSinceMs
}

/** planBalance picks the next balancing action, or undefined when the cluster is balanced or busy. */
export function planBalance(input: BalanceInput): BalanceAction | undefined {
  const { state } = input
  if (state.moves.length > 0 || state.replacing.length > 0 || state.shards.some((s) => !s.claimed)) return undefined
  const stores = state.nodes.filter((n) => n.roles.includes('store'))
  const draining = new Set(state.draining)
  const live = stores.filter((n) => input.nowMs - lastSeen(input, n) < input.downAfterMs && input.liveness.lastSeenMs.has(n.id) && !draining.has(n.id))
  const dead = new Set(stores.filter((n) => input.nowMs - lastSeen(input, n) >= input.downAfterMs || draining.has(n.id)).map((n) => n.raftId))
  const load = (raftId: number) => state.shards.filter((s) => s.replicas.includes(raftId)).length
  const byLoad = (a: NodeRecord, b: NodeRecord) => load(a.raftId) - load(b.raftId) || a.id - b.id
  for (const shard of state.shards) {
    const lost = shard.replicas.find((r) => dead.has(r))
    if (lost === undefined) continue
    const target = live.filter((n) => !shard.replicas.includes(n.raftId)).sort(byLoad)[0]
    if (target !== undefined) return { type: 'replace', shard: shard.id, old: lost, new: target.raftId, why: 'node down' }
  }
  for (const nodeId of state.draining) {
    const node = state.nodes.find((n) => n.id === nodeId)
    if (node !== undefined && !state.shards.some((s) => s.replicas.includes(node.raftId) || s.learners.includes(node.raftId))) return { type: 'remove', nodeId }
  }
  if (live.length >= 2) {
    const sorted = [...live].sort(byLoad)
    const emptiest = sorted[0]!
    const fullest = sorted[sorted.length - 1]!
    if (load(fullest.raftId) - load(emptiest.raftId) >= 2) {
      const shard = state.shards.find((s) => s.replicas.includes(fullest.raftId) && !s.replicas.includes(emptiest.raftId))
      if (shard !== undefined) return { type: 'replace', shard: shard.id, old: fullest.raftId, new: emptiest.raftId, why: 'replica balance' }
    }
  }
  return planLeaders(input, live)
}

function planLeaders(input: BalanceInput, live: NodeRecord[]): BalanceAction | undefined {
  const { state } = input
  if (live.length === 0) return undefined
  const leads = new Map<number, number[]>()
  for (const shard of state.shards) {
    const leader = input.liveness.leaders.get(shard.id)
    if (leader !== undefined) leads.set(leader, [...(leads.get(leader) ?? []), shard.id])
  }
  const liveIds = new Set(live.map((n) => n.raftId))
  const count = (raftId: number) => leads.get(raftId)?.length ?? 0
  for (const [leader, shards] of [...leads.entries()].sort((a, b) => b[1].length - a[1].length || a[0] - b[0])) {
    for (const shardId of shards) {
      const shard = state.shards.find((s) => s.id === shardId)!
      const to = shard.replicas.filter((r) => r !== leader && liveIds.has(r) && count(r) <= shards.length - 2).sort((a, b) => count(a) - count(b) || a - b)[0]
      if (to !== undefined) return { type: 'transfer', shard: shardId, to }
    }
  }
  return undefined
}
