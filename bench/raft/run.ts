// Raft throughput and latency: one 3-replica group in 3 node processes on loopback TCP,
// RocksDB with fsync on every Ready that must sync, 1 KiB entries, proposed by 1 and by 64
// concurrent proposers on the leader. The baseline is the raw fsync rate of the same disk
// (a loop of small write + fdatasync) measured in the same run; the ratios say how well group
// commit and pipelining amortise the fsync. Target: at 64 proposers >= 5x the disk's fsyncs/s
// with p99 < 20 ms. Also reported: CPU ms per commit summed over the three processes (raw and
// net of their idle rate; far less sensitive to the machine's load than rates), and the
// drivers' iterations, fsyncs, writes and messages per commit.
// Raft messages travel on one-way peer streams (--transport stream, the default) or as
// raft.messages requests (--transport requests); each proposal is one kv.propose request, or
// with --client coalesce src/client's Coalescer gathers one turn's puts into a kv.multi frame
// (each put still its own Raft entry and result).
// Also per node (leader first, from the fixture's kv.status): GC pause ms per 1000 commits, the
// longest pauses, the event loop's longest delay and the p99/max of its synced engine writes
// (where the commit tail comes from); and the proposers' own process (CPU per commit, loop
// delay), which shares the 2 cores. --value-bytes sets the entry size (1048576: file chunks).
// Per node it also splits the CPU per commit by thread (/proc/PID/task): the JavaScript thread,
// RocksDB's flush and compaction threads, and the rest (V8's compiler and GC helpers, libuv's
// pool with its fdatasyncs). Compaction depends on how much data the database already holds
// when the window starts, not on the change measured (round 5 saw 2-13 us per node per commit
// for the same build), so compare the main-thread figures first.
// --defer-commits off turns the driver's deferCommitAppends off (commit-only appends leave at once).
// Round 4's last step (deferCommitAppends, 17:50-18:05 UTC, load 3.4-6.6): 1 proposer 1.00-1.16
// CPU ms/commit over the 3 nodes against 1.32-1.48 off (4.1 iterations, 4.0 writes, 4.2 messages
// per commit against 5.9, 5.9, 8.1); 16 proposers 108-135 us against 128-158; 64 proposers
// 56-81 us against 65-83 (messages per commit 0.07 against 0.13).
// Earlier figures (docs/raftstore.md "Benchmark", round 4, final build, load 3.5-4.6): 64
// proposers 14 985-18 068 commits/s (2.0-2.4x the disk's fsyncs/s), 0.066-0.076 CPU ms/commit
// over the 3 nodes (leader 26-30 us, followers 20-24 us), 77-86 us with the proposers'
// process, p50 2.3-3.2 ms, p99 16.7-26.5 ms (it tracks the nodes' synced-write p99, 12-20 ms:
// the shared disk's fsync tail); 1 proposer p50 0.93-1.02 ms. Round 3 at idle: 102-109 us,
// leader 42-45 us. CPU-bound: the 5x target (~35 000/s) would need <= ~45-55 us over all
// processes. 1 MiB values (--value-bytes 1048576 --proposers 8): ~8-9 ms of CPU per commit
// per node, mostly RocksDB writing each MiB twice and flushing it.
// Round 5 (docs/raftstore.md, 19:56-20:07 UTC, load 4.7-9.6): 64 proposers 66-110 us over all four
// processes; per node and commit the main thread 15-27 us (leader) / 10-20 (followers), RocksDB
// flush 1-2.4, compaction 2-13 (the applied data's L0->L1, varies with the database's age),
// other threads 2-6; raftstore and the core ~1-1.5 us of it. --client coalesce: the proposers'
// process 6-10 us against 9-13.
// Usage: npm run build && node dist/bench/raft/run.js [--seconds 3] [--warmup 6] [--proposers 1,64] [--repeat N] [--client coalesce,request (default; either alone)]
//        [--transport stream|requests] [--value-bytes 1024] [--compact-soft N] [--defer-commits on|off] [--dir DIR]
//        (RAFTSTORE_NODE_EXEC_ARGS="--cpu-prof --cpu-prof-dir=DIR" or "--perf-basic-prof" profiles the nodes)
import { spawnSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { Coalescer, newOpId } from '../../src/client/coalesce.js'
import { MultiKind } from '../../src/local/multi.js'
import { findLeader, freePorts, spawnNode, stopNode, type NodeProcess } from '../../test/raftstore/fixtures/processes.js'
import { argument, deviceWrittenBytes, fsyncRate, percentile } from '../lib/common.js'

/** IDLE_PROBE_MS: how long the idle CPU rate is measured (/proc times have 10 ms resolution). */
const IDLE_PROBE_MS = 2000
/** CLOCK_TICKS_PER_SECOND is USER_HZ, the unit of /proc/PID/stat times (100 on every Linux ABI Node supports). */
const CLOCK_TICKS_PER_SECOND = 100

/** processCpuMs reads user + system CPU time of one node process from /proc (load-insensitive, unlike rates). */
function processCpuMs(node: NodeProcess): number {
  // Fields after the parenthesised command name: utime and stime are the 12th and 13th.
  const stat = readFileSync(`/proc/${node.child.pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
}

/** ThreadCpu is one node process's CPU ms by kind of thread (/proc/PID/task; thread names from comm). */
interface ThreadCpu { main: number; flush: number; compaction: number; other: number }

/**
 * threadCpuMs splits a node's CPU by thread: the JavaScript (main) thread, RocksDB's flush
 * ("rocksdb:high") and compaction ("rocksdb:low") threads, and the rest (V8's compiler and GC
 * helpers, libuv's pool running fdatasync). A thread that exited in between is not counted.
 */
function threadCpuMs(node: NodeProcess): ThreadCpu {
  const pid = node.child.pid!
  const out: ThreadCpu = { main: 0, flush: 0, compaction: 0, other: 0 }
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    let comm: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim()
    } catch {
      continue
    }
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const ms = ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
    const kind: keyof ThreadCpu = Number(tid) === pid ? 'main' : comm === 'rocksdb:high' ? 'flush' : comm === 'rocksdb:low' ? 'compaction' : 'other'
    out[kind] += ms
  }
  return out
}

/** threadSummary is, per node (leader first), µs per commit on each kind of thread: main / flush / compaction / other. */
function threadSummary(before: ThreadCpu[], after: ThreadCpu[], commits: number): string {
  return after.map((a, i) => {
    const b = before[i]!
    const us = (key: keyof ThreadCpu) => (((a[key] - b[key]) * 1000) / commits).toFixed(1)
    return `${us('main')} / ${us('flush')} / ${us('compaction')} / ${us('other')}`
  }).join(' | ')
}

/** cpuMs sums processCpuMs over the node processes. */
function cpuMs(nodes: Iterable<NodeProcess>): number {
  let ms = 0
  for (const node of nodes) ms += processCpuMs(node)
  return ms
}

/** DriverCounts are the RaftDriver stats the bench reports per commit, summed over the nodes. */
interface DriverCounts { iterations: number; writes: number; syncWrites: number; messagesSent: number }

/** Pauses are a node's GC pauses (cumulative) and its event-loop delay since the previous kv.status (fixtures/node-process.ts). */
interface Pauses { minorCount: number; minorMs: number; majorCount: number; majorMs: number; minorMaxMs: number; majorMaxMs: number; loopMaxMs: number; loopP99Ms: number; syncP99Ms: number; syncMaxMs: number }

/** NodeStatus is what the bench reads from every node's kv.status, leader first. */
interface NodeStatus { counts: DriverCounts; pauses: Pauses[] }

/** driverCounts sums the nodes' driver stats (kv.status) and keeps each node's pauses (the leader's first). */
async function driverCounts(nodes: Iterable<NodeProcess>, leader: NodeProcess): Promise<NodeStatus> {
  const sum: DriverCounts = { iterations: 0, writes: 0, syncWrites: 0, messagesSent: 0 }
  const pauses: Pauses[] = []
  for (const node of [leader, ...[...nodes].filter((n) => n !== leader)]) {
    const { stats, pauses: p } = (await node.client.request('kv.status', {})) as { stats: DriverCounts; pauses: Pauses }
    for (const key of Object.keys(sum) as Array<keyof DriverCounts>) sum[key] += stats[key]
    pauses.push(p)
  }
  return { counts: sum, pauses }
}

/** pauseSummary is, per node (leader first), GC ms per 1000 commits (scavenge + mark-compact), the longest GC pause and the event loop's max delay. */
function pauseSummary(before: Pauses[], after: Pauses[], commits: number): string {
  return after.map((a, i) => {
    const b = before[i]!
    const per1000 = (ms: number) => ((ms * 1000) / commits).toFixed(1)
    return `GC ${per1000(a.minorMs - b.minorMs)}+${per1000(a.majorMs - b.majorMs)} ms/1000 commits (${a.minorCount - b.minorCount}+${a.majorCount - b.majorCount} pauses, longest ${a.minorMaxMs.toFixed(1)}/${a.majorMaxMs.toFixed(1)} ms), loop max ${a.loopMaxMs.toFixed(0)} ms, synced write p99 ${a.syncP99Ms.toFixed(1)} max ${a.syncMaxMs.toFixed(1)} ms`
  }).join(' | ')
}

interface Figures {
  proposers: number
  perSecond: number
  p50Ms: number
  p99Ms: number
  errors: Map<string, number>
}

/** PROPOSE_TIMEOUT_MS bounds one proposal's wait (the node's own request timeout is 5 s). */
const PROPOSE_TIMEOUT_MS = 10_000

/** Propose sends one put to the leader and resolves once it is applied there. */
type Propose = (key: string, value: Buffer) => Promise<unknown>

/**
 * proposer returns how the bench's proposers reach the leader: `request` is one kv.propose
 * request per put; `coalesce` is src/client's Coalescer, which gathers the puts made in one
 * event-loop turn into one kv.multi frame, each put still its own proposal (its own Raft entry)
 * with its own result, as a client library multiplexing its callers on one connection does.
 */
function proposer(leader: NodeProcess, mode: string): Propose {
  if (mode === 'request') return (key, value) => leader.client.request('kv.propose', { key, value }, { timeoutMs: PROPOSE_TIMEOUT_MS })
  if (mode !== 'coalesce') throw new Error(`--client must be request or coalesce, got ${mode}`)
  const coalescer = new Coalescer((ops, deadline) => leader.client.request('kv.multi', { ops }, { timeoutMs: Math.max(1, deadline - Date.now()) }))
  return (key, value) => coalescer.submit([MultiKind.put, newOpId(), Buffer.from(key), value, true], Date.now() + PROPOSE_TIMEOUT_MS)
}

/** run keeps `proposers` proposals in flight on the leader for `seconds`. */
async function run(propose: Propose, proposers: number, seconds: number, valueBytes: number): Promise<Figures> {
  const value = Buffer.alloc(valueBytes, 0x61)
  const latencies: number[] = []
  const errors = new Map<string, number>()
  const end = performance.now() + seconds * 1000
  await Promise.all(Array.from({ length: proposers }, async (_, worker) => {
    for (let n = 0; performance.now() < end; n++) {
      const start = performance.now()
      try {
        await propose(`w${worker}-${n}`, value)
        latencies.push(performance.now() - start)
      } catch (error) {
        const code = (error as { code?: string }).code ?? 'other'
        errors.set(code, (errors.get(code) ?? 0) + 1)
      }
    }
  }))
  latencies.sort((a, b) => a - b)
  return { proposers, perSecond: latencies.length / seconds, p50Ms: percentile(latencies, 50), p99Ms: percentile(latencies, 99), errors }
}

async function main(): Promise<void> {
  const seconds = Number(argument('seconds', '3'))
  // --value-bytes: each proposal's value (1 KiB by default; 1 MiB is a file chunk's size).
  const valueBytes = Number(argument('value-bytes', '1024'))
  const root = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-raft-'))
  const nodes = new Map<number, NodeProcess>()
  try {
    console.log(`disk baseline: ${fsyncRate(root, Math.min(seconds, 2)).toFixed(0)} write+fdatasync/s in ${root} (and again around every phase)`)
    const ids = [1, 2, 3]
    const portList = await freePorts(6)
    const ports = Object.fromEntries(ids.map((id, i) => [String(id), portList[i]!]))
    // --transport stream (default): Raft messages on one-way peer streams; requests: raft.messages requests.
    const transport = argument('transport', 'stream')
    if (transport !== 'stream' && transport !== 'requests') throw new Error(`--transport must be stream or requests, got ${transport}`)
    const streamPorts = Object.fromEntries(ids.map((id, i) => [String(id), portList[3 + i]!]))
    // --compact-soft N: the nodes' compactLogEntriesSoft (10000, = compactLogEntriesMax, compacts as before round 4).
    const compactSoft = argument('compact-soft', '')
    const compaction = compactSoft === '' ? {} : { compactLogEntriesSoft: Number(compactSoft) }
    // --defer-commits off: every commit-only append leaves at once (as before round 4's last step).
    const deferCommits = argument('defer-commits', 'on')
    const defer = deferCommits === 'off' ? { deferCommitAppends: false } : {}
    for (const id of ids) nodes.set(id, await spawnNode(id, join(root, `n${id}`), ports, { ...(transport === 'stream' ? { streamPorts } : {}), ...compaction, ...defer }))
    let leader = nodes.get(await findLeader(nodes))!
    // Warm-up: connections, RocksDB memtables, and the JIT. Functions that run once per driver
    // iteration (iterate, appendOps, the codecs) reach TurboFan only after ~10 s of process
    // time at 64 proposers (V8 --log-function-events), and compiling them costs ~30 us per
    // commit on the JIT threads while it lasts: a one-time cost a long-running node never pays
    // again, so it is kept out of the measured window.
    // Both ways by default: coalesce is what src/client does unless told not to (RemoteKV's
    // `coalesce` option), request is one frame and one socket write per proposal.
    const clients = argument('client', 'coalesce,request').split(',')
    await run(proposer(leader, clients[0]!), 64, Number(argument('warmup', '6')), valueBytes)
    const idleBefore = cpuMs(nodes.values())
    await new Promise((resolve) => setTimeout(resolve, IDLE_PROBE_MS))
    const idlePerSecond = ((cpuMs(nodes.values()) - idleBefore) * 1000) / IDLE_PROBE_MS
    console.log(`idle: ${idlePerSecond.toFixed(0)} CPU ms/s (3 processes: ticks, heartbeats)`)
    // --repeat N runs every configuration N times (interleaved) and ends with the medians: on a
    // shared host one run's ratio swings with the disk's fsync rate of that minute.
    const repeat = Number(argument('repeat', '1'))
    const once = argument('proposers', '1,64').split(',').map(Number).flatMap((proposers) => (proposers === 1 ? ['request'] : clients).map((client) => ({ proposers, client })))
    const configurations = Array.from({ length: repeat }, () => once).flat()
    const results = new Map<string, Array<{ ratio: number; perSecond: number; p99Ms: number; cpuUs: number }>>()
    for (const { proposers, client } of configurations) {
      // A host pause longer than an election timeout can move the leader: follow it (the
      // proposers of a phase stay on the leader they started with; a move shows as errors).
      leader = nodes.get(await findLeader(nodes))!
      // The disk's rate just before and just after the phase (the nodes idle): the ratio is
      // taken against their mean, so a disk that slows or speeds up mid-run does not skew it.
      const fsyncsBefore = fsyncRate(root, 1)
      const statusBefore = await driverCounts(nodes.values(), leader)
      const countsBefore = statusBefore.counts
      const cpuBefore = cpuMs(nodes.values())
      const byNodeBefore = [...nodes.values()].map(processCpuMs)
      spawnSync('sync')
      const writtenBefore = deviceWrittenBytes(root)
      const leaderFirst = [leader, ...[...nodes.values()].filter((n) => n !== leader)]
      const threadsBefore = leaderFirst.map(threadCpuMs)
      const selfBefore = process.cpuUsage()
      // This process's own stalls delay the replies it timestamps, so they count in p99 too.
      const selfLoop = monitorEventLoopDelay({ resolution: 1 })
      selfLoop.enable()
      const f = await run(proposer(leader, client), proposers, seconds, valueBytes)
      selfLoop.disable()
      const self = process.cpuUsage(selfBefore)
      const commits = Math.max(1, f.perSecond * seconds)
      const cpu = cpuMs(nodes.values()) - cpuBefore
      // The proposers' own process (this one) shares the 2 cores: its CPU counts against the target too.
      const selfUs = (self.user + self.system) / commits
      // Raw CPU per commit of each process, leader first (10 ms /proc resolution: coarse at low rates).
      const byNode = [...nodes.values()].map((node, i) => ({ leader: node === leader, us: ((processCpuMs(node) - byNodeBefore[i]!) * 1000) / commits }))
      const split = byNode.sort((a, b) => Number(b.leader) - Number(a.leader)).map((n) => n.us.toFixed(0)).join(' / ')
      const cpuPerCommit = cpu / commits
      // Net of the idle rate: what the commits themselves cost, comparable across commit rates.
      const netPerCommit = (cpu - idlePerSecond * seconds) / commits
      const threadsAfter = leaderFirst.map(threadCpuMs)
      const statusAfter = await driverCounts(nodes.values(), leader)
      // The disk's writes during the phase (every writer on it: here the nodes), dirty pages included.
      spawnSync('sync')
      const writtenPerCommit = (deviceWrittenBytes(root) - writtenBefore) / commits
      const counts = statusAfter.counts
      const per = (key: keyof DriverCounts) => ((counts[key] - countsBefore[key]) / commits).toFixed(2)
      const fsyncsAfter = fsyncRate(root, 1)
      const diskRate = (fsyncsBefore + fsyncsAfter) / 2
      const key = `${proposers} proposers (${client})`
      const list = results.get(key) ?? []
      list.push({ ratio: f.perSecond / diskRate, perSecond: f.perSecond, p99Ms: f.p99Ms, cpuUs: cpuPerCommit * 1000 + selfUs })
      results.set(key, list)
      console.log(
        `${String(proposers).padStart(2)} proposers (${client}): ${f.perSecond.toFixed(0)} commits/s (${(f.perSecond / diskRate).toFixed(2)}x disk fsyncs/s: ${fsyncsBefore.toFixed(0)} before, ${fsyncsAfter.toFixed(0)} after), ` +
          `${cpuPerCommit.toFixed(3)} CPU ms/commit (3 processes; ${netPerCommit.toFixed(3)} net of idle; leader / followers ${split} us; proposers' process ${selfUs.toFixed(0)} us; all 4 processes ${(cpuPerCommit * 1000 + selfUs).toFixed(0)} us), ` +
          `p50 ${f.p50Ms.toFixed(2)} ms, p99 ${f.p99Ms.toFixed(2)} ms; per commit (3 nodes): ${writtenPerCommit.toFixed(0)} bytes written by the disk (${valueBytes}-byte values), ${per('iterations')} iterations, ${per('syncWrites')} fsyncs, ${per('writes')} writes, ${per('messagesSent')} messages; proposers' loop max ${(selfLoop.max / 1e6).toFixed(0)} ms; threads us/commit (main / flush / compaction / other, leader first): ${threadSummary(threadsBefore, threadsAfter, commits)}; nodes: ${pauseSummary(statusBefore.pauses, statusAfter.pauses, commits)}${f.errors.size > 0 ? `, errors ${JSON.stringify(Object.fromEntries(f.errors))}` : ''}`,
      )
    }
    if (repeat > 1) {
      // The middle value, or the mean of the middle two (percentile() would take the upper one:
      // the better rate but the worse p99 of a pair, which is how --repeat 2 used to report).
      const median = (values: number[]) => {
        const sorted = [...values].sort((a, b) => a - b)
        const middle = sorted.length >> 1
        return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2
      }
      for (const [key, list] of results) {
        console.log(
          `median of ${list.length}, ${key}: ${median(list.map((r) => r.perSecond)).toFixed(0)} commits/s, ${median(list.map((r) => r.ratio)).toFixed(2)}x disk fsyncs/s ` +
            `(runs ${list.map((r) => r.ratio.toFixed(2)).join(', ')}), p99 ${median(list.map((r) => r.p99Ms)).toFixed(2)} ms (runs ${list.map((r) => r.p99Ms.toFixed(1)).join(', ')}), all 4 processes ${median(list.map((r) => r.cpuUs)).toFixed(0)} us/commit`,
        )
      }
    }
  } finally {
    await Promise.all([...nodes.values()].map((node) => stopNode(node, 'SIGTERM')))
    rmSync(root, { recursive: true, force: true })
  }
}

main().catch((error) => {
  console.error(error)
  process.exit(1)
})
