/**
 * The administration operations, run on the meta leader (every node forwards `admin.*` calls
 * there through `meta.admin`):
 *   admin.cluster                              the /v1/cluster view (any client may read it)
 *   admin.addShard      { nodes?, slots? }     create a shard and move `slots` slots onto it
 *   admin.moveSlots     { slots, to }          move slots (all on one source shard) to shard `to`
 *   admin.transferLeader { shard, node }       move a shard's leadership to the replica on `node`
 *   admin.replaceReplica { shard, from, to }   replace the replica on node `from` by one on `to`
 *   admin.removeNode    { node }               move the node's replicas away, then remove it
 * Mutations only record intent in the meta log; the Reconciler carries them out, online.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { StoreClient } from '../store/client.js'
import { buildRouting, clusterView } from './routing.js'
import type { MetaService } from './service.js'
import { META_GROUP_ID, type MetaState } from './state.js'
import { SLOT_COUNT, checkSlots } from './slots.js'

/** ADMIN_METHODS are the methods `handleAdmin` serves; the mutating ones need the cluster token. */
export const ADMIN_METHODS = {
  cluster: 'admin.cluster',
  addShard: 'admin.addShard',
  moveSlots: 'admin.moveSlots',
  transferLeader: 'admin.transferLeader',
  replaceReplica: 'admin.replaceReplica',
  removeNode: 'admin.removeNode',
} as const

function int(params: Record<string, unknown>, field: string): number {
  const value = params[field]
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1) throw new KvError(ErrorCode.INVALID, `${field} must be a positive integer, got ${JSON.stringify(value)}`)
  return value
}

function raftIdOf(state: MetaState, nodeId: number): number {
  const node = state.nodes.find((n) => n.id === nodeId)
  if (node === undefined) throw new KvError(ErrorCode.INVALID, `no node ${nodeId} in the cluster`)
  return node.raftId
}

/** handleAdmin runs one admin operation on the meta leader. */
export async function handleAdmin(meta: MetaService, stores: StoreClient, downAfterMs: number, method: string, raw: unknown): Promise<unknown> {
  const params = (raw ?? {}) as Record<string, unknown>
  const state = meta.machine.state
  switch (method) {
    case ADMIN_METHODS.cluster:
      await meta.routing()
      return clusterView(state, meta.liveness, meta.driver.status(META_GROUP_ID).id, Date.now(), downAfterMs)
    case ADMIN_METHODS.addShard:
      return addShard(meta, params)
    case ADMIN_METHODS.moveSlots: {
      const slots = checkSlots(params.slots)
      if (slots === undefined) throw new KvError(ErrorCode.INVALID, 'slots must be a non-empty list of slot numbers')
      const from = state.slots[slots[0]!]!
      return { move: await meta.propose({ type: 'moveStart', slots, from, to: int(params, 'to') }) }
    }
    case ADMIN_METHODS.transferLeader: {
      const shard = int(params, 'shard')
      const to = raftIdOf(state, int(params, 'node'))
      const attempt = await stores.attempt(buildRouting(state, meta.liveness), shard, 'store.transferLeader', { shard, to }, { timeoutMs: 5_000 })
      if (!attempt.ok) throw attempt.error
      return { shard, to }
    }
    case ADMIN_METHODS.replaceReplica: {
      const shard = int(params, 'shard')
      const record = { type: 'replaceStart' as const, shard, old: raftIdOf(state, int(params, 'from')), new: raftIdOf(state, int(params, 'to')) }
      await meta.propose(record)
      return { shard, old: record.old, new: record.new }
    }
    case ADMIN_METHODS.removeNode: {
      const nodeId = int(params, 'node')
      if (state.removed.includes(nodeId)) return { node: nodeId, removed: true, remaining: [] }
      const raftId = raftIdOf(state, nodeId)
      await meta.propose({ type: 'drainNode', nodeId })
      const remaining = state.shards.filter((s) => s.replicas.includes(raftId) || s.learners.includes(raftId)).map((s) => s.id)
      return { node: nodeId, removed: false, remaining }
    }
    default:
      throw new KvError(ErrorCode.UNKNOWN_METHOD, `unknown admin method ${method}`)
  }
}

/** addShard creates a shard on the least loaded store nodes and moves a fair share of slots onto it, taken from the fullest shards. */
async function addShard(meta: MetaService, params: Record<string, unknown>): Promise<unknown> {
  const state = meta.machine.state
  const stores = state.nodes.filter((n) => n.roles.includes('store'))
  let replicas: number[]
  if (Array.isArray(params.nodes)) {
    replicas = params.nodes.map((id) => raftIdOf(state, Number(id)))
  } else {
    const load = (raftId: number) => state.shards.filter((s) => s.replicas.includes(raftId)).length
    const count = Math.min(stores.length, Math.max(...state.shards.map((s) => s.replicas.length), 1))
    replicas = stores.map((n) => n.raftId).sort((a, b) => load(a) - load(b) || a - b).slice(0, count)
  }
  if (replicas.length === 0) throw new KvError(ErrorCode.INVALID, 'no store nodes to place the shard on')
  const shard = (await meta.propose({ type: 'addShard', replicas })) as number
  const wanted = params.slots === undefined ? Math.floor(SLOT_COUNT / (state.shards.length)) : int(params, 'slots')
  const moves: number[] = []
  // Take slots from each source shard in proportion to what it holds, one move per source.
  const bySource = new Map<number, number[]>()
  for (let slot = 0; slot < state.slots.length; slot++) {
    const owner = state.slots[slot]!
    if (state.moves.some((m) => m.slots.includes(slot))) continue
    const list = bySource.get(owner)
    if (list === undefined) bySource.set(owner, [slot])
    else list.push(slot)
  }
  const total = [...bySource.values()].reduce((sum, s) => sum + s.length, 0)
  for (const [from, slots] of bySource) {
    const take = Math.round((wanted * slots.length) / Math.max(1, total))
    if (take === 0 || from === shard) continue
    moves.push((await meta.propose({ type: 'moveStart', slots: slots.slice(slots.length - take), from, to: shard })) as number)
  }
  return { shard, replicas, moves }
}
