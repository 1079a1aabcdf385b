/**
 * The placement state the meta Raft group replicates, and the pure function that applies one
 * command to it. Every replica applies the same commands in the same order, so everything here
 * is deterministic: no clocks, no randomness (ids and times arrive inside the commands).
 *
 * Identities: a node has a stable `id` (its place in the deployment) and a `raftId`, its
 * identity in every Raft group. A node that restarts with an empty data directory gets a new
 * raftId, so its old replicas are replaced as a fresh peer (learner, then voter) and can never
 * vote twice in a term under its old identity.
 */
import { SLOT_COUNT } from './slots.js'

/** Role is what a node process does: hold the meta group, shard replicas, or serve clients. */
export type Role = 'meta' | 'store' | 'proxy'

/** NodeRecord is one node as meta knows it. */
export interface NodeRecord {
  id: number
  raftId: number
  rpc: string
  http: string | undefined
  roles: Role[]
  /** former raft ids of this node (identities lost with an emptied data directory). */
  former?: number[]
}

/** ShardRecord is one shard: its Raft group id (= shard id), voters and learners (raft ids) and epoch. */
export interface ShardRecord {
  id: number
  replicas: number[]
  learners: number[]
  /** founders are the raft ids that bootstrap the group; never changed after creation. */
  founders: number[]
  /** epoch changes whenever the replica set changes. */
  epoch: number
  /** claimed: the shard's replicas have been told which slots they own (init shards start false). */
  claimed: boolean
}

/** MoveStage is how far a slot move has got (docs/cluster.md, "Moving slots"). */
export type MoveStage = 'freeze' | 'copy' | 'claim' | 'release' | 'flip' | 'cleanup'

/** MoveRecord is a slot move in progress; the meta leader drives it stage by stage. */
export interface MoveRecord {
  id: number
  slots: number[]
  from: number
  to: number
  stage: MoveStage
}

/** ReplaceRecord is a replica being replaced (a fresh node identity, or a move to another node). */
export interface ReplaceRecord {
  shard: number
  old: number
  new: number
}

/** MetaState is the whole replicated placement. */
export interface MetaState {
  clusterId: string
  /** version changes on every change that a proxy or store must learn about. */
  version: number
  nodes: NodeRecord[]
  shards: ShardRecord[]
  /** slots maps each slot to a shard id; empty until the cluster is initialised. */
  slots: number[]
  metaVoters: number[]
  moves: MoveRecord[]
  replacing: ReplaceRecord[]
  nextShardId: number
  nextRaftId: number
  nextMoveId: number
  /** draining: node ids whose replicas are being moved away before removal. */
  draining: number[]
  /** removed: node ids removed from the cluster; they may not register again. */
  removed: number[]
}

/** MetaCommand is every command the meta group applies. */
export type MetaCommand =
  | { type: 'init'; clusterId: string; nodes: NodeRecord[]; metaVoters: number[]; shards: number; replicas: number }
  | { type: 'register'; node: NodeRecord }
  | { type: 'allocateRaftId'; nodeId: number }
  | { type: 'addShard'; replicas: number[] }
  | { type: 'moveStart'; slots: number[]; from: number; to: number }
  | { type: 'moveStage'; id: number; stage: MoveStage }
  | { type: 'moveDone'; id: number }
  | { type: 'replaceStart'; shard: number; old: number; new: number }
  | { type: 'replaceDone'; shard: number; old: number; new: number }
  | { type: 'metaVoters'; voters: number[] }
  | { type: 'shardClaimed'; shard: number }
  | { type: 'drainNode'; nodeId: number }
  | { type: 'removeNode'; nodeId: number }

/** CommandResult is what applying a command returns to its proposer. */
export type CommandResult = { ok: true; value?: unknown } | { ok: false; reason: string }

/** META_GROUP_ID is the Raft group of the meta role; shards are groups FIRST_SHARD_ID, ... */
export const META_GROUP_ID = 1
const FIRST_SHARD_ID = 2
/** RAFT_ID_BASE: raft ids handed to re-created nodes start here, above any static node id. */
export const RAFT_ID_BASE = 1_000_000

/** emptyState is the state of a meta group before `init`. */
export function emptyState(): MetaState {
  return { clusterId: '', version: 0, nodes: [], shards: [], slots: [], metaVoters: [], moves: [], replacing: [], nextShardId: FIRST_SHARD_ID, nextRaftId: RAFT_ID_BASE, nextMoveId: 1, draining: [], removed: [] }
}

function fail(reason: string): CommandResult {
  return { ok: false, reason }
}

/** placeReplicas picks `replicas` store nodes for shard number `index`, round-robin from `index`. */
export function placeReplicas(storeRaftIds: number[], index: number, replicas: number): number[] {
  const out: number[] = []
  for (let i = 0; i < Math.min(replicas, storeRaftIds.length); i++) out.push(storeRaftIds[(index + i) % storeRaftIds.length]!)
  return out
}

/** applyCommand mutates `state` by one command and says what happened. */
export function applyCommand(state: MetaState, command: MetaCommand): CommandResult {
  switch (command.type) {
    case 'init':
      return applyInit(state, command)
    case 'register':
      return applyRegister(state, command.node)
    case 'allocateRaftId': {
      const raftId = state.nextRaftId++
      return { ok: true, value: raftId }
    }
    case 'addShard': {
      if (command.replicas.length === 0) return fail('a shard needs at least one replica')
      const id = state.nextShardId++
      state.shards.push({ id, replicas: [...command.replicas], learners: [], founders: [...command.replicas], epoch: 1, claimed: true })
      state.version++
      return { ok: true, value: id }
    }
    case 'moveStart':
      return applyMoveStart(state, command)
    case 'moveStage':
      return applyMoveStage(state, command.id, command.stage)
    case 'moveDone':
      state.moves = state.moves.filter((m) => m.id !== command.id)
      return { ok: true }
    case 'replaceStart':
    case 'replaceDone':
      return applyReplace(state, command)
    case 'shardClaimed': {
      const shard = state.shards.find((s) => s.id === command.shard)
      if (shard === undefined) return fail(`no shard ${command.shard}`)
      shard.claimed = true
      state.version++
      return { ok: true }
    }
    case 'drainNode':
    case 'removeNode':
      return applyRemoval(state, command)
    case 'metaVoters':
      state.metaVoters = [...command.voters]
      state.version++
      return { ok: true }
  }
}

function applyInit(state: MetaState, command: Extract<MetaCommand, { type: 'init' }>): CommandResult {
  if (state.clusterId !== '') return fail('cluster already initialised')
  state.clusterId = command.clusterId
  for (const node of command.nodes) applyRegister(state, node)
  state.metaVoters = [...command.metaVoters]
  const stores = command.nodes.filter((node) => node.roles.includes('store')).map((node) => node.raftId)
  if (stores.length === 0) return fail('init needs at least one store node')
  const shardIds: number[] = []
  for (let i = 0; i < command.shards; i++) {
    const id = state.nextShardId++
    const replicas = placeReplicas(stores, i, command.replicas)
    state.shards.push({ id, replicas, learners: [], founders: [...replicas], epoch: 1, claimed: false })
    shardIds.push(id)
  }
  // Contiguous ranges keep the table compressible and the printed layout readable.
  state.slots = Array.from({ length: SLOT_COUNT }, (_, slot) => shardIds[Math.floor((slot * shardIds.length) / SLOT_COUNT)]!)
  state.version++
  return { ok: true }
}

function applyRegister(state: MetaState, node: NodeRecord): CommandResult {
  if (state.removed.includes(node.id)) return fail(`node ${node.id} was removed from the cluster`)
  const index = state.nodes.findIndex((n) => n.id === node.id)
  const previous = index < 0 ? undefined : state.nodes[index]!
  const former = [...(previous?.former ?? [])]
  if (previous !== undefined && previous.raftId !== node.raftId && !former.includes(previous.raftId)) former.push(previous.raftId)
  const record: NodeRecord = { id: node.id, raftId: node.raftId, rpc: node.rpc, http: node.http, roles: [...node.roles], former }
  if (index < 0) state.nodes.push(record)
  else state.nodes[index] = record
  state.nodes.sort((a, b) => a.id - b.id)
  state.version++
  return { ok: true }
}

function applyMoveStart(state: MetaState, command: Extract<MetaCommand, { type: 'moveStart' }>): CommandResult {
  if (!state.shards.some((s) => s.id === command.to)) return fail(`no shard ${command.to}`)
  if (command.from === command.to) return fail('source and target shard are the same')
  const busy = new Set(state.moves.flatMap((m) => m.slots))
  for (const slot of command.slots) {
    if (state.slots[slot] !== command.from) return fail(`slot ${slot} is not on shard ${command.from}`)
    if (busy.has(slot)) return fail(`slot ${slot} is already moving`)
  }
  const id = state.nextMoveId++
  state.moves.push({ id, slots: [...command.slots], from: command.from, to: command.to, stage: 'freeze' })
  return { ok: true, value: id }
}

const STAGE_ORDER: MoveStage[] = ['freeze', 'copy', 'claim', 'release', 'flip', 'cleanup']

function applyMoveStage(state: MetaState, id: number, stage: MoveStage): CommandResult {
  const move = state.moves.find((m) => m.id === id)
  if (move === undefined) return fail(`no move ${id}`)
  if (STAGE_ORDER.indexOf(stage) !== STAGE_ORDER.indexOf(move.stage) + 1) return fail(`move ${id} is at ${move.stage}, not before ${stage}`)
  move.stage = stage
  if (stage === 'cleanup') {
    // Entering cleanup means the target owns the slots: this is the routing flip.
    for (const slot of move.slots) state.slots[slot] = move.to
    state.version++
  }
  return { ok: true }
}

function applyReplace(state: MetaState, command: Extract<MetaCommand, { type: 'replaceStart' | 'replaceDone' }>): CommandResult {
  const shard = state.shards.find((s) => s.id === command.shard)
  if (shard === undefined) return fail(`no shard ${command.shard}`)
  if (command.type === 'replaceStart') {
    if (state.replacing.some((r) => r.shard === command.shard)) return fail(`shard ${command.shard} already has a replica change in progress`)
    if (!shard.replicas.includes(command.old)) return fail(`raft id ${command.old} is not a replica of shard ${command.shard}`)
    state.replacing.push({ shard: command.shard, old: command.old, new: command.new })
    shard.learners = [command.new]
  } else {
    state.replacing = state.replacing.filter((r) => r.shard !== command.shard)
    shard.replicas = [...shard.replicas.filter((r) => r !== command.old && r !== command.new), command.new].sort((a, b) => a - b)
    shard.learners = []
  }
  shard.epoch++
  state.version++
  return { ok: true }
}

function applyRemoval(state: MetaState, command: Extract<MetaCommand, { type: 'drainNode' | 'removeNode' }>): CommandResult {
  const node = state.nodes.find((n) => n.id === command.nodeId)
  if (node === undefined) return fail(`no node ${command.nodeId}`)
  if (state.metaVoters.includes(node.raftId)) return fail(`node ${node.id} is a meta voter; the meta group cannot lose it this way`)
  if (command.type === 'drainNode') {
    if (!state.draining.includes(node.id)) state.draining.push(node.id)
    return { ok: true }
  }
  const held = state.shards.filter((s) => s.replicas.includes(node.raftId) || s.learners.includes(node.raftId)).map((s) => s.id)
  if (held.length > 0) return fail(`node ${node.id} still holds replicas of shards ${held.join(', ')}`)
  state.nodes = state.nodes.filter((n) => n.id !== node.id)
  state.draining = state.draining.filter((id) => id !== node.id)
  state.removed.push(node.id)
  state.version++
  return { ok: true }
}
