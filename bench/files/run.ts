/**
 * bench:files: file upload and download throughput through the HTTP API with 16 concurrent
 * clients, for 16 KiB, 256 KiB and 4 MiB files, beside two baselines from the same run:
 *   - the disk's sequential write bandwidth divided by the replica count (the bound when every
 *     replica writes to this one disk), for the upload figures;
 *   - etcd storing the 16 KiB files as values with the same 16 clients: 3 members on this
 *     loopback, like distkv's 3 replicas (`--etcd-members 1` for a single, unreplicated member).
 * Because the machine is shared and wall-clock rates swing from run to run, every phase also
 * reports the CPU time of every server process (all nodes, from /proc) per file and per MiB
 * (uploads also split by thread: JavaScript thread, RocksDB's background threads, Node's others),
 * of this process (the clients), and etcd's server CPU per put: those are the figures to steer by.
 *
 * Usage: npm run bench:files [-- --url http://HOST:PORT | --local] [--replicas 3] [--clients 16]
 *          [--mib 128] [--sizes 16,256,4096 (KiB)] [--cpu-prof DIR] [--warmup 4000]
 *          [--etcd-members 3|1|0 (0: no etcd phase)] [--blob-threshold-bytes N] [--log-values true|false] [--small-files-min 16384]
 * Before the timed phases, `--warmup` 16 KiB files are uploaded and downloaded untimed (and as
 * many puts sent to etcd before its phase): a long-running server has long finished compiling
 * the code that serves it, and etcd (Go) never has to, so the timed window should not pay for
 * V8's optimizing compiler. After 512 untimed uploads it still took a few hundred µs of each
 * 16 KiB upload (docs/files.md, round 7); 4000 is the default since then.
 * Without --url it starts a `distkv dev` cluster (3 nodes, 3 replicas) in a temporary
 * directory and uploads through node 1's HTTP front end; `--local` starts
 * `distkv local-server DIR --http` (one replica) instead. `--cpu-prof DIR` makes every server
 * process write a V8 CPU profile to DIR (profile-preload.ts; summarise with
 * `node dist/bench/cluster/profile.js DIR/*.cpuprofile`). A run of all three sizes without
 * --cpu-prof is written to bench/results/files[-local].json.
 *
 * Latest figures (session 11, round 11; docs/files.md "Figures"): 16 KiB uploads 1 538/s at
 * 853 µs of server CPU each, 1.95x a 3-member etcd (789 puts/s at 1 729 µs, a slow run for it);
 * 4 MiB uploads 147.6 MiB/s at 11 ms of server CPU per MiB, 39% of the disk/3 bound, with 3.04
 * bytes written by the disk per byte uploaded (one write per replica).
 */
import { spawn, spawnSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { deviceWrittenBytes, threadCpuDelta, treeCpuMs, treeThreadCpuMs, type ThreadClass, type ThreadCpu } from '../lib/common.js'
import { diskWriteMiBps, findEtcd, startEtcd } from './baselines.js'

const { values: args } = parseArgs({
  options: {
    url: { type: 'string' }, local: { type: 'boolean' }, port: { type: 'string' }, replicas: { type: 'string' }, clients: { type: 'string' }, mib: { type: 'string' },
    sizes: { type: 'string' }, 'cpu-prof': { type: 'string' }, warmup: { type: 'string' }, 'etcd-members': { type: 'string' }, 'small-files-min': { type: 'string' }, 'blob-threshold-bytes': { type: 'string' }, 'log-values': { type: 'string' },
  },
})
const clients = Number(args.clients ?? 16)
const budgetMiB = Number(args.mib ?? 128)
const KiB = 1024
const MiB = 1024 * KiB
const sizes = (args.sizes ?? '16,256,4096').split(',').map((kib) => Number(kib) * KiB)
/** warmupFiles: untimed 16 KiB uploads and downloads before the first phase, and untimed etcd puts before etcd's (JIT, connections, first memtable). */
const warmupFiles = Number(args.warmup ?? 4000)
/**
 * smallFilesMin: files of 64 KiB or less are timed over at least this many uploads (and etcd
 * over as many puts), whatever --mib says. At --mib 32 a 16 KiB phase was 2 048 uploads, about
 * two seconds: etcd's rate in such a window swung 751-1 362 puts/s, and the ratio read 1.4-1.6x
 * where 16 384-upload windows of the same builds read 1.0-1.2x (docs/files.md, round 9).
 */
const smallFilesMin = Number(args['small-files-min'] ?? 16384)
/** etcdMembers: the etcd baseline's member count, 3 (like for like with 3 replicas) unless `--etcd-members 1`; 0 skips the etcd phase (A/B runs of distkv alone). */
const etcdMembers = args['etcd-members'] === '1' ? 1 : args['etcd-members'] === '0' ? 0 : 3
/** profileEnv makes every server process write a V8 CPU profile into --cpu-prof DIR when it exits. */
const profileEnv = args['cpu-prof'] === undefined ? {} : { NODE_OPTIONS: `--import=${new URL('./profile-preload.js', import.meta.url).href}`, DISTKV_BENCH_PROFILE_DIR: args['cpu-prof'] }

/** runParallel runs `count` jobs on `clients` workers and returns the elapsed seconds. */
async function runParallel(count: number, job: (index: number) => Promise<void>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < count) await job(next++)
    }),
  )
  return (performance.now() - started) / 1000
}

/** retriesMax: how often one request is retried after a 503 or 504 (a leader election or a timeout under load) before the run fails; file PUTs of the same bytes are idempotent. */
const retriesMax = 5
/** retried counts the 503/504 answers that were retried, reported with each size's row. */
let retried = 0

function httpOnce(agent: Agent, url: string, method: string, body?: Buffer): Promise<{ status: number; bytes: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-length': String(body.length), 'content-type': 'application/octet-stream' } : {}
    const req = request(url, { method, agent, headers }, (res) => {
      let bytes = 0
      let text = ''
      res.on('data', (part: Buffer) => {
        bytes += part.length
        if (res.statusCode! >= 300 && text.length < 1000) text += part.toString()
      })
      res.on('end', () => resolve({ status: res.statusCode!, bytes, text }))
    })
    req.on('error', reject)
    req.end(body)
  })
}

/** httpCall makes one request, retrying a 503 or 504 with back-off, and returns the body's length. */
async function httpCall(agent: Agent, url: string, method: string, body?: Buffer): Promise<number> {
  for (let attempt = 0; ; attempt++) {
    const { status, bytes, text } = await httpOnce(agent, url, method, body)
    if (status < 300) return bytes
    if ((status !== 503 && status !== 504) || attempt === retriesMax) throw new Error(`${method} ${url}: HTTP ${status} ${text}`)
    retried++
    await new Promise((resolve) => setTimeout(resolve, 100 * 2 ** attempt))
  }
}

/** Server is the front end under test: its URL, the root of its process tree (for CPU time; undefined for --url) and how to stop it. */
interface Server {
  url: string
  pid: number | undefined
  stop: () => Promise<void>
}

async function startLocalHttp(dir: string): Promise<Server> {
  const bin = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
  const child = spawn(process.execPath, [bin, 'local-server', join(dir, 'db'), '--http', '127.0.0.1:0', '--idle-timeout', '0'], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...profileEnv } })
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve))
  const url = /at (http:\/\/\S+?)\/?$/.exec(line)![1]!
  return {
    url,
    pid: child.pid,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    },
  }
}

/** startDevCluster runs `distkv dev` (3 nodes, 3 replicas) until stopped and returns node 1's HTTP URL. */
async function startDevCluster(dir: string): Promise<Server> {
  const bin = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
  // A port base away from the default 7700 so a developer's own dev cluster is not in the way.
  const port = String(args.port ?? 17_000 + Math.floor(Math.random() * 4_000) * 10)
  const child = spawn(process.execPath, [bin, 'dev', '--dir', join(dir, 'dev'), '--port', port, '--no-restart', ...(args['blob-threshold-bytes'] === undefined ? [] : ['--blob-threshold-bytes', args['blob-threshold-bytes']]), ...(args['log-values'] === undefined ? [] : ['--log-values', args['log-values']])], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...profileEnv } })
  const exited = new Promise((resolve) => child.once('exit', resolve))
  const url = await new Promise<string>((resolve, reject) => {
    const lines = createInterface({ input: child.stdout! })
    lines.on('line', (line) => {
      const found = /HTTP API: (http:\/\/\S+)/.exec(line)
      if (found !== null) resolve(found[1]!)
    })
    void exited.then(() => reject(new Error('distkv dev exited before it was ready')))
  })
  return {
    url,
    pid: child.pid,
    stop: async () => {
      child.kill('SIGTERM')
      await exited
    },
  }
}

interface Row {
  size: string
  files: number
  uploadFilesPerSecond: number
  uploadMiBps: number
  downloadFilesPerSecond: number
  downloadMiBps: number
  /** retries: 503/504 answers retried during this size's uploads and downloads. */
  retries: number
  /** upload/downloadServerCpuUsPerFile: CPU time of every server process (all nodes) per file; NaN with --url. */
  uploadServerCpuUsPerFile: number
  downloadServerCpuUsPerFile: number
  /**
   * uploadDiskWritesPerByte: bytes the disk wrote during the uploads per byte uploaded (the
   * device's counter, /proc/diskstats, `sync` before and after: every writer on that disk,
   * which during a phase is the servers). The disk bound assumes one write per replica, i.e.
   * the replica count; each write above it (a second copy, preallocation zeros, LSM compaction)
   * lowers the bound this store can reach.
   */
  uploadDiskWritesPerByte: number
  /** uploadServerThreadsUsPerFile: the upload's server CPU per file split by thread class (user, system µs). */
  uploadServerThreadsUsPerFile?: ThreadCpu
  /** upload/downloadClientCpuUsPerFile: CPU time of this benchmark process (the 16 HTTP clients) per file. */
  uploadClientCpuUsPerFile: number
  downloadClientCpuUsPerFile: number
  /** loadAverage: the 1-minute load average when the size's downloads ended (other work on the machine). */
  loadAverage: number
}

/** Phase is one timed phase's elapsed seconds and CPU milliseconds (servers, this process). */
interface Phase {
  seconds: number
  serverCpuMs: number
  clientCpuMs: number
  /** serverThreads: the servers' CPU split by thread class (undefined with --url). */
  serverThreads?: ThreadCpu
  /** diskWriteBytes: bytes the data directory's disk wrote during the phase (synced before and after; NaN on tmpfs). */
  diskWriteBytes: number
}

/** syncedDeviceWrittenBytes writes back every dirty page (sync), then reads the bench directory's device counter. */
function syncedDeviceWrittenBytes(): number {
  spawnSync('sync')
  return deviceWrittenBytes(dir)
}

async function timed(serverPid: number | undefined, run: () => Promise<number>): Promise<Phase> {
  const server = serverPid === undefined ? Number.NaN : treeCpuMs(serverPid)
  const threads = serverPid === undefined ? undefined : treeThreadCpuMs(serverPid)
  // Dirty pages left by the phase before are written now, not counted in this one.
  const written = syncedDeviceWrittenBytes()
  const client = process.cpuUsage()
  const seconds = await run()
  const used = process.cpuUsage(client)
  return {
    seconds,
    serverCpuMs: serverPid === undefined ? Number.NaN : treeCpuMs(serverPid) - server,
    diskWriteBytes: syncedDeviceWrittenBytes() - written,
    clientCpuMs: (used.user + used.system) / 1000,
    ...(threads === undefined || serverPid === undefined ? {} : { serverThreads: threadCpuDelta(threads, treeThreadCpuMs(serverPid)) }),
  }
}

/** perFile divides a thread split (ms) into µs per file. */
function perFile(cpu: ThreadCpu, count: number): ThreadCpu {
  const out = { ...cpu }
  for (const key of Object.keys(cpu) as ThreadClass[]) out[key] = { user: (cpu[key].user * 1000) / count, system: (cpu[key].system * 1000) / count }
  return out
}

async function benchSize(server: Server, size: number): Promise<Row> {
  const url = server.url
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const count = Math.max(clients * 4, Math.floor((budgetMiB * MiB) / size), size <= 64 * KiB ? smallFilesMin : 0)
  const retriedBefore = retried
  const body = randomBytes(size)
  const name = (i: number): string => `${url}/v1/files/bench/${size}/${i}`
  const up = await timed(server.pid, () => runParallel(count, async (i) => void (await httpCall(agent, name(i), 'PUT', body))))
  const down = await timed(server.pid, () => runParallel(count, async (i) => {
    const bytes = await httpCall(agent, name(i), 'GET')
    if (bytes !== size) throw new Error(`download of ${name(i)} gave ${bytes} bytes`)
  }))
  agent.destroy()
  const mib = (count * size) / MiB
  return {
    size: size >= MiB ? `${size / MiB} MiB` : `${size / KiB} KiB`,
    files: count,
    uploadFilesPerSecond: count / up.seconds,
    uploadMiBps: mib / up.seconds,
    downloadFilesPerSecond: count / down.seconds,
    downloadMiBps: mib / down.seconds,
    retries: retried - retriedBefore,
    uploadServerCpuUsPerFile: (up.serverCpuMs * 1000) / count,
    uploadDiskWritesPerByte: up.diskWriteBytes / (count * size),
    ...(up.serverThreads === undefined ? {} : { uploadServerThreadsUsPerFile: perFile(up.serverThreads, count) }),
    downloadServerCpuUsPerFile: (down.serverCpuMs * 1000) / count,
    uploadClientCpuUsPerFile: (up.clientCpuMs * 1000) / count,
    downloadClientCpuUsPerFile: (down.clientCpuMs * 1000) / count,
    loadAverage: loadavg()[0]!,
  }
}

/** warmUp uploads and downloads `warmupFiles` 16 KiB files, untimed: a fresh cluster's first seconds (JIT, connections, elections settling) cost ~25% more CPU per file than the rest. */
async function warmUp(server: Server): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const body = randomBytes(16 * KiB)
  await runParallel(warmupFiles, async (i) => void (await httpCall(agent, `${server.url}/v1/files/bench/warmup/${i}`, 'PUT', body)))
  await runParallel(warmupFiles, async (i) => void (await httpCall(agent, `${server.url}/v1/files/bench/warmup/${i}`, 'GET')))
  agent.destroy()
}

/** EtcdFigures: etcd's 16 KiB puts per second and its server CPU time per put. */
interface EtcdFigures {
  putsPerSecond: number
  serverCpuUsPerPut: number
}

async function benchEtcd(dir: string, count: number): Promise<EtcdFigures | undefined> {
  const binary = findEtcd()
  if (binary === undefined) return undefined
  const etcd = await startEtcd(binary, dir, etcdMembers === 1 ? 1 : 3)
  try {
    const value = randomBytes(16 * KiB)
    await runParallel(warmupFiles, async (i) => void (await etcd.client.put(`warmup/${i}`).value(value)))
    const cpuBefore = etcd.cpuMs()
    const seconds = await runParallel(count, async (i) => void (await etcd.client.put(`bench/${i}`).value(value)))
    return { putsPerSecond: count / seconds, serverCpuUsPerPut: ((etcd.cpuMs() - cpuBefore) * 1000) / count }
  } finally {
    await etcd.stop()
  }
}

function gitHead(): string | undefined {
  const result = spawnSync('git', ['rev-parse', '--short', 'HEAD'], { encoding: 'utf8' })
  return result.status === 0 ? result.stdout.trim() : undefined
}

const dir = mkdtempSync(join(tmpdir(), 'distkv-bench-files-'))
try {
  const replicas = Number(args.replicas ?? (args.local === true ? 1 : 3))
  const disk = diskWriteMiBps(dir, 256)
  const bound = disk / replicas
  console.log(`disk sequential write: ${disk.toFixed(0)} MiB/s; / ${replicas} replica(s) = ${bound.toFixed(0)} MiB/s upload bound`)
  const server: Server = args.url !== undefined ? { url: args.url, pid: undefined, stop: async () => undefined } : args.local === true ? await startLocalHttp(dir) : await startDevCluster(dir)
  console.log(`target: ${args.url !== undefined ? args.url : args.local === true ? 'distkv local-server --http (1 replica)' : `distkv dev (3 nodes, 3 replicas) at ${server.url}`}, ${clients} clients`)
  const rows: Row[] = []
  try {
    await warmUp(server)
    for (const size of sizes) {
      const row = await benchSize(server, size)
      rows.push(row)
      console.log(
        `${row.size.padStart(8)}: upload ${row.uploadFilesPerSecond.toFixed(0).padStart(6)} files/s ${row.uploadMiBps.toFixed(1).padStart(7)} MiB/s (${((row.uploadMiBps / bound) * 100).toFixed(0)}% of bound)` +
          ` | download ${row.downloadFilesPerSecond.toFixed(0).padStart(6)} files/s ${row.downloadMiBps.toFixed(1).padStart(7)} MiB/s` +
          (row.retries > 0 ? ` | ${row.retries} retried 503/504s` : ''),
      )
      const perMiB = (usPerFile: number) => ((usPerFile * MiB) / size / 1000).toFixed(0)
      console.log(
        `          server CPU: upload ${row.uploadServerCpuUsPerFile.toFixed(0)} us/file (${perMiB(row.uploadServerCpuUsPerFile)} ms/MiB)` +
          ` | download ${row.downloadServerCpuUsPerFile.toFixed(0)} us/file (${perMiB(row.downloadServerCpuUsPerFile)} ms/MiB)` +
          ` | clients ${row.uploadClientCpuUsPerFile.toFixed(0)} / ${row.downloadClientCpuUsPerFile.toFixed(0)} us/file | load ${row.loadAverage.toFixed(1)}`,
      )
      const threads = row.uploadServerThreadsUsPerFile
      if (threads !== undefined) {
        // Where the upload's server CPU goes, per thread class: the figure that says which layer to work on.
        const split = (Object.keys(threads) as ThreadClass[]).filter((key) => threads[key].user + threads[key].system > 0)
        console.log(`          upload CPU by thread (user+sys us/file): ${split.map((key) => `${key} ${threads[key].user.toFixed(0)}+${threads[key].system.toFixed(0)}`).join(' | ')}`)
      }
      if (!Number.isNaN(row.uploadDiskWritesPerByte)) {
        console.log(`          upload disk writes: ${row.uploadDiskWritesPerByte.toFixed(2)} bytes per byte uploaded (the device, synced before and after; ${replicas} if each replica wrote it once)`)
      }
    }
  } finally {
    await server.stop()
  }
  const small = rows[0]!
  const etcd = small.size !== '16 KiB' || etcdMembers === 0 ? undefined : await benchEtcd(dir, small.files)
  if (etcd === undefined) console.log('etcd: not measured (no 16 KiB row, or etcd-server could not be installed)')
  else {
    console.log(`etcd (${etcdMembers} member${etcdMembers === 1 ? "" : "s"}) 16 KiB puts: ${etcd.putsPerSecond.toFixed(0)}/s; distkv 16 KiB uploads: ${small.uploadFilesPerSecond.toFixed(0)}/s = ${(small.uploadFilesPerSecond / etcd.putsPerSecond).toFixed(2)}x etcd (target >= 2x)`)
    console.log(`server CPU per 16 KiB write: etcd ${etcd.serverCpuUsPerPut.toFixed(0)} us/put, distkv ${small.uploadServerCpuUsPerFile.toFixed(0)} us/file`)
  }
  const large = rows[rows.length - 1]!
  if (large.size === '4 MiB') console.log(`4 MiB uploads: ${large.uploadMiBps.toFixed(1)} MiB/s = ${((large.uploadMiBps / bound) * 100).toFixed(0)}% of the disk bound (target >= 50%)`)
  const results = join(fileURLToPath(new URL('../../../bench/results/', import.meta.url)))
  mkdirSync(results, { recursive: true })
  // A partial or profiled run is not comparable with the recorded ones, so it is not recorded.
  if (args.sizes === undefined && args['cpu-prof'] === undefined) writeFileSync(join(results, args.local === true ? 'files-local.json' : 'files.json'), JSON.stringify({ at: new Date().toISOString(), commit: gitHead(), target: args.local === true ? 'local' : args.url ?? 'dev', clients, warmupFiles, replicas, diskMiBps: disk, boundMiBps: bound, etcdMembers, etcdPutsPerSecond: etcd?.putsPerSecond, etcdServerCpuUsPerPut: etcd?.serverCpuUsPerPut, rows }, null, 2) + '\n')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
