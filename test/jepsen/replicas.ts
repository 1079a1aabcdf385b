/**
 * The replica convergence check, run once the faults are healed and the workload stopped: for
 * each shard, the leader replicates a `hash` command (store.hash); every replica digests its
 * content when it applies that entry, at the same log index, and records it. The check then asks
 * each replica (store.replicaHash) for what it recorded: all must report the same index and
 * digest. A replica that does not reach the index within `convergeTimeoutMs` is a violation too.
 */
import { connect } from '../../src/client/index.js'
import type { RemoteKV } from '../../src/client/remote.js'
import type { ClusterView } from '../../src/meta/routing.js'
import type { JepsenCluster } from './cluster.js'
import type { Violation } from './checker.js'

/** convergeTimeoutMs: how long every replica gets to apply the hash entry. */
export const convergeTimeoutMs = 30_000

/** ShardDigest is one shard's outcome. */
export interface ShardDigest {
  shard: number
  index: number
  replicas: Array<{ node: number; index: number; hash: string | null; keys: number }>
}

async function nodeClient(cluster: JepsenCluster, node: number): Promise<RemoteKV> {
  return (await connect(cluster.link('c', node).address, { token: cluster.token, requestTimeoutMs: 5_000, name: 'jepsen-converge' })) as RemoteKV
}

async function hashOnLeader(clients: Map<number, RemoteKV>, shard: ClusterView['shards'][number], deadline: number): Promise<number | undefined> {
  while (Date.now() < deadline) {
    for (const node of shard.replicas) {
      const result = (await clients.get(node)?.call('store.hash', { shard: shard.id }).catch(() => undefined)) as { index?: number } | undefined
      if (typeof result?.index === 'number') return result.index
    }
    await new Promise((resolve) => setTimeout(resolve, 200))
  }
  return undefined
}

/** checkReplicas hashes every shard through its log and compares the replicas. */
export async function checkReplicas(cluster: JepsenCluster, view: ClusterView): Promise<{ digests: ShardDigest[]; violations: Violation[] }> {
  const clients = new Map<number, RemoteKV>()
  for (const node of cluster.nodes) clients.set(node.id, await nodeClient(cluster, node.id))
  const digests: ShardDigest[] = []
  const violations: Violation[] = []
  try {
    for (const shard of view.shards) {
      const deadline = Date.now() + convergeTimeoutMs
      const index = await hashOnLeader(clients, shard, deadline)
      if (index === undefined) {
        violations.push({ kind: 'replica-divergence', message: `shard ${shard.id}: no leader replicated the hash command within ${convergeTimeoutMs} ms`, ops: [] })
        continue
      }
      const digest: ShardDigest = { shard: shard.id, index, replicas: [] }
      for (const node of shard.replicas) {
        let seen = { index: 0, hash: null as string | null, keys: 0 }
        while (Date.now() < deadline) {
          seen = ((await clients.get(node)?.call('store.replicaHash', { shard: shard.id }).catch(() => undefined)) as typeof seen | undefined) ?? seen
          if (seen.index >= index) break
          await new Promise((resolve) => setTimeout(resolve, 200))
        }
        digest.replicas.push({ node, ...seen })
      }
      digests.push(digest)
      const reference = digest.replicas.find((r) => r.index === index)
      const bad = digest.replicas.filter((r) => r.index !== index || r.hash !== reference?.hash)
      if (bad.length > 0) {
        violations.push({ kind: 'replica-divergence', message: `shard ${shard.id}: replicas disagree at hash index ${index}: ${digest.replicas.map((r) => `node ${r.node} index ${r.index} ${r.hash?.slice(0, 12)} (${r.keys} keys)`).join('; ')}`, ops: [] })
      }
    }
  } finally {
    await Promise.all([...clients.values()].map((c) => c.close()))
  }
  return { digests, violations }
}
