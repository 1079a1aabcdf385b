/**
 * The meta role's RPC methods (cluster token only), served by the meta group's leader; other
 * members answer NOT_LEADER with a hint and MetaClient follows it:
 *   meta.info             {}                         this member's view: cluster id (no leader needed)
 *   meta.routing          {}                         the routing table (linearizable: ReadIndex)
 *   meta.heartbeat        { node, leaders }          liveness and shard leader hints; registers changes
 *   meta.allocateRaftId   { nodeId }                 a fresh raft id for a node with an empty disk
 *   meta.admin            { method, params }         the admin.* operations (admin.ts)
 *
 * Liveness and leader hints are soft state on the leader: a new leader starts without them and
 * rebuilds them from the next heartbeats (within one heartbeat interval).
 */
import { ErrorCode, KvError } from '../errors.js'
import type { RaftDriver } from '../raftstore/driver.js'
import type { RequestContext, WireServer } from '../wire/index.js'
import { encodeMetaCommand, type MetaMachine } from './machine.js'
import { buildRouting, type Liveness, type Routing } from './routing.js'
import { META_GROUP_ID, type CommandResult, type MetaCommand, type NodeRecord, type Role } from './state.js'

type Guard = <T extends (params: any, ctx: RequestContext) => any>(handler: T) => T

/** MetaService is the meta leader's view of the cluster plus the means to change it. */
export class MetaService {
  readonly liveness: Liveness = { lastSeenMs: new Map(), leaders: new Map() }

  constructor(
    readonly driver: RaftDriver,
    readonly machine: MetaMachine,
  ) {}

  /** isLeader tells whether this node leads the meta group now. */
  isLeader(): boolean {
    return this.driver.status(META_GROUP_ID).role === 'leader'
  }

  /** requireLeader refuses with NOT_LEADER (and the hint) unless this node leads meta. */
  requireLeader(): void {
    const status = this.driver.status(META_GROUP_ID)
    if (status.role !== 'leader') throw new KvError(ErrorCode.NOT_LEADER, 'this node is not the meta leader', { groupId: META_GROUP_ID, leader: status.leader })
  }

  /** propose replicates a meta command and returns its value, or throws its refusal as KV_ERR_INVALID. */
  async propose(command: MetaCommand): Promise<unknown> {
    const result = (await this.driver.propose(META_GROUP_ID, encodeMetaCommand(command))) as CommandResult
    if (!result.ok) throw new KvError(ErrorCode.INVALID, `meta refused ${command.type}: ${result.reason}`, { command: command.type })
    return result.value
  }

  /** routing is the current table, after a ReadIndex so it is never older than an acknowledged change. */
  async routing(): Promise<Routing> {
    await this.driver.readIndex(META_GROUP_ID)
    return buildRouting(this.machine.state, this.liveness)
  }

  /** heartbeat records a node as alive with the shards it leads, and registers it if its record changed. */
  async heartbeat(node: NodeRecord, leaders: number[]): Promise<number> {
    this.requireLeader()
    this.liveness.lastSeenMs.set(node.id, Date.now())
    for (const shard of leaders) this.liveness.leaders.set(shard, node.raftId)
    const known = this.machine.state.nodes.find((n) => n.id === node.id)
    if (known === undefined || !sameNode(known, node)) await this.propose({ type: 'register', node })
    return this.machine.state.version
  }

  /** register adds the meta.* methods to `server`, each behind `guard`. */
  register(server: WireServer, guard: Guard, admin: (method: string, params: unknown) => Promise<unknown>): void {
    server.handle('meta.info', guard(async () => ({ clusterId: this.machine.state.clusterId, version: this.machine.state.version })))
    server.handle('meta.routing', guard(async () => {
      this.requireLeader()
      return this.routing()
    }))
    server.handle('meta.heartbeat', guard(async (params: { node?: unknown; leaders?: unknown }) => {
      const node = checkNode(params?.node)
      const leaders = Array.isArray(params?.leaders) ? params.leaders.filter((s): s is number => Number.isSafeInteger(s)) : []
      return { version: await this.heartbeat(node, leaders) }
    }))
    server.handle('meta.allocateRaftId', guard(async (params: { nodeId?: unknown }) => {
      this.requireLeader()
      const nodeId = Number(params?.nodeId)
      if (!Number.isSafeInteger(nodeId) || nodeId < 1) throw new KvError(ErrorCode.INVALID, 'nodeId must be a positive integer')
      return this.propose({ type: 'allocateRaftId', nodeId })
    }))
    server.handle('meta.admin', guard(async (params: { method?: unknown; params?: unknown }) => {
      this.requireLeader()
      if (typeof params?.method !== 'string') throw new KvError(ErrorCode.INVALID, 'meta.admin needs a method name')
      return admin(params.method, params.params)
    }))
  }
}

const ROLES = new Set<Role>(['meta', 'store', 'proxy'])

function checkNode(value: unknown): NodeRecord {
  const n = value as NodeRecord
  if (n === null || typeof n !== 'object' || !Number.isSafeInteger(n.id) || !Number.isSafeInteger(n.raftId) || typeof n.rpc !== 'string'
    || !Array.isArray(n.roles) || !n.roles.every((r) => ROLES.has(r)) || (n.http !== undefined && n.http !== null && typeof n.http !== 'string')) {
    throw new KvError(ErrorCode.INVALID, 'node must be { id, raftId, rpc, http?, roles }')
  }
  return { id: n.id, raftId: n.raftId, rpc: n.rpc, http: n.http ?? undefined, roles: [...n.roles] }
}

function sameNode(a: NodeRecord, b: NodeRecord): boolean {
  return a.raftId === b.raftId && a.rpc === b.rpc && (a.http ?? null) === (b.http ?? null) && a.roles.join() === b.roles.join()
}
