// Measurement helpers of the cluster benchmarks: a closed-loop load generator with latency
// percentiles, process CPU time from /proc (load-insensitive, unlike rates), and waiting for a
// dev cluster to have every shard led and claimed.
import { readFileSync } from 'node:fs'
import type { RemoteKV } from '../../src/client/remote.js'
import type { ClusterView } from '../../src/meta/routing.js'
import { percentile } from '../lib/common.js'

/** Figures are one measured configuration's rate and latencies. */
export interface Figures {
  perSecond: number
  p50Ms: number
  p99Ms: number
  errors: number
  /** latenciesMs: every successful operation's latency, ascending (to pool rounds). */
  latenciesMs: number[]
}

/** CLOCK_TICKS_PER_SECOND is USER_HZ, the unit of /proc/PID/stat times (100 on every Linux ABI Node supports). */
const CLOCK_TICKS_PER_SECOND = 100

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** measure keeps `clients` operations in flight for `seconds` (each caller issues its next op when the last one answers). */
export async function measure(clients: number, seconds: number, op: (i: number) => Promise<unknown>): Promise<Figures> {
  const latencies: number[] = []
  let errors = 0
  const end = performance.now() + seconds * 1000
  await Promise.all(Array.from({ length: clients }, async (_, c) => {
    for (let n = c; performance.now() < end; n += clients) {
      const start = performance.now()
      try {
        await op(n)
        latencies.push(performance.now() - start)
      } catch {
        errors++
      }
    }
  }))
  latencies.sort((a, b) => a - b)
  return { perSecond: latencies.length / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), errors, latenciesMs: latencies }
}

/** processCpuMs sums user + system CPU time of the given processes (a process that is gone counts 0). */
export function processCpuMs(pids: Iterable<number>): number {
  let ticks = 0
  for (const pid of pids) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    } catch {
      continue
    }
    // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    ticks += Number(fields[11]) + Number(fields[12])
  }
  return (ticks * 1000) / CLOCK_TICKS_PER_SECOND
}

/** leadersSpread tells whether no node leads 2 or more shards more than another (what the meta leader's balancing aims at). */
function leadersSpread(view: ClusterView): boolean {
  const counts = view.nodes.map((node) => view.shards.filter((s) => s.leader === node.id).length)
  return Math.max(...counts) - Math.min(...counts) <= 1
}

/**
 * waitForLeaders resolves with the cluster view once every shard has a leader and its slots,
 * every node is up, nothing moves, and (for up to `spreadWaitMs`) leaders are spread, so a
 * measurement is not interrupted by the balancer's leadership transfers.
 */
export async function waitForLeaders(kv: RemoteKV, spreadWaitMs = 30_000): Promise<ClusterView> {
  const spreadUntil = Date.now() + spreadWaitMs
  for (;;) {
    const view = (await kv.call('admin.cluster', {}).catch(() => undefined)) as ClusterView | undefined
    const settled = view !== undefined && view.shards.every((s) => s.leader !== null && s.claimed) && view.nodes.every((n) => n.health === 'up') && view.replacing.length === 0 && view.moves.length === 0
    if (settled && (leadersSpread(view) || Date.now() >= spreadUntil)) return view
    await sleep(200)
  }
}
