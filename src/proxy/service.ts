/**
 * The proxy role: the DistKV RPC methods of local mode (same names, same validation, same
 * result shapes, so `connect()` works unchanged), served by routing each request to the
 * leaders of the shards that own its keys. Stateless: everything it caches (routing, leaders)
 * can be rebuilt from meta.
 *
 * Batches: atomic when every key lives in one shard (keys sharing a `{tag}` always do);
 * otherwise refused with KV_ERR_CROSS_SHARD_BATCH unless `atomic: false`, when each shard's
 * slot's part is applied atomically on its own, with a request id derived from the batch's and
 * the slot (so the id moves with the slot).
 */
import { createHash } from 'node:crypto'
import { ErrorCode, KvError } from '../errors.js'
import { LocalMethod } from '../local/handlers.js'
import { checkKey, checkKeys, checkOps, checkRange, checkSync, type WireOp } from '../local/validate.js'
import type { PeerPool } from '../cluster/peers.js'
import type { StoreClient } from '../store/client.js'
import type { RequestContext, WireServer } from '../wire/index.js'
import { requestIdToBytes } from '../wire/codec.js'
import { WriteBatcher } from './batcher.js'
import { executeClusterMulti, executeClusterMultiBinary } from './multi.js'
import { MULTI_BINARY_METHOD } from '../local/multi-codec.js'
import { gatherQuery } from './query.js'
import { Router } from './router.js'
import type { Routing } from '../meta/routing.js'
import { slotOf } from '../meta/slots.js'

/** ProxyDeps are what the proxy's handlers use. */
export interface ProxyDeps {
  router: Router
  stores: StoreClient
  pool: PeerPool
}

function paramsOf(params: unknown): Record<string, unknown> {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) throw new KvError(ErrorCode.INVALID, 'request params must be an object')
  return params as Record<string, unknown>
}

/**
 * unitRequestId derives the request id of one slot's part of a non-atomic batch. Per slot, not
 * per shard: slots move between shards, and a retry regrouped after a move must carry the same
 * ids for the same ops (a slot's id moves with the slot, see ShardMachine).
 */
function unitRequestId(requestId: string, slot: number): string {
  const hex = createHash('sha256').update(`${requestId}/slot/${slot}`).digest('hex')
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20, 32)}`
}

/** bySlot groups a non-atomic batch's ops into one-slot units, each with its derived id. */
function bySlot(requestId: string, ops: WireOp[]): Array<{ slot: number; id: string; ops: WireOp[] }> {
  const units = new Map<number, WireOp[]>()
  for (const op of ops) {
    const slot = slotOf(op.key)
    const list = units.get(slot)
    if (list === undefined) units.set(slot, [op])
    else list.push(op)
  }
  return [...units.entries()].map(([slot, part]) => ({ slot, id: unitRequestId(requestId, slot), ops: part }))
}

/** ClusterKV is the proxy's DistKV logic, usable in process (the HTTP front end) and over RPC. */
export class ClusterKV {
  /** batcher groups this proxy's concurrent single-key writes into one store write per shard. */
  readonly batcher: WriteBatcher

  constructor(private readonly deps: ProxyDeps) {
    this.batcher = new WriteBatcher(deps.router)
  }

  /** writeOne applies one single-key write (validated) under `requestId`, batched with the concurrent others. */
  writeOne(requestId: string, op: WireOp): Promise<void> {
    return this.batcher.submit(requestIdToBytes(requestId), [op])
  }

  /** read runs a point read of several keys, one store.read per shard, in parallel. */
  async read(keys: Buffer[], kind: 'get' | 'has' | 'size'): Promise<unknown[]> {
    const routing = await this.deps.router.current()
    const byShard = new Map<number, number[]>()
    keys.forEach((key, i) => {
      const shard = Router.shardOfKey(routing, key)
      const list = byShard.get(shard)
      if (list === undefined) byShard.set(shard, [i])
      else list.push(i)
    })
    const out: unknown[] = new Array(keys.length)
    await Promise.all([...byShard.values()].map(async (indexes) => {
      const part = indexes.map((i) => keys[i]!)
      const values = (await this.deps.router.run((r) => Router.shardOfKey(r, part[0]!), 'store.read', (shard) => ({ shard, keys: part, kind }), { write: false })) as unknown[]
      indexes.forEach((index, j) => (out[index] = values[j]))
    }))
    return out
  }

  /**
   * write applies ops (already validated) with `requestId`, atomically unless `atomic` is false.
   * An atomic write is one store write under `requestId`. A non-atomic one is split into one-slot
   * units (ids derived per slot), sent as one store write per shard: however the slots are spread
   * when it is (re)tried, each op is under the same id, so it is applied at most once.
   */
  async write(requestId: string, ops: WireOp[], atomic: boolean): Promise<void> {
    if (ops.length === 0) return
    const routing = await this.deps.router.current()
    if (atomic) {
      await writeAtomic(this.deps.router, requestId, ops)
      return
    }
    const byShard = new Map<number, Array<{ id: string; ops: WireOp[] }>>()
    for (const unit of bySlot(requestId, ops)) {
      const shard = routing.slots[unit.slot]!
      const list = byShard.get(shard)
      if (list === undefined) byShard.set(shard, [unit])
      else list.push(unit)
    }
    await Promise.all([...byShard.values()].map((units) => {
      const wire = units.map((u) => ({ id: u.id, ops: u.ops }))
      return this.deps.router.run((r) => Router.shardOfKey(r, units[0]!.ops[0]!.key), 'store.write', (shard) => ({ shard, units: wire }), { write: true })
    }))
  }
}

/**
 * writeAtomic sends an atomic write to the shard owning all its keys, re-checking on every
 * attempt (routing changes between retries). Keys spanning shards are refused with
 * KV_ERR_CROSS_SHARD_BATCH, unless an owner of the first key's slot already applied this
 * request id: then it is a re-send of a batch applied before a slot move split it, and it succeeded.
 */
async function writeAtomic(router: Router, requestId: string, ops: WireOp[]): Promise<void> {
  const allInOne = (r: Routing): number => {
    const shards = new Set(ops.map((op) => Router.shardOfKey(r, op.key)))
    if (shards.size > 1) throw new KvError(ErrorCode.CROSS_SHARD_BATCH, `batch keys span ${shards.size} shards; use keys sharing a {tag}, or pass { atomic: false }`, { shards: shards.size })
    return Router.shardOfKey(r, ops[0]!.key)
  }
  try {
    await router.run(allInOne, 'store.write', (shard) => ({ shard, ops, id: requestId }), { write: true })
  } catch (error) {
    if ((error as KvError).code !== ErrorCode.CROSS_SHARD_BATCH) throw error
    // Only a re-send can have been applied; an owner of the first key's slot knows (docs/cluster.md).
    const key = ops[0]!.key
    const seen = await router.run((r) => Router.shardOfKey(r, key), 'store.seen', (shard) => ({ shard, key, id: requestId }), { write: false })
    if (seen !== true) throw error
  }
}

/** registerProxyHandlers serves the DistKV methods on `server` through `kv`. */
export function registerProxyHandlers(server: WireServer, kv: ClusterKV, deps: ProxyDeps, clusterView: () => Promise<unknown>): void {
  server.handle(LocalMethod.get, async (params) => (await kv.read([checkKey(paramsOf(params).key)], 'get'))[0] ?? null)
  server.handle(LocalMethod.getMany, async (params) => (await kv.read(checkKeys(paramsOf(params).keys), 'get')).map((v) => v ?? null))
  server.handle(LocalMethod.has, async (params) => (await kv.read([checkKey(paramsOf(params).key)], 'has'))[0] === true)
  server.handle(LocalMethod.getSize, async (params) => (await kv.read([checkKey(paramsOf(params).key)], 'size'))[0] ?? null)
  server.handle(LocalMethod.put, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    checkSync(p)
    await kv.writeOne(ctx.requestId, checkOps([{ type: 'put', key: p.key, value: p.value }])[0]!)
    return null
  })
  server.handle(LocalMethod.del, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    checkSync(p)
    await kv.writeOne(ctx.requestId, { type: 'del', key: checkKey(p.key) })
    return null
  })
  server.handle(LocalMethod.batch, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    checkSync(p)
    if (p.atomic !== undefined && p.atomic !== null && typeof p.atomic !== 'boolean') throw new KvError(ErrorCode.INVALID, 'options.atomic must be a boolean')
    await kv.write(ctx.requestId, checkOps(p.ops), p.atomic !== false)
    return null
  })
  server.handle(LocalMethod.multi, async (params) => executeClusterMulti(params, kv.batcher, (keys, kind) => kv.read(keys, kind)))
  server.handle(MULTI_BINARY_METHOD, async (params) => executeClusterMultiBinary(params, kv.batcher, (keys, kind) => kv.read(keys, kind)))
  // Every acknowledged cluster write is already fsynced by a majority.
  server.handle(LocalMethod.sync, async () => null)
  server.handleStream(LocalMethod.query, (params, ctx: RequestContext) => queryPages(deps, params, ctx.signal))
  server.handle('admin.cluster', async () => clusterView())
  server.handle(LocalMethod.clients, async () => server.peers().filter((p) => p.role !== 'internal').map((peer) => ({
    id: peer.clientId, name: peer.name, pid: peer.pid, transport: peer.transport, remoteAddress: peer.remoteAddress, since: peer.connectedAt, requests: peer.requests,
  })))
}

async function* queryPages(deps: ProxyDeps, params: unknown, signal: AbortSignal): AsyncGenerator<unknown> {
  const range = checkRange(params)
  if (range.limit === 0) return
  yield* gatherQuery(deps.router, deps, range, signal)
}
