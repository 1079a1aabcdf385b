// The Raft write path without sockets: three RaftDrivers in ONE process over the loopback
// transport (every batch still goes through the message codec), each on its own RocksDB with
// fsync on, 1 KiB entries from 64 concurrent proposers calling driver.propose on the leader.
// What it isolates: the CPU the core, the driver, the log storage, the codec, the KvMachine
// and RocksDB spend per commit, without the TCP stack, the wire protocol or the scheduling of
// four processes on shared cores (bench/raft/run.ts measures all of that). The figure to
// compare is CPU ms per commit (process.cpuUsage: every thread of the process, RocksDB's and
// libuv's included), which is nearly insensitive to the machine's load.
// Latest figures (docs/raftstore.md "Benchmark", round 4, load 4.6-5.5): 0.049-0.057 CPU ms
// per commit, 14 800-23 200 commits/s, 0.09 engine writes per commit over the 3 nodes (one per
// iteration); round 2 at load 15-19: 0.06-0.11 (0.17-0.22 before on-demand snapshots, log
// runs and the binary codec).
// Usage: npm run build && node dist/bench/raft/driver.js [--seconds 4] [--warmup 2] [--proposers 64] [--dir DIR]
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import { RaftDriver } from '../../src/raftstore/driver.js'
import { EngineRaftStorage } from '../../src/raftstore/log-storage.js'
import { RaftLogFiles } from '../../src/raftstore/log-files.js'
import { IntervalTicker } from '../../src/raftstore/ticker.js'
import { LoopbackNetwork } from '../../src/raftstore/transport.js'
import { KvMachine, putCommand } from '../../test/raftstore/kv-machine.js'
import { argument, percentile } from '../lib/common.js'

const GROUP = 1
const IDS = [1, 2, 3]

/** Node is one in-process replica. */
interface Node { engine: RocksDbEngine; driver: RaftDriver }

async function startNodes(root: string): Promise<Map<number, Node>> {
  const network = new LoopbackNetwork()
  const nodes = new Map<number, Node>()
  for (const id of IDS) {
    const engine = new RocksDbEngine({ dir: join(root, `n${id}`), cacheBytes: 8 * 1024 * 1024, memtableBudgetBytes: Number(argument('memtable-mib', '64')) * 1024 * 1024, backgroundThreads: 1 })
    await engine.open()
    await EngineRaftStorage.bootstrap(engine, GROUP, { voters: IDS, learners: [], votersOutgoing: [] })
    const logFiles = await RaftLogFiles.open({ dir: join(root, `n${id}-raft-log`), liveEntries: (groupId) => driver.liveEntries(groupId) })
    const driver: RaftDriver = new RaftDriver({
      nodeId: id,
      engine,
      logFiles,
      transport: network.transport(id),
      ticker: new IntervalTicker(10),
      raft: { electionTimeoutTicks: 50, heartbeatIntervalTicks: 5 },
      limits: { requestTimeoutTicks: 500 },
      compaction: { compactLogEntriesMax: Number(argument('compact-entries', '10000')), logRetainEntries: Number(argument('retain-entries', '1000')) },
    })
    await driver.start()
    await driver.addGroup(GROUP, new KvMachine(() => engine, GROUP))
    nodes.set(id, { engine, driver })
  }
  return nodes
}

/**
 * mainThreadCpuMs is this process's JavaScript thread's user + system CPU from /proc (10 ms
 * resolution, USER_HZ 100): the three drivers' JavaScript, separate from RocksDB's and libuv's
 * threads, which process.cpuUsage() counts too.
 */
function mainThreadCpuMs(): number {
  const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * 10
}

async function waitForLeader(driver: RaftDriver): Promise<void> {
  driver.campaign(GROUP)
  for (let i = 0; i < 500 && driver.status(GROUP).role !== 'leader'; i++) await new Promise((resolve) => setTimeout(resolve, 10))
  if (driver.status(GROUP).role !== 'leader') throw new Error('node 1 did not become leader')
}

/** run keeps `proposers` proposals in flight on `leader` for `seconds`; returns their latencies. */
async function run(leader: RaftDriver, proposers: number, seconds: number, tag: string): Promise<number[]> {
  const value = Buffer.alloc(1024, 0x61)
  const latencies: number[] = []
  const end = performance.now() + seconds * 1000
  await Promise.all(Array.from({ length: proposers }, async (_, worker) => {
    for (let n = 0; performance.now() < end; n++) {
      const start = performance.now()
      await leader.propose(GROUP, putCommand(`${tag}${worker}-${n}`, value))
      latencies.push(performance.now() - start)
    }
  }))
  return latencies.sort((a, b) => a - b)
}

async function main(): Promise<void> {
  const seconds = Number(argument('seconds', '4'))
  const proposers = Number(argument('proposers', '64'))
  const root = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-raft-driver-'))
  const nodes = await startNodes(root)
  try {
    const leader = nodes.get(1)!.driver
    await waitForLeader(leader)
    await run(leader, proposers, Number(argument('warmup', '2')), 'warm')
    const stats = () => IDS.map((id) => ({ ...nodes.get(id)!.driver.stats }))
    const before = stats()
    const cpuBefore = process.cpuUsage()
    const mainBefore = mainThreadCpuMs()
    const latencies = await run(leader, proposers, seconds, 'w')
    const cpu = process.cpuUsage(cpuBefore)
    const main = mainThreadCpuMs() - mainBefore
    const after = stats()
    const commits = latencies.length
    const per = (key: 'iterations' | 'syncWrites' | 'writes' | 'messagesSent') =>
      (after.reduce((sum, s, i) => sum + s[key] - before[i]![key], 0) / commits).toFixed(3)
    console.log(
      `${proposers} proposers: ${(commits / seconds).toFixed(0)} commits/s, ` +
        `${((cpu.user + cpu.system) / 1000 / commits).toFixed(4)} CPU ms/commit (user ${(cpu.user / 1000 / commits).toFixed(4)}, system ${(cpu.system / 1000 / commits).toFixed(4)}; JavaScript thread ${(main / commits).toFixed(4)}), ` +
        `p50 ${percentile(latencies, 50).toFixed(2)} ms, p99 ${percentile(latencies, 99).toFixed(2)} ms; per commit (3 nodes): ` +
        `${per('iterations')} iterations, ${per('syncWrites')} fsyncs, ${per('writes')} writes, ${per('messagesSent')} messages`,
    )
  } finally {
    for (const { driver, engine } of nodes.values()) {
      await driver.close()
      await engine.close()
    }
    rmSync(root, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
