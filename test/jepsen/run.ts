/**
 * One fault-injection run: start a cluster, run the workload for `timeSeconds` while the nemesis
 * injects faults, heal everything, measure how long until the cluster serves again, read every
 * key a last time, stop the clients, check the history and the replicas. The data directories
 * (node logs, RocksDB data, history.json) are kept when anything failed.
 */
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { connect } from '../../src/client/index.js'
import { slotOf } from '../../src/meta/slots.js'
import { Random } from '../sim/random.js'
import { checkCorruption, checkFracturedReads, checkLinearizable, checkLostWrites, checkPhantomReads, type Violation } from './checker.js'
import { JepsenCluster } from './cluster.js'
import { Nemesis, type FaultEvent, type NemesisName } from './nemesis.js'
import { checkReplicas, type ShardDigest } from './replicas.js'
import { History, Workload, type HistoryOp } from './workload.js'

/** RunOptions configure one run. */
export interface RunOptions {
  timeSeconds: number
  nemeses: NemesisName[]
  seed: number
  clients: number
  /** clientTimeoutMs: the clients' request timeout (past it an op is unknown); generous by default. */
  clientTimeoutMs: number
  /** electionTicks: the nodes' election timeout in 50 ms ticks (default 10; longer ones, as deployments over slow links use, widen stale-leader windows). */
  electionTicks?: number
  /** blobThresholdBytes: the nodes' NodeConfig.blobThresholdBytes (their default when absent); 1 puts every workload value in blob files. */
  blobThresholdBytes?: number
  /** raftLogFileBytes: the nodes' NodeConfig.raftLogFileBytes (their default when absent); small values rotate the Raft log files often. */
  raftLogFileBytes?: number
  /** logValues: the nodes' NodeConfig.logValues (their default when absent). */
  logValues?: boolean | undefined
  log: (line: string) => void
}

/** RunResult is everything the report prints. */
export interface RunResult {
  seed: number
  dir: string
  kept: boolean
  history: HistoryOp[]
  faults: FaultEvent[]
  violations: Violation[]
  digests: ShardDigest[]
  diskFault: string
  crashes: JepsenCluster['crashes']
  stoppedDrivers: Nemesis['stoppedDrivers']
  startMs: number
  /** healToServeMs: after the last heal, until a write went through with every shard led. */
  healToServeMs: number
  checkMs: number
  searchSteps: number
}

/** recoveryWaitMs: how long after the last heal the cluster gets to serve again before the run fails. */
const recoveryWaitMs = 60_000
/** finalReadMs: how long the final read of one key is retried (all keys: twice that). */
const finalReadMs = 30_000

async function finalReads(cluster: JepsenCluster, history: History, keys: string[]): Promise<Map<string, HistoryOp>> {
  const kv = await connect(cluster.clientEndpoints(), { requestTimeoutMs: 10_000, name: 'jepsen-final' })
  const finals = new Map<string, HistoryOp>()
  try {
    const overall = Date.now() + 2 * finalReadMs
    for (const key of keys) {
      const deadline = Math.min(Date.now() + finalReadMs, overall)
      while (Date.now() < deadline) {
        const op = await history.record(-1, 'get', [{ key, value: undefined }], 15_000, () => kv.get(key))
        if (op.outcome === 'ok') {
          finals.set(key, op)
          break
        }
      }
    }
  } finally {
    await kv.close()
  }
  return finals
}

/** runJepsen performs one run. */
export async function runJepsen(options: RunOptions): Promise<RunResult> {
  const random = new Random(options.seed)
  const cluster = new JepsenCluster({ nodes: 3, shards: 2, seed: options.seed, tickMs: 50, electionTicks: options.electionTicks ?? 10, requestTimeoutMs: 8_000, diskNode: options.nemeses.includes('disk-full') ? 3 : 0, powerLoss: options.nemeses.includes('power-loss'), blobThresholdBytes: options.blobThresholdBytes, raftLogFileBytes: options.raftLogFileBytes, logValues: options.logValues, log: options.log })
  const begin = performance.now()
  let kept = false
  try {
    await cluster.start(random.fork('links').source())
    const startMs = performance.now() - begin
    options.log(`cluster up in ${(startMs / 1000).toFixed(1)} s (${cluster.dir}); disk fault: ${'mount' in cluster.diskFault ? `tmpfs at ${cluster.diskFault.mount}` : cluster.diskFault.refused}`)
    const t0 = performance.now()
    const now = () => Math.round((performance.now() - t0) * 10) / 10
    const history = new History(now)
    const workload = new Workload({ clients: options.clients, groups: 4, keysPerGroup: 3, opTimeoutMs: options.clientTimeoutMs + 10_000, clientRequestTimeoutMs: options.clientTimeoutMs, thinkMs: 20, readers: true, readerTimeoutMs: 2_000 }, history, random.fork('workload'))
    const running = workload.run((i) => cluster.clientEndpoints(i), cluster.clientEndpoints(0))
    const admin = await cluster.admin()
    const hotSlots = [...new Set(workload.keys().map((k) => slotOf(Buffer.from(k))))]
    const nemesis = new Nemesis(cluster, options.nemeses, random.fork('nemesis'), now, admin, options.log, hotSlots)
    await nemesis.run(options.timeSeconds * 1000)
    const healToServeMs = await cluster.waitServing(recoveryWaitMs).catch(() => Infinity)
    // The workload stops before the final reads, so no acknowledged write can follow them.
    workload.stop()
    await running
    await workload.close()
    const finals = await finalReads(cluster, history, workload.keys())
    const view = await cluster.view(admin).catch(() => undefined)
    await admin.close()
    const checkBegin = performance.now()
    const replicas = view === undefined ? { digests: [], violations: [] } : await checkReplicas(cluster, view)
    const linear = checkLinearizable(history.ops, workload.keys())
    const violations = [...linear.violations, ...checkFracturedReads(history.ops), ...checkLostWrites(history.ops, finals), ...checkPhantomReads(history.ops), ...checkCorruption(history.ops), ...replicas.violations]
    if (!Number.isFinite(healToServeMs) || view === undefined) violations.push({ kind: 'unavailable', message: `the cluster did not serve again within ${recoveryWaitMs} ms of the last heal (every shard led and claimed, a write acknowledged, the cluster view readable); replicas not compared`, ops: [] })
    if (finals.size < workload.keys().length) violations.push({ kind: 'lost-write', message: `final reads: only ${finals.size} of ${workload.keys().length} keys could be read within ${finalReadMs} ms each`, ops: [] })
    kept = violations.length > 0
    if (kept) writeFileSync(join(cluster.dir, 'history.json'), JSON.stringify(history.ops.map((o) => ({ ...o, ret: Number.isFinite(o.ret) ? o.ret : null }))))
    return {
      seed: options.seed, dir: cluster.dir, kept, history: history.ops, faults: nemesis.events, violations, digests: replicas.digests,
      diskFault: 'mount' in cluster.diskFault ? `tmpfs ${cluster.diskFault.mount}` : cluster.diskFault.refused, crashes: cluster.crashes, stoppedDrivers: nemesis.stoppedDrivers,
      startMs, healToServeMs, checkMs: performance.now() - checkBegin, searchSteps: linear.steps,
    }
  } catch (error) {
    kept = true
    options.log(`run failed: ${(error as Error).stack ?? error}; data kept in ${cluster.dir}`)
    throw error
  } finally {
    await cluster.stop(kept)
  }
}
