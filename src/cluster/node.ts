/**
 * One cluster node process (`distkv server`): one RocksDB engine, one wire listener, one
 * RaftDriver hosting the meta group (meta role) and shard replicas (store role), and the
 * client API (proxy role, plus the HTTP front end when `http` is configured).
 *
 * Identity: a node's Raft id is its configured id the first time it founds a cluster; a node
 * that starts with an empty data directory while the cluster already exists asks meta for a
 * fresh Raft id and joins as a new peer, so it never votes twice under an old identity.
 * NB: "exists" is decided by asking the other meta members; a wiped member restarted while
 * every other meta member is unreachable takes itself for a founder. Operators of real
 * deployments should restart a wiped node only once the rest of the cluster answers.
 *
 * Auth: a hello with the cluster token gets the 'internal' role (raft.*, store.*, meta.*,
 * mutating admin.*); other hellos need the client token when one is configured.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import { nodeEngineOptions } from './engine-options.js'
import { RocksDbEngine } from '../engine/rocksdb.js'
import { powerLossFaultOn, withPowerLossFault } from '../engine/power-loss.js'
import { BlobEngine } from '../engine/blob-engine.js'
import { isShardDataKey } from '../store/keys.js'
import { parseEndpoint } from '../local/validate.js'
import { RaftDriver } from '../raftstore/driver.js'
import { EngineRaftStorage } from '../raftstore/log-storage.js'
import { RaftLogFiles, fileName as logFileName } from '../raftstore/log-files.js'
import { TcpTransport } from '../raftstore/tcp-transport.js'
import { IntervalTicker } from '../raftstore/ticker.js'
import { WireServer, type HelloInfo, type RequestContext } from '../wire/index.js'
import { ADMIN_METHODS, handleAdmin } from '../meta/admin.js'
import { MetaClient } from '../meta/client.js'
import { MetaMachine } from '../meta/machine.js'
import { Reconciler } from '../meta/reconciler.js'
import { checkRouting, type Routing } from '../meta/routing.js'
import { MetaService } from '../meta/service.js'
import { META_GROUP_ID, type NodeRecord } from '../meta/state.js'
import { StoreClient } from '../store/client.js'
import { StoreHost } from '../store/host.js'
import { registerStoreHandlers, type LocalStoreCall } from '../store/service.js'
import { ClusterKV, registerProxyHandlers } from '../proxy/service.js'
import { Router } from '../proxy/router.js'
import { ClusterInProcessKV } from '../proxy/http/in-process.js'
import type { NodeConfig } from './config.js'
import { PeerPool } from './peers.js'
import { attachHttp, raftMetricsOf, type HttpAttachment } from './http.js'
import { registerStorageMetrics } from './storage-metrics.js'

const IDENTITY_KEY = Buffer.from([0x00, 0x69, 0x64]) // outside raftstore's 0x01 keyspace
/** LOG_VALUES_INDEX: BlobEngine's index of the values that point into each Raft log file ('lv', outside raftstore's keyspace). */
const LOG_VALUES_INDEX = Buffer.from([0x00, 0x6c, 0x76])
/** heartbeatIntervalMs: how often a node reports to meta (and re-reads its placement when it changed). */
export const heartbeatIntervalMs = 250
/** ROUTING_REREAD_BEATS: a node re-reads the routing table at least every this many heartbeats. */
const ROUTING_REREAD_BEATS = 4

/** Identity is who this node is in Raft, stored in its engine. */
interface Identity {
  raftId: number
  founder: boolean
}

/** ClusterNodeHandle is a running node. */
export interface ClusterNodeHandle {
  readonly config: Readonly<NodeConfig>
  readonly raftId: number
  readonly rpc: string
  readonly http: string | undefined
  close(): Promise<void>
}

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

function authenticator(config: NodeConfig): (hello: HelloInfo) => string {
  const cluster = digest(config.token)
  const client = config.clientToken === undefined ? undefined : digest(config.clientToken)
  return (hello) => {
    const given = typeof hello.token === 'string' && hello.token !== '' ? digest(hello.token) : undefined
    if (given !== undefined && timingSafeEqual(given, cluster)) return 'internal'
    if (client === undefined) return 'client'
    if (given === undefined) throw new KvError(ErrorCode.AUTH, 'a token is required')
    if (!timingSafeEqual(given, client)) throw new KvError(ErrorCode.AUTH, 'wrong token')
    return 'client'
  }
}

/** internalOnly wraps a handler so that only peers with the cluster token may call it. */
function internalOnly<T extends (params: any, ctx: RequestContext) => any>(handler: T): T {
  return ((params: unknown, ctx: RequestContext) => {
    if (ctx.peer.role !== 'internal') throw new KvError(ErrorCode.AUTH, 'this method needs the cluster token')
    return handler(params, ctx)
  }) as T
}


/**
 * nodeLogCompaction: a group's log is cut once it holds 16 MiB (the driver's default is 64 MiB)
 * keeping 4 MiB behind the applied index, so the entries of large values are deleted while
 * still in a memtable (nodeEngineOptions) and each group pins at most ~16 MiB of log in memory.
 * Entry-count compaction (small values) is unchanged.
 */
const nodeLogCompaction = Object.freeze({ compactLogBytesMax: 16 * 1024 * 1024, logRetainBytes: 4 * 1024 * 1024 })

/**
 * routerRefreshIntervalMs: the proxy's own routing reads are a backstop. The heartbeat loop
 * offers it every table it reads (when the version changed, and every ROUTING_REREAD_BEATS beats),
 * and a refusal refreshes at once; one linearizable meta read per proxy per second fewer at idle.
 */
const routerRefreshIntervalMs = 5_000

/**
 * raftTransport builds the node's Raft transport: raft.messages requests to every peer's rpc
 * address, and one-way peer streams (no reply frame, pending request or promise per message
 * batch; ~15% less idle CPU and ~14% less per 4 MiB upload, docs/cluster.md "Raft transport")
 * to the members with a `raft` address when this node has a listener itself. `learnNode` maps a
 * routing table's node to its addresses: founders' raft ids are their node ids, later raft ids
 * are learnt from routing, by the node id of the member they belong to.
 */
function raftTransport(config: Readonly<NodeConfig>, raftId: number, addresses: Map<number, string>, dial: (address: string) => string, server: WireServer): { transport: TcpTransport; learnNode: (node: NodeRecord) => void } {
  const streamAddresses = new Map<number, string>()
  for (const m of config.members) if (m.raft !== undefined) streamAddresses.set(m.id, m.raft)
  const learnNode = (node: NodeRecord): void => {
    addresses.set(node.raftId, node.rpc)
    const raft = config.members.find((m) => m.id === node.id)?.raft
    if (raft !== undefined) streamAddresses.set(node.raftId, raft)
  }
  const endpointOf = (map: Map<number, string>, id: number) => (map.has(id) ? parseEndpoint(dial(map.get(id)!)) : undefined)
  const transport = new TcpTransport({
    nodeId: raftId,
    server,
    token: config.token,
    peers: (id) => endpointOf(addresses, id),
    ...(config.raft === undefined ? {} : { stream: { listen: parseEndpoint(config.raft), peers: (id: number) => endpointOf(streamAddresses, id) } }),
  })
  return { transport, learnNode }
}

/**
 * startNode opens the node's storage, joins or founds the cluster and serves until closed. If a
 * step fails (a listener's port in use, a locked data directory, meta unreachable while joining)
 * everything opened so far is closed again before the error is thrown: a half-started node would
 * otherwise keep its sockets, timers and Raft ticker alive, and its process would hang with the
 * error printed instead of exiting (a supervisor then saw it as "not ready" only at its backstop).
 */
export async function startNode(config: Readonly<NodeConfig>, log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): Promise<ClusterNodeHandle> {
  const say = (message: string, details: Record<string, unknown> = {}) => log(`${new Date().toISOString()} distkv node ${config.id}: ${message} ${JSON.stringify(details)}`)
  // Closers of what is open so far, run last-first by close() or when a start-up step fails. Each
  // runs even when one before it failed; the first failure is returned.
  const closers: Array<() => unknown> = []
  const closeAll = async (): Promise<unknown> => {
    let first: unknown
    for (const close of closers.splice(0).reverse()) {
      await Promise.resolve().then(close).catch((error: unknown) => {
        say('close failed', { error: String((error as Error)?.message ?? error) })
        first ??= error
      })
    }
    return first
  }
  try {
    const parts = await openNode(config, closers, say)
    say('serving', { rpc: config.rpc, http: parts.http, raftId: parts.raftId, roles: config.roles })
    const close = async (): Promise<void> => {
      const error = await closeAll()
      if (error !== undefined) throw error
    }
    return { config, raftId: parts.raftId, rpc: config.rpc, http: parts.http, close }
  } catch (error) {
    say('start-up failed; closing what was opened', { error: (error as Error)?.message ?? String(error) })
    await closeAll()
    throw error
  }
}

/** openNode runs the start-up steps in order, pushing a closer for each thing it opens. */
async function openNode(config: Readonly<NodeConfig>, closers: Array<() => unknown>, say: (m: string, d?: Record<string, unknown>) => void): Promise<{ raftId: number; http: string | undefined }> {
  say('starting', { dataDir: config.dataDir, rpc: config.rpc, raft: config.raft, http: config.http, pid: process.pid })
  mkdirSync(config.dataDir, { recursive: true })
  // Large shard data values go to blob files, pointers to RocksDB (always wrapped: pointers written
  // with an earlier threshold are still read when separation is off). DISTKV_FAULT_POWER_LOSS=1
  // puts both RocksDB and the blob files under the power-loss model (src/engine/power-loss.ts).
  // With config.logValues, large values are written as pointers into the Raft log files instead.
  // Such pointers are read, and the files they point into kept (moved to dataDir/log-values
  // once the log is done with them), whatever the setting: it may have been on before.
  const logDir = join(config.dataDir, 'raft-log')
  const keptDir = join(config.dataDir, 'log-values')
  const logValues = { paths: (file: number) => [join(logDir, logFileName(file)), join(keptDir, logFileName(file))], indexPrefix: LOG_VALUES_INDEX, keptDir }
  const engine = new BlobEngine(withPowerLossFault(new RocksDbEngine({ dir: join(config.dataDir, 'db'), ...nodeEngineOptions })), { dir: join(config.dataDir, 'blobs'), thresholdBytes: config.blobThresholdBytes, separable: isShardDataKey, powerLoss: powerLossFaultOn(), logValues })
  await engine.open()
  closers.push(() => engine.close())
  // The Raft log of every group on this node: append-only files beside the engine (src/raftstore/log-files.ts).
  let driver: RaftDriver | undefined
  const logFiles = await RaftLogFiles.open({ dir: logDir, keepFile: (file) => engine.logFileReferenced(file), keptDir, ...(config.logValues && config.blobThresholdBytes > 0 ? { locateBytesMin: config.blobThresholdBytes } : {}), fileBytesMax: config.raftLogFileBytes, powerLoss: powerLossFaultOn(), liveEntries: (groupId) => driver?.liveEntries(groupId) ?? [], logger: (level, message, details) => say(`raft log ${level}: ${message}`, details) })
  closers.push(() => logFiles.close())
  const dial = (address: string): string => config.dial[address] ?? address
  const pool = new PeerPool({ name: `distkv-node-${config.id}`, token: config.token, dial })
  closers.push(() => pool.close())
  const server = new WireServer({ serverInfo: { nodeId: config.id, pid: process.pid, roles: config.roles, cluster: true }, authenticate: authenticator(config), onHandlerError: (error, method) => say('handler failed', { method, error: String((error as Error)?.stack ?? error) }) })
  closers.push(() => server.close())
  await server.listen(parseEndpoint(config.rpc))
  const addresses = new Map<number, string>(config.members.map((m) => [m.id, m.rpc]))
  const metaSeeds = new Map(config.members.filter((m) => m.roles.includes('meta')).map((m) => [m.id, m.rpc]))
  const meta = new MetaClient({ pool, seeds: metaSeeds, timeoutMs: config.requestTimeoutMs })
  say('storage open and rpc listening; reading identity')
  const identity = await loadIdentity(engine, config, pool, meta, say)
  const guarded = { handle: (method: string, handler: any) => server.handle(method, internalOnly(handler)), handleStream: server.handleStream.bind(server) } as unknown as WireServer
  const { transport, learnNode } = raftTransport(config, identity.raftId, addresses, dial, guarded)
  driver = new RaftDriver({
    nodeId: identity.raftId,
    engine,
    logFiles,
    transport,
    ticker: new IntervalTicker(config.tickMs),
    // Heartbeats every 2 ticks (80 ms by default): most of an idle node's CPU is Raft messages,
    // and failure detection hangs on the election timeout (electionTicks >= 3), not on this interval.
    raft: { electionTimeoutTicks: config.electionTicks, heartbeatIntervalTicks: 2 },
    compaction: nodeLogCompaction,
    limits: { requestTimeoutTicks: Math.max(20, Math.ceil(5_000 / config.tickMs)) },
    logger: (level, message, details) => (level === 'info' ? undefined : say(`raft ${level}: ${message}`, details)),
  })
  // Closers run last-first: the server closes before the driver (no Raft message reaches a closed
  // driver), the pool and the engine after it.
  const started = driver
  closers.splice(closers.length - 1, 0, () => started.close())
  await driver.start()
  say('raft started; starting roles', { raftId: identity.raftId, founder: identity.founder })
  const parts = await startRoles({ config, engine, server, driver, logFiles, keptDir, pool, meta, identity, say }, closers)
  const self: NodeRecord = { id: config.id, raftId: identity.raftId, rpc: config.rpc, http: parts.http?.url, roles: config.roles }
  const loop = startHeartbeats({ self, meta, host: parts.host, learnNode, router: parts.router, say })
  closers.push(() => loop.stop())
  return { raftId: identity.raftId, http: parts.http?.url }
}

async function loadIdentity(engine: Engine, config: NodeConfig, pool: PeerPool, meta: MetaClient, say: (m: string, d?: Record<string, unknown>) => void): Promise<Identity> {
  const stored = await engine.get(IDENTITY_KEY)
  if (stored !== undefined) return JSON.parse(stored.toString()) as Identity
  let existing = false
  await Promise.all(config.members.filter((m) => m.id !== config.id && m.roles.includes('meta')).map(async (m) => {
    const info = (await pool.request(m.rpc, 'meta.info', {}, { timeoutMs: 1_000 }).catch(() => undefined)) as { clusterId?: string } | undefined
    if (typeof info?.clusterId === 'string' && info.clusterId !== '') existing = true
  }))
  let identity: Identity = { raftId: config.id, founder: true }
  if (existing) {
    const raftId = await meta.call('meta.allocateRaftId', { nodeId: config.id }, 60_000)
    if (typeof raftId !== 'number') throw new KvError(ErrorCode.PROTOCOL, 'meta.allocateRaftId returned no id')
    identity = { raftId, founder: false }
    say('empty data directory in an existing cluster: joining as a new peer', { raftId })
  }
  await engine.batch([{ type: 'put', key: IDENTITY_KEY, value: Buffer.from(JSON.stringify(identity)) }], { sync: true })
  return identity
}

interface RoleDeps {
  config: Readonly<NodeConfig>
  engine: BlobEngine
  server: WireServer
  driver: RaftDriver
  logFiles: RaftLogFiles
  /** keptDir: where the log keeps files values point into (dataDir/log-values). */
  keptDir: string
  pool: PeerPool
  meta: MetaClient
  identity: Identity
  say: (message: string, details?: Record<string, unknown>) => void
}

/** startRoles starts the configured roles, pushing a closer for each timer or listener it starts. */
async function startRoles(d: RoleDeps, closers: Array<() => unknown>): Promise<{ host?: StoreHost; router?: Router; reconciler?: Reconciler; http?: HttpAttachment }> {
  const out: { host?: StoreHost; router?: Router; reconciler?: Reconciler; http?: HttpAttachment } = {}
  let callLocal: LocalStoreCall | undefined
  const local = d.config.roles.includes('store') ? { raftId: d.identity.raftId, call: (method: string, params: unknown) => (callLocal === undefined ? Promise.reject(new KvError(ErrorCode.NOT_LEADER, 'store role still starting', { leader: 0 })) : callLocal(method, params)) } : undefined
  const stores = new StoreClient(d.pool, local)
  let service: MetaService | undefined
  if (d.config.roles.includes('meta')) {
    const machine = new MetaMachine(d.engine)
    await machine.load()
    const voters = d.config.members.filter((m) => m.roles.includes('meta')).map((m) => m.id)
    if (d.identity.founder && voters.includes(d.config.id)) await EngineRaftStorage.bootstrap(d.engine, META_GROUP_ID, { voters, learners: [], votersOutgoing: [] })
    await d.driver.addGroup(META_GROUP_ID, machine)
    service = new MetaService(d.driver, machine)
    const meta = service
    service.register(d.server, internalOnly, (method, params) => handleAdmin(meta, stores, d.config.downAfterMs, method, params))
    out.reconciler = new Reconciler(service, stores, { members: d.config.members, shards: d.config.shards, replicas: d.config.replicas, intervalMs: 300, rpcTimeoutMs: 10_000, downAfterMs: d.config.downAfterMs, balance: d.config.balance, log: d.say })
    out.reconciler.start()
    closers.push(() => out.reconciler?.stop())
  }
  if (d.config.roles.includes('store')) {
    out.host = new StoreHost(d.driver, d.engine, d.identity.raftId, d.say, d.config.logValues ? (data) => d.logFiles.locate(data) : undefined)
    callLocal = registerStoreHandlers(d.server, out.host, d.driver, d.engine, internalOnly)
  }
  const forward = (method: string, params: unknown) => d.meta.call('meta.admin', { method, params })
  d.server.handle(ADMIN_METHODS.cluster, async () => forward(ADMIN_METHODS.cluster, {}))
  for (const method of [ADMIN_METHODS.addShard, ADMIN_METHODS.moveSlots, ADMIN_METHODS.transferLeader, ADMIN_METHODS.replaceReplica, ADMIN_METHODS.removeNode]) {
    d.server.handle(method, internalOnly(async (params: unknown) => forward(method, params)))
  }
  if (d.config.roles.includes('proxy')) {
    out.router = new Router({ meta: d.meta, stores: stores, requestTimeoutMs: d.config.requestTimeoutMs, refreshIntervalMs: routerRefreshIntervalMs })
    out.router.start()
    closers.push(() => out.router?.stop())
    const deps = { router: out.router, stores: stores, pool: d.pool }
    const clusterKv = new ClusterKV(deps)
    registerProxyHandlers(d.server, clusterKv, deps, () => forward(ADMIN_METHODS.cluster, {}))
    if (d.config.http !== undefined) out.http = await attachHttp(d.config, () => forward(ADMIN_METHODS.cluster, {}), raftMetricsOf(d.driver, META_GROUP_ID), new ClusterInProcessKV(clusterKv, deps), (registry) => registerStorageMetrics(registry, d.engine, d.logFiles, d.keptDir))
    if (out.http !== undefined) closers.push(() => out.http?.close())
  }
  return out
}

function startHeartbeats(d: { self: NodeRecord; meta: MetaClient; host: StoreHost | undefined; learnNode: (node: NodeRecord) => void; router: Router | undefined; say: (m: string, x?: Record<string, unknown>) => void }): { stop(): void } {
  let stopped = false
  let failures = 0
  let knownVersion = -1
  let beats = 0
  const beat = async (): Promise<void> => {
    const { version } = (await d.meta.call('meta.heartbeat', { node: d.self, leaders: d.host?.leaders() ?? [] }, 2_000)) as { version?: unknown }
    // The (linearizable, so costly) routing read only when the table changed, and every
    // ROUTING_REREAD_BEATS beats in case the heartbeat came from a deposed meta leader.
    if (version === knownVersion && ++beats % ROUTING_REREAD_BEATS !== 0) return
    const routing: Routing = checkRouting(await d.meta.call('meta.routing', {}, 2_000))
    d.meta.learn(routing)
    d.router?.offer(routing)
    for (const node of routing.nodes) d.learnNode(node)
    await d.host?.reconcile(routing)
    knownVersion = routing.version
  }
  const loop = async (): Promise<void> => {
    while (!stopped) {
      try {
        await beat()
        failures = 0
      } catch (error) {
        if (++failures % 20 === 1) d.say('heartbeat to meta failed', { error: (error as Error).message })
      }
      await new Promise((resolve) => setTimeout(resolve, heartbeatIntervalMs))
    }
  }
  void loop()
  return { stop: () => void (stopped = true) }
}
