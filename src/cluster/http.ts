/**
 * The HTTP front end of a proxy node: src/proxy/http served over this node's proxy called in
 * process (the node passes a ClusterInProcessKV: same validation, routing and retries as the
 * RPC handlers, without the loopback hop), or else over a client of the node's own RPC listener.
 */
import { connect } from '../client/open.js'
import type { DistKV } from '../client/types.js'
import { parseEndpoint } from '../local/validate.js'
import { startHttpServer, type RaftMetricsSource } from '../proxy/http/index.js'
import type { Registry } from 'prom-client'
import type { NodeConfig } from './config.js'

/** HttpAttachment is a running HTTP front end. */
export interface HttpAttachment {
  url: string
  close(): Promise<void>
}

/**
 * attachHttp starts the HTTP front end on `config.http`, over `inProcess` (this node's proxy
 * called in process, src/proxy/http/in-process.ts) when given, else over an RPC client of this
 * node's own listener. `moreMetrics` adds the node's own metrics (storage) to /metrics.
 */
export async function attachHttp(config: Readonly<NodeConfig>, cluster: () => Promise<unknown>, raftMetrics?: RaftMetricsSource, inProcess?: DistKV, moreMetrics?: (registry: Registry) => void): Promise<HttpAttachment> {
  const { host, port } = parseEndpoint(config.http!)
  const kv: DistKV = inProcess ?? await connect(config.rpc, { token: config.clientToken ?? config.token, name: `distkv-http-${config.id}`, requestTimeoutMs: config.requestTimeoutMs + 1_000 })
  const handle = await startHttpServer({ kv, host, port, cluster: async () => (await cluster()) as object, token: config.clientToken, ...(raftMetrics === undefined ? {} : { raftMetrics }) }).catch(async (error: unknown) => {
    // The port is taken (or the host wrong): the client made for this front end must not keep the process alive.
    if (inProcess === undefined) await kv.close().catch(() => undefined)
    throw error
  })
  moreMetrics?.(handle.metrics.registry)
  return {
    url: handle.url,
    async close() {
      await handle.close()
      await kv.close()
    },
  }
}

/** raftMetricsOf reports every Raft group a driver hosts for /metrics; leader changes are counted as seen at scrapes. */
export function raftMetricsOf(driver: { groupIds(): number[]; status(groupId: number): { term: number; commit: number; applied: number; leader: number; role: string } }, metaGroupId: number): RaftMetricsSource {
  const seen = new Map<number, { leader: number; changes: number }>()
  return () => driver.groupIds().map((groupId) => {
    const status = driver.status(groupId)
    const last = seen.get(groupId) ?? { leader: status.leader, changes: 0 }
    if (last.leader !== status.leader) last.changes++
    last.leader = status.leader
    seen.set(groupId, last)
    return { group: groupId === metaGroupId ? 'meta' : String(groupId), term: status.term, commitIndex: status.commit, appliedIndex: status.applied, leaderChanges: last.changes, isLeader: status.role === 'leader' }
  })
}
