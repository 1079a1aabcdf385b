/**
 * The routing table meta hands to proxies and stores (placement plus the leader hints meta
 * gathered from heartbeats), and the `/v1/cluster` view built from it for administrators.
 */
import { ErrorCode, KvError } from '../errors.js'
import { SLOT_COUNT, slotRanges, type SlotRange } from './slots.js'
import type { MetaState, MoveRecord, NodeRecord, ReplaceRecord, ShardRecord } from './state.js'

/** Routing is what a proxy needs to send a key's request to its shard's leader. */
export interface Routing {
  clusterId: string
  version: number
  nodes: NodeRecord[]
  shards: Array<ShardRecord & { leader: number }>
  slots: number[]
  metaVoters: number[]
  moves: MoveRecord[]
  replacing: ReplaceRecord[]
}

/** Liveness is the soft state the meta leader keeps from heartbeats (never logged). */
export interface Liveness {
  lastSeenMs: Map<number, number>
  /** leaders: shard id -> raft id of the replica that last reported leading it. */
  leaders: Map<number, number>
}

/** buildRouting combines the replicated state with the leader's soft state. */
export function buildRouting(state: MetaState, liveness: Liveness): Routing {
  return {
    clusterId: state.clusterId,
    version: state.version,
    nodes: state.nodes,
    shards: state.shards.map((shard) => ({ ...shard, leader: liveness.leaders.get(shard.id) ?? 0 })),
    slots: state.slots,
    metaVoters: state.metaVoters,
    moves: state.moves,
    replacing: state.replacing,
  }
}

/** checkRouting validates a routing table received from a peer. */
export function checkRouting(value: unknown): Routing {
  const r = value as Routing
  if (r === null || typeof r !== 'object' || typeof r.version !== 'number' || !Array.isArray(r.nodes) || !Array.isArray(r.shards) || !Array.isArray(r.slots)) {
    throw new KvError(ErrorCode.PROTOCOL, 'malformed routing table from meta')
  }
  if (r.slots.length !== 0 && r.slots.length !== SLOT_COUNT) throw new KvError(ErrorCode.PROTOCOL, `routing table has ${r.slots.length} slots, expected ${SLOT_COUNT}`)
  return r
}

/** ClusterView is the `/v1/cluster` JSON shape (docs/http.md: mode, nodes, meta, shards, slotCount) plus cluster details. */
export interface ClusterView {
  mode: 'cluster'
  clusterId: string
  version: number
  nodes: Array<{ id: number; raftId: number; roles: string[]; health: 'up' | 'down'; rpc: string; http?: string; lastSeenMsAgo: number | null }>
  meta: { leader: number | null; members: number[]; raftIds: number[] }
  shards: Array<{ id: number; epoch: number; replicas: number[]; learners: number[]; leader: number | null; slots: Array<[number, number]>; slotCount: number; claimed: boolean; raftIds: number[] }>
  slots: SlotRange[]
  moves: MoveRecord[]
  replacing: ReplaceRecord[]
  slotCount: number
}

/** clusterView renders routing and liveness for administrators; replicas and leaders are shown as node ids. */
export function clusterView(state: MetaState, liveness: Liveness, metaLeaderRaftId: number, nowMs: number, downAfterMs: number): ClusterView {
  const nodeOf = (raftId: number) => state.nodes.find((n) => n.raftId === raftId)?.id ?? raftId
  const ranges = slotRanges(state.slots)
  return {
    mode: 'cluster',
    clusterId: state.clusterId,
    version: state.version,
    nodes: state.nodes.map((n) => {
      const seen = liveness.lastSeenMs.get(n.id)
      const node = { id: n.id, raftId: n.raftId, roles: n.roles, health: seen !== undefined && nowMs - seen < downAfterMs ? 'up' as const : 'down' as const, rpc: n.rpc, lastSeenMsAgo: seen === undefined ? null : nowMs - seen }
      return n.http === undefined ? node : { ...node, http: n.http }
    }),
    meta: { leader: metaLeaderRaftId === 0 ? null : nodeOf(metaLeaderRaftId), members: state.metaVoters.map(nodeOf), raftIds: state.metaVoters },
    shards: state.shards.map((s) => {
      const leader = liveness.leaders.get(s.id)
      const mine = ranges.filter((r) => r.shard === s.id)
      return {
        id: s.id,
        epoch: s.epoch,
        replicas: s.replicas.map(nodeOf),
        learners: s.learners.map(nodeOf),
        leader: leader === undefined ? null : nodeOf(leader),
        slots: mine.map(({ from, to }): [number, number] => [from, to]),
        slotCount: mine.reduce((sum, r) => sum + r.to - r.from + 1, 0),
        claimed: s.claimed,
        raftIds: s.replicas,
      }
    }),
    slots: ranges,
    moves: state.moves,
    replacing: state.replacing,
    slotCount: SLOT_COUNT,
  }
}
