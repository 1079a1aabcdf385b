// Cluster put-path probe: the distkv dev cluster alone (3 node processes, 4 shards x 3
// replicas), puts of 1 KiB values through node 1's proxy at 1 and 64 concurrent callers of one
// connect() client. Prints, per figure, puts/s with p50/p99 and the load-insensitive cost: CPU
// µs per put summed over the three node processes (from /proc/PID/stat), also net of their idle
// rate measured just before (ticks, heartbeats, routing refreshes), and the client's own.
// `--profile DIR` runs the nodes under the V8 profiler (each writes DIR/*.cpuprofile when the
// cluster stops; summarise with `node dist/bench/cluster/profile.js DIR/*.cpuprofile`).
// Usage: npm run build && node dist/bench/cluster/puts.js [--seconds 5] [--clients 1,64] [--warmup 2] [--idle 2] [--shards 4] [--profile DIR]
import { mkdtempSync, rmSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect } from '../../src/client/index.js'
import type { RemoteKV } from '../../src/client/remote.js'
import { DevCluster } from '../../src/cluster/dev.js'
import { argument } from '../lib/common.js'
import { measure, processCpuMs, waitForLeaders } from './measure.js'

const VALUE = Buffer.alloc(1024, 0x61)
const KEYS = 10_000

async function main(): Promise<void> {
  const seconds = Number(argument('seconds', '5'))
  const warmup = Number(argument('warmup', '2'))
  const profile = argument('profile', '')
  const idleSeconds = Number(argument('idle', '2'))
  const dir = mkdtempSync(join(tmpdir(), 'distkv-bench-puts-'))
  const cluster = new DevCluster({ dir: join(dir, 'distkv'), nodes: 3, shards: Number(argument('shards', '4')), replicas: 3, port: Number(argument('port', '27800')), restart: false, restartDelayMs: 1_000, nodeArgs: profile === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${profile}`], log: () => {} })
  try {
    await cluster.start()
    const kv = (await connect(cluster.endpoint, { token: cluster.token })) as RemoteKV
    await waitForLeaders(kv)
    const put = (n: number) => kv.put(`bench/${(n * 7919) % KEYS}`, VALUE)
    await measure(64, warmup, put)
    const pids = () => cluster.nodes.map((node) => node.pid!)
    const idleBefore = processCpuMs(pids())
    await new Promise((resolve) => setTimeout(resolve, idleSeconds * 1000))
    const idleMsPerSecond = (processCpuMs(pids()) - idleBefore) / idleSeconds
    console.log(`idle: ${idleMsPerSecond.toFixed(0)} CPU ms/s in the 3 nodes (ticks, heartbeats, routing refreshes)`)
    for (const clients of argument('clients', '1,64').split(',').map(Number)) {
      const nodesBefore = processCpuMs(pids())
      const clientBefore = process.cpuUsage()
      const f = await measure(clients, seconds, put)
      const ops = Math.max(1, f.perSecond * seconds)
      const nodesMs = processCpuMs(pids()) - nodesBefore
      const nodesUs = (nodesMs * 1000) / ops
      const netUs = (Math.max(0, nodesMs - idleMsPerSecond * seconds) * 1000) / ops
      const client = process.cpuUsage(clientBefore)
      const clientUs = (client.user + client.system) / ops
      console.log(`puts, ${String(clients).padStart(2)} clients: ${f.perSecond.toFixed(0)}/s p50 ${f.p50Ms.toFixed(1)} ms p99 ${f.p99Ms.toFixed(1)} ms errors ${f.errors}; ` +
        `CPU ${nodesUs.toFixed(0)} µs/put in the 3 nodes (${netUs.toFixed(0)} net of idle), ${clientUs.toFixed(0)} µs/put in the client; load ${loadavg()[0]!.toFixed(1)}`)
    }
    await kv.close()
  } finally {
    await cluster.stop()
    rmSync(dir, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exitCode = 1
})
