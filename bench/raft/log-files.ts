// bench/raft/log-files: CPU per write of RaftLogFiles (src/raftstore/log-files.ts) on the hot
// path of a driver iteration: one write of 40 x 1 KiB entries and a hard state, sync on, against
// the baseline measured in the same run: a bare writev + fdatasync of the same bytes on libuv's
// pool (what any log on this machine pays at least). Rounds alternate A/B so both see the same
// machine load; figures are CPU µs per write from /proc (main thread, the other threads, total),
// and the ratio. The synchronous part of write() (checks, sizing, encoding, crc32) is also
// timed alone, as it runs on the event loop.
// Usage: npm run build && node dist/bench/raft/log-files.js [--writes 2000] [--rounds 6] [--entries 40] [--entry-bytes 1024] [--dir DIR]
import { fdatasync, mkdtempSync, openSync, closeSync, rmSync, writev } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Entry } from '../../src/raft/types.js'
import { RaftLogFiles, type LogRecord } from '../../src/raftstore/log-files.js'
import { argument, threadCpuDelta, treeThreadCpuMs, type ThreadCpu } from '../lib/common.js'

const writes = Number(argument('writes', '2000'))
const rounds = Number(argument('rounds', '6'))
const entriesPerWrite = Number(argument('entries', '40'))
const entryBytes = Number(argument('entry-bytes', '1024'))
const root = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-logfiles-'))

interface Figure {
  main: number
  workers: number
  wallMs: number
  writes: number
}

function cpu(delta: ThreadCpu): { main: number; workers: number } {
  return { main: delta.main.user + delta.main.system, workers: delta.workers.user + delta.workers.system }
}

async function measure(work: () => Promise<void>, count: number): Promise<Figure> {
  const before = treeThreadCpuMs(process.pid)
  const start = performance.now()
  await work()
  const wallMs = performance.now() - start
  const used = cpu(threadCpuDelta(before, treeThreadCpuMs(process.pid)))
  return { ...used, wallMs, writes: count }
}

// Entry payloads are shared by every batch: allocating 40 KiB per write here would put the
// bench's own garbage (and its GC pauses) into the figures of the code under test.
const payloads = Array.from({ length: entriesPerWrite }, (_, i) => Buffer.alloc(entryBytes, i))

function batch(groupId: number, first: number): LogRecord[] {
  const entries: Entry[] = []
  for (let i = 0; i < entriesPerWrite; i++) entries.push({ index: first + i, term: 3, type: 'normal', data: payloads[i]! })
  return [
    { type: 'entries', groupId, entries },
    { type: 'hardState', groupId, hardState: { term: 3, vote: 1, commit: first + entriesPerWrite - 1 } },
  ]
}

let encodeNs = 0
let encodeCalls = 0
let nextIndex = 1

async function logFilesRound(log: RaftLogFiles): Promise<Figure> {
  // Batches are built outside the measured loop (the Raft core hands them over ready).
  const batches: LogRecord[][] = []
  for (let i = 0; i < writes; i++) batches.push(batch(1, nextIndex + i * entriesPerWrite))
  const compactEvery = 64
  return measure(async () => {
    for (let i = 0; i < writes; i++) {
      const records = batches[i]!
      // Keep the log short, as applied-and-compacted groups do, so GC runs as in production.
      if (i % compactEvery === compactEvery - 1) records.push({ type: 'compact', groupId: 1, index: nextIndex + i * entriesPerWrite - 1, term: 3 })
      const t0 = process.hrtime.bigint()
      const done = log.write(records, true)
      encodeNs += Number(process.hrtime.bigint() - t0)
      encodeCalls++
      await done
    }
    nextIndex += writes * entriesPerWrite
  }, writes)
}

async function baselineRound(fd: number, bytes: number, position: { at: number }): Promise<Figure> {
  // The same bytes as one write of the log: a header and 40 entries, handed to writev as they come.
  const parts: Buffer[] = [Buffer.alloc(bytes - entriesPerWrite * entryBytes, 1), ...payloads]
  return measure(async () => {
    for (let i = 0; i < writes; i++) {
      await new Promise<void>((resolve, reject) => writev(fd, parts, position.at, (error) => (error ? reject(error) : resolve())))
      position.at += bytes
      await new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())))
    }
  }, writes)
}

function add(into: Figure, figure: Figure): void {
  into.main += figure.main
  into.workers += figure.workers
  into.wallMs += figure.wallMs
  into.writes += figure.writes
}

function show(name: string, figure: Figure): string {
  const per = (ms: number) => ((ms * 1000) / figure.writes).toFixed(1)
  return `${name.padEnd(26)} CPU µs/write: total ${per(figure.main + figure.workers).padStart(6)}  main ${per(figure.main).padStart(6)}  other threads ${per(figure.workers).padStart(6)}   wall µs/write ${per(figure.wallMs).padStart(7)}`
}

async function main(): Promise<void> {
  const log = await RaftLogFiles.open({ dir: join(root, 'log'), powerLoss: false })
  const baseFd = openSync(join(root, 'baseline.bin'), 'w')
  // Bytes of one log write: record header 8 + items (9 + 12 + 40 * (13 + 1024)) + (9 + 24).
  const bytes = 8 + 9 + 12 + entriesPerWrite * (13 + entryBytes) + 9 + 24
  const position = { at: 0 }
  const totals = { log: { main: 0, workers: 0, wallMs: 0, writes: 0 }, base: { main: 0, workers: 0, wallMs: 0, writes: 0 } }
  // Warm-up (JIT, page cache of the files), not counted.
  await logFilesRound(log)
  await baselineRound(baseFd, bytes, position)
  encodeNs = 0
  encodeCalls = 0
  for (let round = 0; round < rounds; round++) {
    add(totals.base, await baselineRound(baseFd, bytes, position))
    add(totals.log, await logFilesRound(log))
  }
  await log.close()
  closeSync(baseFd)
  console.log(`${rounds} rounds x ${writes} writes of ${entriesPerWrite} x ${entryBytes} B entries + a hard state (${bytes} B per write), sync on each`)
  console.log(show('baseline writev+fdatasync', totals.base))
  console.log(show('RaftLogFiles.write', totals.log))
  const ratio = (totals.log.main + totals.log.workers) / (totals.base.main + totals.base.workers)
  console.log(`ratio (total CPU): ${ratio.toFixed(2)}x; write() on the event loop (checks + encode + crc32): ${(encodeNs / encodeCalls / 1000).toFixed(1)} µs/write`)
  console.log(`stats: ${JSON.stringify(log.stats)}`)
}

main()
  .catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
  .finally(() => rmSync(root, { recursive: true, force: true }))
