/**
 * Configuration of one cluster node (`distkv server`): read from a JSON file, then flags, then
 * environment (DISTKV_TOKEN, DISTKV_CLIENT_TOKEN), validated once with messages that name the
 * field, and frozen. Every node of a cluster is given the same static member list; it is only
 * used to bootstrap a new cluster and to find the meta group at start.
 */
import { ErrorCode, KvError } from '../errors.js'
import { parseEndpoint } from '../local/validate.js'
import type { Role } from '../meta/state.js'
import { blobThresholdBytesMax } from '../engine/blob-engine.js'
import { logFileBytesMaxDefault, logFileBytesMaxLimit, logFileBytesMaxMin } from '../raftstore/log-files.js'

/** MemberConfig is one node of the static member list. */
export interface MemberConfig {
  id: number
  rpc: string
  roles: Role[]
  /** raft: host:port of the member's Raft peer-stream listener, if it has one (see NodeConfig.raft). */
  raft?: string
}

/** NodeConfig is the validated configuration of a node process. */
export interface NodeConfig {
  id: number
  roles: Role[]
  /** rpc: host:port of the wire listener (clients, proxies, peers). */
  rpc: string
  /**
   * raft: host:port of this node's Raft peer-stream listener (one-way message streams,
   * src/raftstore/peer-stream.ts), if any. A node sends Raft messages on streams to the members
   * whose `raft` address it knows when it has a listener itself, and as raft.messages requests on
   * the rpc listener otherwise; both are always accepted.
   */
  raft: string | undefined
  /** http: host:port of the HTTP front end (proxy role), if any. */
  http: string | undefined
  dataDir: string
  /** token: the cluster token internal methods require (peers, stores, meta). */
  token: string
  /** clientToken: the token clients must present; none means clients need none. */
  clientToken: string | undefined
  members: MemberConfig[]
  /** shards and replicas: the layout a new cluster is bootstrapped with. */
  shards: number
  replicas: number
  tickMs: number
  electionTicks: number
  /** requestTimeoutMs: how long the proxy tries one client request before giving up. */
  requestTimeoutMs: number
  /** downAfterMs: a node silent this long is reported down (and its replicas may be replaced). */
  downAfterMs: number
  /** dial: peer address -> address to connect to instead (a test harness's per-link proxies); empty in production. */
  dial: Readonly<Record<string, string>>
  /** balance: the meta leader moves replicas off nodes down past downAfterMs, onto added nodes, and spreads leaders. */
  balance: boolean
  /**
   * blobThresholdBytes: shard data values this long or longer are stored in the node's blob files
   * (dataDir/blobs) with a pointer in RocksDB, out of the LSM's flushes and compactions; 0 turns
   * separation off for new writes (docs/cluster.md, "Large values out of the LSM").
   */
  blobThresholdBytes: number
  /**
   * raftLogFileBytes: size at which the node's Raft log file is sealed and the next (preallocated)
   * one started (docs/raftstore.md, "Log files"); small values rotate, preallocate and collect
   * files often (the jepsen suite's `--raft-log-file-bytes`).
   */
  raftLogFileBytes: number
  /**
   * logValues: a large shard value (blobThresholdBytes or more) is stored as a pointer into the
   * Raft log file that already holds it, so each replica writes it once; a log file values point
   * into is kept (dataDir/log-values) instead of deleted, until GC finds its values dead or moves
   * the few live ones to blob files (docs/cluster.md, "Values in the Raft log"). Values the log
   * did not write here (replayed at start, carried by a snapshot) go to blob files as before.
   */
  logValues: boolean
}

/** blobThresholdBytesDefault: the default NodeConfig.blobThresholdBytes (docs/cluster.md, "Large values out of the LSM", for the measurements). */
export const blobThresholdBytesDefault = 8 * 1024

const ROLES: readonly Role[] = ['meta', 'store', 'proxy']

function invalid(field: string, message: string): KvError {
  return new KvError(ErrorCode.INVALID, `config ${field}: ${message}`, { field })
}

function integer(field: string, value: unknown, min: number, max: number): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < min || n > max) throw invalid(field, `must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`)
  return n
}

function boolean(field: string, value: unknown): boolean {
  if (value === true || value === 'true') return true
  if (value === false || value === 'false') return false
  throw invalid(field, `must be true or false, got ${JSON.stringify(value)}`)
}

function address(field: string, value: unknown): string {
  if (typeof value !== 'string') throw invalid(field, `must be 'host:port', got ${JSON.stringify(value)}`)
  try {
    parseEndpoint(value)
  } catch {
    throw invalid(field, `must be 'host:port', got ${JSON.stringify(value)}`)
  }
  return value
}

function roles(field: string, value: unknown): Role[] {
  const list = typeof value === 'string' ? value.split(',').map((r) => r.trim()).filter((r) => r !== '') : value
  if (!Array.isArray(list) || list.length === 0 || !list.every((r) => ROLES.includes(r as Role))) {
    throw invalid(field, `must be a non-empty list of ${ROLES.join(', ')}, got ${JSON.stringify(value)}`)
  }
  return [...new Set(list as Role[])]
}

function dialMap(value: unknown): Record<string, string> {
  if (value === undefined || value === null) return {}
  if (typeof value !== 'object' || Array.isArray(value)) throw invalid('dial', 'must be an object of peer address -> address')
  return Object.freeze(Object.fromEntries(Object.entries(value).map(([from, to]) => [address(`dial key ${from}`, from), address(`dial[${from}]`, to)])))
}

function members(value: unknown): MemberConfig[] {
  if (!Array.isArray(value) || value.length === 0) throw invalid('members', 'must be a non-empty list of { id, rpc, roles }')
  const out = value.map((m: Record<string, unknown>, i) => ({
    id: integer(`members[${i}].id`, m?.id, 1, 999_999),
    rpc: address(`members[${i}].rpc`, m?.rpc),
    roles: roles(`members[${i}].roles`, m?.roles ?? ROLES),
    ...(m?.raft === undefined || m.raft === null ? {} : { raft: address(`members[${i}].raft`, m.raft) }),
  }))
  if (new Set(out.map((m) => m.id)).size !== out.length) throw invalid('members', 'ids must be unique')
  if (!out.some((m) => m.roles.includes('meta'))) throw invalid('members', 'at least one member needs the meta role')
  return out
}

/** resolveNodeConfig validates a raw configuration object (file merged with flags) and fills in defaults. */
export function resolveNodeConfig(raw: Record<string, unknown>, env: NodeJS.ProcessEnv = {}): Readonly<NodeConfig> {
  const id = integer('id', raw.id, 1, 999_999)
  const token = raw.token ?? env.DISTKV_TOKEN
  if (typeof token !== 'string' || token.length < 8) throw invalid('token', 'the cluster token is required (at least 8 characters; --token or DISTKV_TOKEN)')
  const clientToken = raw.clientToken ?? env.DISTKV_CLIENT_TOKEN
  if (clientToken !== undefined && typeof clientToken !== 'string') throw invalid('clientToken', 'must be a string')
  if (typeof raw.dataDir !== 'string' || raw.dataDir === '') throw invalid('dataDir', 'is required')
  const list = members(raw.members)
  const self = list.find((m) => m.id === id)
  const config: NodeConfig = {
    id,
    roles: roles('roles', raw.roles ?? self?.roles ?? ROLES),
    rpc: address('rpc', raw.rpc ?? self?.rpc),
    raft: raw.raft === undefined || raw.raft === null ? self?.raft : address('raft', raw.raft),
    http: raw.http === undefined || raw.http === null ? undefined : address('http', raw.http),
    dataDir: raw.dataDir,
    token,
    clientToken: clientToken === '' ? undefined : clientToken,
    members: list,
    shards: integer('shards', raw.shards ?? 4, 1, 1024),
    replicas: integer('replicas', raw.replicas ?? 3, 1, 7),
    // 40 ms x 10 ticks: elections after 0.4-0.8 s of leader silence, so failover stays under 1 s.
    tickMs: integer('tickMs', raw.tickMs ?? 40, 1, 10_000),
    electionTicks: integer('electionTicks', raw.electionTicks ?? 10, 3, 1_000),
    requestTimeoutMs: integer('requestTimeoutMs', raw.requestTimeoutMs ?? 10_000, 100, 300_000),
    downAfterMs: integer('downAfterMs', raw.downAfterMs ?? 30_000, 100, 86_400_000),
    dial: dialMap(raw.dial),
    balance: boolean('balance', raw.balance ?? true),
    blobThresholdBytes: integer('blobThresholdBytes', raw.blobThresholdBytes ?? blobThresholdBytesDefault, 0, blobThresholdBytesMax),
    raftLogFileBytes: integer('raftLogFileBytes', raw.raftLogFileBytes ?? logFileBytesMaxDefault, logFileBytesMaxMin, logFileBytesMaxLimit),
    logValues: boolean('logValues', raw.logValues ?? true),
  }
  if (config.raft !== undefined && (config.raft === config.rpc || config.raft === config.http)) throw invalid('raft', `must differ from the rpc and http addresses, got ${config.raft}`)
  return Object.freeze(config)
}
