/**
 * The shape of GET /v1/cluster, and the one-node description a local-mode server gives.
 * The cluster proxy passes its own `cluster` callback returning the same shape (docs/http.md).
 */
import type { DistKV } from '../../client/types.js'
import { hostname } from 'node:os'

/** ClusterNode is one node as the dashboard shows it. */
export interface ClusterNode {
  id: number | string
  roles: string[]
  /** health: 'up', 'down', or 'unknown'. */
  health: string
  rpc?: string
  http?: string
  pid?: number
  /** opsTotal: requests this node served so far (monotonic); the dashboard turns it into ops/s. */
  opsTotal?: number
  [more: string]: unknown
}

/** ClusterShard is one shard: its replicas, its leader and the slot ranges it owns. */
export interface ClusterShard {
  id: number | string
  replicas: Array<number | string>
  leader?: number | string | null
  /** slots: inclusive [first, last] ranges. */
  slots: Array<[number, number]>
  epoch?: number
  sizeBytes?: number
  keys?: number
}

/** ClusterView is the body of GET /v1/cluster. */
export interface ClusterView {
  mode: 'local' | 'cluster'
  nodes: ClusterNode[]
  meta?: { leader?: number | string | null; members: Array<number | string> } | null
  shards: ClusterShard[]
  slotCount?: number
  /** frontEnd: added by the HTTP server: its own URL and request count (the dashboard's ops/s fallback). */
  frontEnd?: { url: string; requestsTotal: number }
  [more: string]: unknown
}

/** localSlotCount: the local description claims every slot for its one shard, like a one-shard cluster. */
const localSlotCount = 4096

/** localClusterView describes a local-mode server as a one-node, one-shard cluster; `known` is its server info when already at hand. */
export async function localClusterView(kv: DistKV, self: { http: string; opsTotal?: number }, known?: object): Promise<ClusterView> {
  let info = (known ?? {}) as Record<string, unknown>
  const call = (kv as { call?: (method: string, params: unknown) => Promise<unknown> }).call
  if (known === undefined && typeof call === 'function') {
    // A RemoteKV can ask its server about itself; other DistKV implementations simply show less.
    info = ((await call.call(kv, 'admin.info', {}).catch(() => ({}))) ?? {}) as Record<string, unknown>
  }
  const tcp = info.tcp as { host?: string; port?: number } | undefined
  const node: ClusterNode = {
    id: 1,
    roles: ['local'],
    health: 'up',
    http: self.http,
    ...(self.opsTotal !== undefined ? { opsTotal: self.opsTotal } : {}),
    host: hostname(),
    ...(typeof info.pid === 'number' ? { pid: info.pid } : {}),
    ...(typeof info.engine === 'string' ? { engine: info.engine } : {}),
    ...(typeof info.dir === 'string' ? { dir: info.dir } : {}),
    ...(tcp?.port !== undefined ? { rpc: `${tcp.host ?? '127.0.0.1'}:${tcp.port}` } : {}),
    ...(info.stats !== undefined ? { stats: info.stats } : {}),
  }
  return {
    mode: 'local',
    nodes: [node],
    meta: null,
    shards: [{ id: 1, replicas: [1], leader: 1, slots: [[0, localSlotCount - 1]] }],
    slotCount: localSlotCount,
  }
}
