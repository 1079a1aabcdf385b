/**
 * bench:local: local-mode throughput against its baselines, measured in the same run.
 *
 *   (a) distkv: 4 processes, each `open(dir)`, 64 operations in flight each; sync puts
 *       (the default), `sync: false` puts, and gets;
 *   (b) rave-level on the same workload (4 processes sharing one LevelDB through a leader);
 *   (c) the raw RocksDB engine inside one process (4 x 64 in flight): the ceiling;
 *   (d) the wire alone: the same requests to a WireServer that answers without storage,
 *       which shows how much of distkv's cost is the protocol and how much is the store.
 *
 * Usage: npm run bench:local [-- --keys 20000 --gets 20000 --processes 4 --inflight 64]
 *        [--rounds 2] [--only distkv] [--dir DIR (use, and do not stop, the distkv server already on DIR)]
 *        [--cpu-prof DIR (workers write CPU profiles there)]
 * Each figure is total operations / wall time from "go" to the last worker's reply. distkv and
 * rave-level alternate for `--rounds` rounds and the best round of each is kept, so that load
 * from other programs on the machine hurts both alike. Raw sync puts are not measured: one
 * fsync per put makes them take minutes and no target depends on them. The run ends with the
 * target rows as a Markdown table (the one docs/local-mode.md keeps).
 *
 * Latest (`npx tsc -p . && node dist/bench/local/run.js`, 2 shared vCPUs, load average 4.5-5.7,
 * build with binary kv.multi frames; CPU us/op summed over every process; docs/local-mode.md
 * "Throughput" has both runs and the A/B against the previous build):
 *   sync puts 43,708-52,350/s (21.5-22.4 us)  vs rave-level unsynced puts 29,747-30,654/s (24-30 us)
 *   sync: false puts 85,838-131,449/s (12.0-14.1 us)
 *   gets 61,238-85,475/s (18.0-19.5 us)       vs rave-level gets 31,086-33,041/s (27-28 us),
 *                                                raw RocksDB in one process 64,591-76,353/s
 */
import { fork, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { open } from '../../src/client/index.js'
import { WireServer } from '../../src/wire/index.js'
import { runWorker, type WorkerSpec } from './worker.js'
import { defaultWorkload, type Phase, type Workload } from './workload.js'

type Reply = { ok: true; ops: number; ms: number; cpuMs: number } | { ok: false; error: string }

/** Measure is one figure: wall-clock throughput, and CPU time per operation over every process involved. */
interface Measure {
  rate: number
  cpuUsPerOp: number
  /** serverUsPerOp: the server process's share of cpuUsPerOp (NaN when there is none). */
  serverUsPerOp: number
}

/** serverCpuMs reads a process's user+system CPU time from /proc (Linux), in ms. */
function serverCpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // Fields 14 and 15 of stat(5) (utime, stime) in clock ticks of 10 ms.
  return (Number(fields[11]) + Number(fields[12])) * 10
}

/** Group is a set of worker processes driving one target. */
class Group {
  private readonly workers: ChildProcess[] = []
  private constructor(private readonly serverCpu: (() => number) | undefined) {}

  /** start forks the workers; `serverCpu` reads the CPU ms of a server process they use, if any. */
  static async start(spec: WorkerSpec, processes: number, serverCpu?: () => number, profileDir?: string): Promise<Group> {
    const group = new Group(serverCpu)
    const self = fileURLToPath(import.meta.url)
    const execArgv = profileDir === undefined ? [] : ['--cpu-prof', '--cpu-prof-dir', profileDir]
    for (let i = 0; i < processes; i++) {
      const child = fork(self, ['worker', JSON.stringify(spec)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], execArgv })
      group.workers.push(child)
      // Open one at a time: the first opener may start a server or win a leader election.
      await new Promise<void>((resolve, reject) => {
        child.once('message', () => resolve())
        child.once('exit', (code) => reject(new Error(`${spec.target} worker exited with ${code} before it was ready`)))
      })
    }
    return group
  }

  /** run sends one phase per worker at once and returns operations per second overall. */
  async run(phases: Phase[]): Promise<Measure> {
    const serverCpuBefore = this.serverCpu?.() ?? 0
    const started = performance.now()
    const replies = await Promise.all(
      this.workers.map(
        (child, i) =>
          new Promise<Reply>((resolve) => {
            child.once('message', (reply: Reply) => resolve(reply))
            child.send(phases[i]!)
          }),
      ),
    )
    const elapsedMs = performance.now() - started
    let ops = 0
    const serverMs = this.serverCpu === undefined ? Number.NaN : this.serverCpu() - serverCpuBefore
    let cpuMs = Number.isNaN(serverMs) ? 0 : serverMs
    for (const reply of replies) {
      if (!reply.ok) throw new Error(`worker failed: ${reply.error}`)
      ops += reply.ops
      cpuMs += reply.cpuMs
    }
    return { rate: (ops / elapsedMs) * 1000, cpuUsPerOp: (cpuMs * 1000) / ops, serverUsPerOp: (serverMs * 1000) / ops }
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.workers.map(
        (child) =>
          new Promise<void>((resolve) => {
            if (child.exitCode !== null) return resolve()
            child.once('exit', () => resolve())
            child.send({ kind: 'stop' })
          }),
      ),
    )
  }
}

interface Figures {
  putsSync: Measure
  putsNoSync: Measure
  gets: Measure
}

const notMeasured: Measure = { rate: Number.NaN, cpuUsPerOp: Number.NaN, serverUsPerOp: Number.NaN }

/** measure runs warm-up, sync puts, unsynced puts and gets on a group of `processes` workers. */
async function measure(spec: WorkerSpec, processes: number, withSync: boolean, serverCpu?: () => number, profileDir?: string): Promise<Figures> {
  const group = await Group.start(spec, processes, serverCpu, profileDir)
  try {
    const { keys, getsPerWorker } = spec.workload
    const share = Math.ceil(keys / processes)
    const puts = (sync: boolean): Phase[] =>
      Array.from({ length: processes }, (_, i) => ({ kind: 'put', sync, from: i * share, to: Math.min(keys, (i + 1) * share) }))
    const gets: Phase[] = Array.from({ length: processes }, (_, i) => ({ kind: 'get', count: getsPerWorker, seed: 17 + i }))
    await group.run(puts(false)) // warm-up: JIT, caches, and every key exists for the gets
    const putsSync = withSync ? await group.run(puts(true)) : notMeasured
    const putsNoSync = await group.run(puts(false))
    const getsPerSecond = await group.run(gets)
    return { putsSync, putsNoSync, gets: getsPerSecond }
  } finally {
    await group.stop()
  }
}

/** measureWire runs the workload against an in-process WireServer with storage-free handlers. */
async function measureWire(root: string, workload: Workload, processes: number): Promise<Figures> {
  const server = new WireServer({ serverInfo: { bench: true } })
  const value = Buffer.alloc(workload.valueBytes, 1)
  server.handle('kv.put', async () => null)
  server.handle('kv.get', async () => value)
  const path = join(root, 'wire.sock')
  await server.listen({ path })
  // The server is this process: its CPU counts (IPC with the workers adds a little).
  const parentCpuMs = (): number => {
    const used = process.cpuUsage()
    return (used.user + used.system) / 1000
  }
  try {
    return await measure({ target: 'wire', dir: path, workload }, processes, true, parentCpuMs)
  } finally {
    await server.close()
  }
}

function better(a: Measure, b: Measure): Measure {
  const leaner = a.cpuUsPerOp <= b.cpuUsPerOp ? a : b
  return { rate: Math.max(a.rate, b.rate), cpuUsPerOp: leaner.cpuUsPerOp, serverUsPerOp: leaner.serverUsPerOp }
}

/** best keeps, per figure, the best round: highest throughput and lowest CPU per operation. */
function best(a: Figures | undefined, b: Figures): Figures {
  if (a === undefined) return b
  return { putsSync: better(a.putsSync, b.putsSync), putsNoSync: better(a.putsNoSync, b.putsNoSync), gets: better(a.gets, b.gets) }
}

function format(n: number, digits = 0): string {
  return Number.isNaN(n) ? '-' : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits })
}

function describe(figures: Figures): string {
  const f = (m: Measure): string => {
    const server = Number.isNaN(m.serverUsPerOp) ? '' : `, server ${format(m.serverUsPerOp, 1)}`
    return `${format(m.rate)}/s (${format(m.cpuUsPerOp, 1)} us cpu/op${server})`
  }
  return `sync puts ${f(figures.putsSync)}, puts ${f(figures.putsNoSync)}, gets ${f(figures.gets)}`
}

const columns = [24, 9, 8, 27, 9, 8, 7, 7, 8]

function line(cells: string[]): string {
  return cells.map((cell, i) => (i === 0 || i === 3 ? cell.padEnd(columns[i]!) : cell.padStart(columns[i]!))).join('  ')
}

function row(figure: string, value: Measure, baselineName: string, baseline: Measure, target: string): string {
  return line([
    figure,
    format(value.rate),
    format(value.cpuUsPerOp, 1),
    baselineName,
    format(baseline.rate),
    format(baseline.cpuUsPerOp, 1),
    `${format(value.rate / baseline.rate, 2)}x`,
    `${format(baseline.cpuUsPerOp / value.cpuUsPerOp, 2)}x`,
    target,
  ])
}

function printTable(distkv: Figures, rave: Figures | undefined, raw: Figures | undefined, wire?: Figures): void {
  console.log()
  console.log(line(['figure', 'distkv/s', 'cpu us', 'baseline', 'base/s', 'cpu us', 'rate', 'cpu', 'target']))
  if (rave === undefined || raw === undefined) {
    console.log(`distkv: ${describe(distkv)}`)
    return
  }
  console.log(row('puts, sync (default)', distkv.putsSync, 'rave-level puts (unsynced)', rave.putsNoSync, '>= 1x'))
  console.log(row('puts, sync: false', distkv.putsNoSync, 'rave-level puts (unsynced)', rave.putsNoSync, '>= 2x'))
  console.log(row('gets', distkv.gets, 'rave-level gets', rave.gets, '>= 2x'))
  console.log(row('gets', distkv.gets, 'raw RocksDB, 1 process', raw.gets, '>= 0.5x'))
  console.log(row('puts, sync: false', distkv.putsNoSync, 'raw RocksDB puts', raw.putsNoSync, ''))
  if (wire === undefined) return
  console.log(row('puts, sync: false', distkv.putsNoSync, 'wire alone (no storage)', wire.putsNoSync, ''))
  console.log(row('gets', distkv.gets, 'wire alone (no storage)', wire.gets, ''))
  console.log('rate = distkv/s over base/s; cpu = base cpu us/op over distkv cpu us/op (CPU of every process involved, incl. servers); > 1x favours distkv')
  printMarkdown(distkv, rave, raw)
}

/** printMarkdown prints the target rows as the Markdown table docs/local-mode.md keeps. */
function printMarkdown(distkv: Figures, rave: Figures, raw: Figures): void {
  const cells = (figure: string, value: Measure, name: string, baseline: Measure, target: string): string =>
    `| ${figure} | ${format(value.rate)} | ${format(value.cpuUsPerOp, 1)} | ${name} | ${format(baseline.rate)} | ${format(value.rate / baseline.rate, 2)}x | ${target} |`
  console.log()
  console.log('| figure | distkv/s | CPU µs/op | baseline | base/s | ratio | target |')
  console.log('|---|---|---|---|---|---|---|')
  console.log(cells('sync puts (default)', distkv.putsSync, 'rave-level unsynced puts', rave.putsNoSync, '>= 1x'))
  console.log(cells('`sync: false` puts', distkv.putsNoSync, 'rave-level unsynced puts', rave.putsNoSync, '>= 2x'))
  console.log(cells('gets', distkv.gets, 'rave-level gets', rave.gets, '>= 2x'))
  console.log(cells('gets', distkv.gets, 'raw RocksDB, 1 process', raw.gets, '>= 0.5x'))
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      keys: { type: 'string' },
      gets: { type: 'string' },
      processes: { type: 'string' },
      inflight: { type: 'string' },
      only: { type: 'string' },
      dir: { type: 'string' },
      'cpu-prof': { type: 'string' },
      rounds: { type: 'string' },
    },
  })
  const processes = Number(values.processes ?? 4)
  const workload: Workload = {
    ...defaultWorkload,
    keys: Number(values.keys ?? defaultWorkload.keys),
    getsPerWorker: Number(values.gets ?? defaultWorkload.getsPerWorker),
    inflight: Number(values.inflight ?? defaultWorkload.inflight),
  }
  const root = mkdtempSync(join(tmpdir(), 'distkv-bench-'))
  try {
    console.log(`bench:local: ${processes} processes x ${workload.inflight} in flight, ${workload.valueBytes} B values, ${workload.keys} keys`)
    const distkvDir = values.dir ?? join(root, 'distkv')
    // Keep one client open so the server stays up between phases; stop it at the end if we started it.
    const holder = await open(distkvDir, { name: 'bench-holder', idleTimeoutSeconds: 2 })
    const serverPid = (holder as unknown as { serverInfo?: { pid?: number } }).serverInfo?.pid
    let distkv: Figures | undefined
    let rave: Figures | undefined
    for (let round = 0; round < Number(values.rounds ?? 2); round++) {
      const serverCpu = typeof serverPid === 'number' ? () => serverCpuMs(serverPid) : undefined
      distkv = best(distkv, await measure({ target: 'distkv', dir: distkvDir, workload }, processes, true, serverCpu, values['cpu-prof']))
      if (values.only === 'distkv') continue
      rave = best(rave, await measure({ target: 'rave', dir: join(root, 'rave'), workload }, processes, false))
      console.log(`round ${round + 1}: distkv ${describe(distkv)}; rave-level ${describe(rave)}`)
    }
    await holder.close()
    if (values.dir === undefined && typeof serverPid === 'number') process.kill(serverPid, 'SIGTERM')
    if (values.only === 'distkv') return printTable(distkv!, undefined, undefined)
    const rawWorkload = { ...workload, inflight: workload.inflight * processes, getsPerWorker: workload.getsPerWorker * processes }
    const raw = await measure({ target: 'raw', dir: join(root, 'raw'), workload: rawWorkload }, 1, false)
    const wire = await measureWire(root, workload, processes)
    printTable(distkv!, rave, raw, wire)
  } finally {
    rmSync(root, { recursive: true, force: true })
  }
}

if (process.argv[2] === 'worker') {
  await runWorker(JSON.parse(process.argv[3]!) as WorkerSpec)
} else {
  await main()
}
