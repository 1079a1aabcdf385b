/**
 * bench:files nodes: where a 16 KiB upload's server CPU goes, node by node and thread by thread,
 * and how much of it depends on where the shard leaders are. bench/files/run.ts sums every
 * server process; this probe splits the same figure per node process (node 1 is the HTTP front
 * end the uploads go through, and a replica like the others) and per thread class (the
 * JavaScript thread, RocksDB's background threads, Node's other threads: V8's compiler and GC
 * helpers and the libuv pool), over several rounds of one fresh `distkv dev` cluster.
 *
 * `--leaders front` moves every shard's leadership to node 1 before each round (the proxy then
 * calls its shard leaders in process), `--leaders away` moves it to nodes 2 and 3 (every group
 * travels to a remote leader: the proxy -> leader hop), `--leaders alternate` takes turns, round
 * by round, so the two placements are compared back to back on the same cluster. The meta
 * leader's balancing moves one leadership back per 10 s at most, so each round is short and
 * reports the placement it ended with. `--leaders spread` (the default) leaves them where
 * balancing put them.
 *
 * Usage: node dist/bench/files/nodes.js [--rounds 6] [--files 3000] [--warmup 3000] [--clients 16]
 *          [--leaders spread|front|away|alternate]
 * Figures: docs/files.md, "Round 7".
 */
import { execFileSync, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { threadCpuDelta, treeThreadCpuMs, type ThreadCpu } from '../lib/common.js'

const { values: args } = parseArgs({
  options: { rounds: { type: 'string' }, files: { type: 'string' }, warmup: { type: 'string' }, clients: { type: 'string' }, leaders: { type: 'string' } },
})
const rounds = Number(args.rounds ?? 6)
const filesPerRound = Number(args.files ?? 3000)
const warmupFiles = Number(args.warmup ?? 3000)
const clients = Number(args.clients ?? 16)
const leaders = args.leaders ?? 'spread'
if (!['spread', 'front', 'away', 'alternate'].includes(leaders)) throw new Error(`--leaders must be spread, front, away or alternate, got ${leaders}`)
const bin = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
const body = randomBytes(16 * 1024)
const agent = new Agent({ keepAlive: true, maxSockets: clients })

function http(url: string, method: string, payload?: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const headers = payload === undefined ? {} : { 'content-length': String(payload.length), 'content-type': 'application/octet-stream' }
    const req = request(url, { method, agent, headers }, (res) => {
      let text = ''
      res.on('data', (part: Buffer) => (text += part.toString()))
      res.on('end', () => (res.statusCode! < 300 ? resolve(text) : reject(new Error(`${method} ${url}: HTTP ${res.statusCode} ${text}`))))
    })
    req.on('error', reject)
    req.end(payload)
  })
}

/** upload PUTs `count` 16 KiB files from `clients` keep-alive clients (names reused: a round replaces the last one's files). */
async function upload(base: string, count: number, prefix: string): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < count) await http(`${base}/v1/files/bench/${prefix}/${next++ % 4096}`, 'PUT', body)
  }))
  return count / ((performance.now() - started) / 1000)
}

/** childPids lists the direct children of `pid` (the dev supervisor's node processes), in start order. */
function childPids(pid: number): number[] {
  return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number).sort((a, b) => a - b)
}

async function leaderMap(base: string): Promise<Map<number, number>> {
  const view = JSON.parse(await http(`${base}/v1/cluster`, 'GET')) as { shards?: Array<{ id: number; leader: number }> }
  return new Map((view.shards ?? []).map((shard) => [shard.id, shard.leader]))
}

function place(devDir: string, shards: number[], front: boolean): void {
  for (const shard of shards) {
    // away: shards alternate between nodes 2 and 3, so neither leads them all.
    const node = front ? 1 : 2 + (shard % 2)
    try {
      execFileSync(process.execPath, [bin, 'admin', 'transfer-leader', '--dir', devDir, '--shard', String(shard), '--node', String(node)], { stdio: 'ignore', timeout: 10_000 })
    } catch {
      // Already there, or an election in progress: the round reports the placement it got.
    }
  }
}

const us = (ms: number): number => Math.round((ms * 1000) / filesPerRound)
const cpuOf = (t: ThreadCpu): number => t.main.user + t.main.system + t.rocksdb.user + t.rocksdb.system + t.workers.user + t.workers.system

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-bench-nodes-'))
  const devDir = join(dir, 'dev')
  const port = String(17_000 + Math.floor(Math.random() * 4_000) * 10)
  const child = spawn(process.execPath, [bin, 'dev', '--dir', devDir, '--port', port, '--no-restart'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  try {
    const base = await new Promise<string>((resolve, reject) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const found = /HTTP API: (http:\/\/\S+)/.exec(line)
        if (found !== null) resolve(found[1]!)
      })
      void exited.then(() => reject(new Error('distkv dev exited before it was ready')))
    })
    const nodes = childPids(child.pid!)
    await upload(base, warmupFiles, 'warmup')
    console.log(`distkv dev (${nodes.length} nodes), ${clients} clients, ${filesPerRound} 16 KiB uploads per round after ${warmupFiles} untimed; server CPU in us per upload (user+sys), leaders as shard:node`)
    for (let round = 0; round < rounds; round++) {
      const front = leaders === 'front' || (leaders === 'alternate' && round % 2 === 0)
      if (leaders !== 'spread') {
        place(devDir, [...(await leaderMap(base)).keys()], front)
        await upload(base, 300, 'settle') // untimed: the first writes after a transfer wait for the new leader's first commit
      }
      const before = nodes.map((pid) => treeThreadCpuMs(pid))
      const rate = await upload(base, filesPerRound, `r${round}`)
      const split = nodes.map((pid, i) => threadCpuDelta(before[i]!, treeThreadCpuMs(pid)))
      const placed = [...(await leaderMap(base))].map(([shard, node]) => `${shard}:${node}`).join(' ')
      const total = split.reduce((sum, t) => sum + cpuOf(t), 0)
      const mainTotal = split.reduce((sum, t) => sum + t.main.user + t.main.system, 0)
      const perNode = split.map((t, i) => `n${i + 1} ${us(t.main.user + t.main.system)}/${us(t.rocksdb.user + t.rocksdb.system)}/${us(t.workers.user + t.workers.system)}`).join('  ')
      console.log(`round ${round}: ${us(total)} us (main threads ${us(mainTotal)}) | main/rocksdb/workers: ${perNode} | ${Math.round(rate)} files/s | leaders ${placed} | load ${loadavg()[0]!.toFixed(1)}`)
    }
  } finally {
    agent.destroy()
    child.kill('SIGTERM')
    await exited
    rmSync(dir, { recursive: true, force: true })
  }
}

await main()
