/**
 * The internal `store.*` methods of a node (cluster token only), answered by the leader of the
 * shard named in each request:
 *   store.write   { shard, ops, id }          replicate a write; `id` (a UUID) makes it exactly-once
 *                 { shard, units: [{ id, ops }] }  several such writes (a non-atomic batch's one-slot parts), all or none
 *                 { shard, each: bytes | [{ id, ops }] }  independent writes in one proposal (a proxy's batch of
 *                                             concurrent puts, binary: src/store/each-codec.ts); answers null or
 *                                             [[at, code, message]] of the refused
 *   store.read    { shard, keys, kind }       linearizable point reads (ReadIndex)
 *   store.seen    { shard, key, id }          linearizable: was a write with request id `id` applied? (by an owner of key's slot)
 *   store.query   { shard, range }  (stream)  linearizable range read; first page has `owned`
 *   store.command { shard, command }          slot-move commands (freeze/claim/release/purge/ingest)
 *   store.export  { shard, slots, after }     a page of a slot set's data, for moving it
 *   store.replace { shard, old, new, oldAlive } swap a replica: new as learner, catch up, promote, remove old
 *                                             (old removed first when oldAlive is false); { votersMin }
 *   store.transferLeader { shard, to }        hand a shard's leadership to a replica
 *   store.status  {}                          this node's replicas
 *   store.footprint { shard }                 { keys }: engine keys this node holds for the shard (Raft state and data), hosted or not
 *   store.hash    { shard }                   replicate a `hash` command; its { index, hash } on the leader
 *   store.replicaHash { shard }               the { index, hash, keys } this replica recorded for the latest one
 */
import { ErrorCode, KvError, kvErrorFrom } from '../errors.js'
import { Limits } from '../limits.js'
import { checkKeys, checkOps, checkRange, type WireOp, type WireRange } from '../local/validate.js'
import { engineRange } from '../local/keyspace.js'
import type { RaftDriver } from '../raftstore/driver.js'
import { groupPrefix } from '../raftstore/records.js'
import type { Engine } from '../engine/engine.js'
import { BlobEngine } from '../engine/blob-engine.js'
import { SlotSet, checkSlots, slotOf } from '../meta/slots.js'
import type { WireServer, RequestContext } from '../wire/index.js'
import { encodeShardCommand, type ShardCommand, type ShardResult, type WriteOp, type WriteUnit } from './machine.js'
import type { StoreHost } from './host.js'
import { decodeEach } from './each-codec.js'
import { ShardKeys } from './keys.js'

/** exportBytesMax: target size of one store.export page. */
export const exportBytesMax = 1024 * 1024
/** replaceCatchUpMs: how long store.replace waits for the new learner to catch up. */
export const replaceCatchUpMs = 20_000

type Guard = <T extends (params: any, ctx: RequestContext) => any>(handler: T) => T

function shardOf(params: unknown): number {
  const shard = (params as { shard?: unknown } | null)?.shard
  if (typeof shard !== 'number' || !Number.isSafeInteger(shard) || shard < 2) throw new KvError(ErrorCode.INVALID, 'shard must be a shard id (an integer >= 2)')
  return shard
}

function uuidBytes(requestId: string | Uint8Array): Buffer {
  // A proxy batching writes sends the client's 16 id bytes as they came (kv.multi), not as text.
  if (requestId instanceof Uint8Array) {
    if (requestId.byteLength !== 16) throw new KvError(ErrorCode.INVALID, 'a binary request id must be 16 bytes')
    return Buffer.from(requestId.buffer, requestId.byteOffset, 16)
  }
  const hex = requestId.replace(/-/g, '')
  if (!/^[0-9a-f]{32}$/i.test(hex)) throw new KvError(ErrorCode.INVALID, 'write requests need a UUID request id')
  return Buffer.from(hex, 'hex')
}

function toWriteOps(ops: WireOp[]): WriteOp[] {
  return ops.map((op) => (op.type === 'put' ? [0, op.key, op.value] : [1, op.key]))
}

/** checkUnits validates the units of a non-atomic batch part: each a UUID and ops; the batch limits apply to all of them together. */
function checkUnits(input: unknown): WriteUnit[] {
  if (!Array.isArray(input) || input.length === 0) throw new KvError(ErrorCode.INVALID, 'units must be a non-empty array of { id, ops }')
  const units = input.map((unit: unknown, i) => {
    const { id, ops } = (unit ?? {}) as Record<string, unknown>
    if ((typeof id !== 'string' && !(id instanceof Uint8Array)) || !Array.isArray(ops) || ops.length === 0) throw new KvError(ErrorCode.INVALID, `units[${i}] must be { id: UUID or 16 bytes, ops: non-empty array }`)
    return { id, ops }
  })
  // One checkOps over every op enforces batchOpsMax and batchBytesMax for the whole command.
  const all = toWriteOps(checkOps(units.flatMap((unit) => unit.ops)))
  let next = 0
  return units.map((unit) => ({ id: uuidBytes(unit.id), ops: all.slice(next, (next += unit.ops.length)) }))
}

/** FOOTPRINT_KEYS_MAX bounds how many keys store.footprint counts (it reports `keys` capped there). */
const FOOTPRINT_KEYS_MAX = 1_000_000

/** countGroupKeys counts the engine keys under a group's prefix (Raft records and state machine data), up to FOOTPRINT_KEYS_MAX. */
async function countGroupKeys(engine: Engine, shard: number): Promise<number> {
  const iterator = engine.iterator({ gte: groupPrefix(shard), lt: groupPrefix(shard + 1), values: false })
  let count = 0
  try {
    for (;;) {
      const batch = await iterator.nextBatch(1024)
      count += batch.length
      if (batch.length === 0 || count >= FOOTPRINT_KEYS_MAX) return Math.min(count, FOOTPRINT_KEYS_MAX)
    }
  } finally {
    await iterator.close()
  }
}

function settle(result: unknown): ShardResult {
  const r = result as ShardResult
  if (r !== null && typeof r === 'object' && r.ok === false) throw kvErrorFrom({ code: r.code, message: r.message })
  return r
}

/** LocalStoreCall runs a store.* method of this node in process (a proxy calling its own node skips the wire). */
export type LocalStoreCall = (method: string, params: unknown) => Promise<unknown>

const LOCAL_CONTEXT: RequestContext = {
  requestId: '00000000-0000-0000-0000-000000000000',
  peer: { clientId: 'local', name: 'local', pid: process.pid, transport: 'unix', remoteAddress: 'local', connectedAt: 0, requests: 0, role: 'internal' },
  signal: new AbortController().signal,
}

/** registerStoreHandlers adds the store.* methods to `server`, each behind `guard` (cluster token), and returns the in-process caller of the same methods. */
export function registerStoreHandlers(server: WireServer, host: StoreHost, driver: RaftDriver, engine: Engine, guard: Guard): LocalStoreCall {
  const local = new Map<string, (params: any, ctx: RequestContext) => Promise<unknown>>()
  const methods = {
    handle(method: string, handler: (params: any, ctx: RequestContext) => Promise<unknown>): void {
      local.set(method, handler)
      server.handle(method, handler)
    },
    handleStream: server.handleStream.bind(server),
  }
  const propose = async (shard: number, command: ShardCommand): Promise<ShardResult> => {
    host.machine(shard)
    return settle(await driver.propose(shard, encodeShardCommand(command)))
  }
  const readable = async (shard: number, keys: Buffer[]) => {
    const machine = host.machine(shard)
    await driver.readIndex(shard)
    for (const key of keys) {
      const slot = slotOf(key)
      if (!machine.ownsForRead(slot)) throw new KvError(ErrorCode.WRONG_SHARD, `shard ${shard} does not own slot ${slot}`, { shard, slot })
    }
    return machine
  }
  methods.handle('store.write', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    // The write's identity travels in the params, apart from the wire request id, so a proxy may
    // re-send it on the same connection while an earlier attempt is still pending there.
    if (params.units !== undefined) {
      await propose(shard, { t: 'units', units: checkUnits(params.units) })
      return null
    }
    if (params.each instanceof Uint8Array) {
      // Encoded once by the proxy: checked here in full, then proposed as it came.
      decodeEach(params.each)
      host.machine(shard)
      const result = settle(await driver.propose(shard, params.each))
      return (result.ok && result.refused) || null
    }
    if (params.each !== undefined) {
      const result = await propose(shard, { t: 'each', units: checkUnits(params.each) })
      return (result.ok && result.refused) || null
    }
    await propose(shard, { t: 'write', id: uuidBytes(typeof params.id === 'string' ? params.id : ''), ops: toWriteOps(checkOps(params.ops)) })
    return null
  }))
  methods.handle('store.seen', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    if (!(params.key instanceof Uint8Array)) throw new KvError(ErrorCode.INVALID, 'store.seen needs the key whose owner answers')
    // Only a current owner of the key's slot knows every id that guards it (docs/cluster.md).
    const machine = await readable(shard, [Buffer.from(params.key)])
    return machine.remembers(uuidBytes(typeof params.id === 'string' ? params.id : ''))
  }))
  methods.handle('store.read', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    const keys = checkKeys(params.keys)
    const machine = await readable(shard, keys)
    const engineKeys = keys.map((key) => machine.keys.dataKey(key))
    if (params.kind === 'size' || params.kind === 'has') {
      // Sizes come from the pointers of separated values: no blob is read.
      const sizes = engine instanceof BlobEngine ? await engine.sizes(engineKeys) : (await engine.getMany(engineKeys)).map((v) => v?.length)
      return params.kind === 'size' ? sizes.map((size) => size ?? null) : sizes.map((size) => size !== undefined)
    }
    const values = await engine.getMany(engineKeys)
    return values.map((v) => v ?? null)
  }))
  methods.handleStream('store.query', (params: Record<string, unknown>, ctx) => queryPages(host, driver, engine, params, ctx))
  registerPlacementMethods(methods, { host, driver, engine, guard, propose })
  return async (method, params) => {
    const handler = local.get(method)
    if (handler === undefined) throw new KvError(ErrorCode.UNKNOWN_METHOD, `unknown method ${method}`)
    return handler(params, LOCAL_CONTEXT)
  }
}

interface MethodTable {
  handle(method: string, handler: (params: any, ctx: RequestContext) => Promise<unknown>): void
}

/** registerPlacementMethods adds the methods the meta leader and fault suites use: slot moves, replicas, leadership, status, hashes. */
function registerPlacementMethods(methods: MethodTable, d: { host: StoreHost; driver: RaftDriver; engine: Engine; guard: Guard; propose: (shard: number, command: ShardCommand) => Promise<ShardResult> }): void {
  const { host, driver, engine, guard, propose } = d
  methods.handle('store.command', guard(async (params: Record<string, unknown>) => propose(shardOf(params), checkCommand(params.command))))
  methods.handle('store.export', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    const slots = checkSlots(params.slots)
    if (slots === undefined) throw new KvError(ErrorCode.INVALID, 'slots must be a non-empty list of slot numbers')
    host.machine(shard)
    await driver.readIndex(shard)
    const page = await exportPage(engine, new ShardKeys(shard), new Set(slots), params.after instanceof Uint8Array ? Buffer.from(params.after) : undefined)
    // The last page carries the slots' request ids (the slots are frozen, so no new ones appear).
    return page.next === null ? { ...page, requests: await host.machine(shard).requestsOfSlots(new Set(slots)) } : page
  }))
  methods.handle('store.replace', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    host.machine(shard)
    return replaceReplica(driver, shard, Number(params.old), Number(params.new), params.oldAlive !== false)
  }))
  methods.handle('store.transferLeader', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    host.machine(shard)
    const status = driver.status(shard)
    if (status.role !== 'leader') throw new KvError(ErrorCode.NOT_LEADER, `not the leader of shard ${shard}`, { groupId: shard, leader: status.leader })
    const to = Number(params.to)
    if (!status.confState.voters.includes(to)) throw new KvError(ErrorCode.INVALID, `raft id ${to} is not a voter of shard ${shard}`)
    driver.transferLeadership(shard, to)
    return null
  }))
  methods.handle('store.status', guard(async () => host.status()))
  methods.handle('store.footprint', guard(async (params: Record<string, unknown>) => ({ keys: await countGroupKeys(engine, shardOf(params)) })))
  methods.handle('store.hash', guard(async (params: Record<string, unknown>) => {
    const result = await propose(shardOf(params), { t: 'hash' })
    return { index: result.ok ? result.index : undefined, hash: result.ok ? result.hash : undefined }
  }))
  methods.handle('store.replicaHash', guard(async (params: Record<string, unknown>) => {
    const shard = shardOf(params)
    return { ...(host.machine(shard).lastHash ?? { index: 0, hash: null, keys: 0 }), applied: driver.status(shard).applied }
  }))
}

async function* queryPages(host: StoreHost, driver: RaftDriver, engine: Engine, params: Record<string, unknown>, ctx: RequestContext): AsyncGenerator<unknown> {
  if (ctx.peer.role !== 'internal') throw new KvError(ErrorCode.AUTH, 'store.query needs the cluster token')
  const shard = shardOf(params)
  const range: WireRange = checkRange(params.range)
  const machine = host.machine(shard)
  await driver.readIndex(shard)
  // The owned set is taken before the iterator, both after the read index: the proxy checks that
  // the shards' owned sets cover every slot, so a slot in motion is never silently skipped.
  const ownedAtStart = new SlotSet(machine.owned.bits)
  const owned = Buffer.from(ownedAtStart.bits)
  const keys = machine.keys
  const bounds = engineRange(range)
  // engineRange speaks the local keyspace (0x01 | key, upper edge 0x02): move it under this shard.
  const rebase = (key: Buffer | undefined) => (key === undefined ? undefined : key[0] === 0x02 ? keys.dataEnd : Buffer.concat([keys.data, key.subarray(1)]))
  const iterator = engine.iterator({ ...bounds, gt: rebase(bounds.gt), gte: rebase(bounds.gte), lt: rebase(bounds.lt), lte: rebase(bounds.lte), limit: undefined })
  const wantValues = range.values !== false
  const empty = Buffer.alloc(0)
  let remaining = range.limit ?? Infinity
  let first = true
  try {
    for (;;) {
      const batch = remaining <= 0 ? [] : await iterator.nextBatch(Math.min(256, Limits.queryPageItemsMax))
      const page = { keys: [] as Buffer[], values: [] as Buffer[], owned: first ? owned : undefined }
      for (const [key, value] of batch) {
        const user = keys.userKey(key)
        if (!ownedAtStart.has(slotOf(user))) continue
        if (remaining <= 0) break
        page.keys.push(user)
        page.values.push(wantValues ? value : empty)
        remaining--
      }
      if (page.keys.length > 0 || first || batch.length === 0) yield page
      first = false
      if (batch.length === 0) return
    }
  } finally {
    await iterator.close()
  }
}

function checkCommand(value: unknown): ShardCommand {
  const c = value as ShardCommand
  if (c === null || typeof c !== 'object') throw new KvError(ErrorCode.INVALID, 'command must be an object')
  if (c.t === 'freeze' || c.t === 'claim' || c.t === 'release' || c.t === 'purge') {
    if (checkSlots(c.slots) === undefined) throw new KvError(ErrorCode.INVALID, `${c.t}: slots must be a non-empty list of slot numbers`)
    return c
  }
  const requestsOk = (r: unknown) => r === undefined || (Array.isArray(r) && r.every((x) => x instanceof Uint8Array && x.byteLength === 18))
  if (c.t === 'ingest' && Array.isArray(c.pairs) && c.pairs.every((p) => Array.isArray(p) && p[0] instanceof Uint8Array && p[1] instanceof Uint8Array) && requestsOk(c.requests)) return c
  throw new KvError(ErrorCode.INVALID, 'command must be freeze, claim, release, purge or ingest')
}

async function exportPage(engine: Engine, keys: ShardKeys, slots: Set<number>, after: Buffer | undefined): Promise<{ pairs: Array<[Buffer, Buffer]>; next: Buffer | null }> {
  const iterator = engine.iterator(after === undefined ? { gte: keys.data, lt: keys.dataEnd } : { gt: keys.dataKey(after), lt: keys.dataEnd })
  const pairs: Array<[Buffer, Buffer]> = []
  let bytes = 0
  try {
    for (;;) {
      const batch = await iterator.nextBatch(512)
      if (batch.length === 0) return { pairs, next: null }
      for (const [key, value] of batch) {
        const user = keys.userKey(key)
        if (!slots.has(slotOf(user))) continue
        pairs.push([Buffer.from(user), value])
        bytes += user.length + value.length
        if (bytes >= exportBytesMax) return { pairs, next: Buffer.from(user) }
      }
    }
  } finally {
    await iterator.close()
  }
}

/**
 * replaceReplica swaps `old` for `added` one server at a time without lowering redundancy: add
 * `added` as a learner, wait until it caught up (by snapshot), promote it, and only then remove
 * `old`. When `old` is dead (`oldAlive` false) it is removed first instead: in the larger group a
 * dead voter would count towards every quorum. Idempotent (a re-run resumes where one stopped).
 * Returns the fewest voters the group had during the swap.
 */
async function replaceReplica(driver: RaftDriver, shard: number, old: number, added: number, oldAlive: boolean): Promise<{ votersMin: number }> {
  const conf = () => driver.status(shard).confState
  let votersMin = conf().voters.length
  const change = async (type: 'addLearner' | 'addVoter' | 'removeNode', nodeId: number) => {
    votersMin = Math.min(votersMin, (await driver.proposeConfChange(shard, { type, nodeId })).voters.length)
  }
  if (!oldAlive && conf().voters.includes(old) && old !== added) await change('removeNode', old)
  if (!conf().voters.includes(added) && !conf().learners.includes(added)) await change('addLearner', added)
  const deadline = Date.now() + replaceCatchUpMs
  while (!conf().voters.includes(added)) {
    const status = driver.status(shard)
    if (status.role !== 'leader') throw new KvError(ErrorCode.NOT_LEADER, `lost leadership of shard ${shard} while replacing a replica`, { groupId: shard, leader: status.leader })
    const match = status.progress?.[added]?.match ?? 0
    if (match >= status.commit) {
      await change('addVoter', added)
      break
    }
    if (Date.now() > deadline) throw new KvError(ErrorCode.TIMEOUT, `new replica ${added} of shard ${shard} did not catch up within replaceCatchUpMs (${replaceCatchUpMs})`)
    await new Promise((resolve) => setTimeout(resolve, 50))
  }
  if (conf().voters.includes(old) && old !== added) await change('removeNode', old)
  return { votersMin }
}
