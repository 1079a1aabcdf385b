// bench/raft/log-files: CPU per write of RaftLogFiles (src/raftstore/log-files.ts) on the hot
// path of a driver iteration: one write of 40 x 1 KiB entries and a hard state, sync on, against
// the baseline measured in the same run: a bare writev + fdatasync of the same bytes on libuv's
// pool (what any log on this machine pays at least). Rounds alternate A/B so both see the same
// machine load; figures are CPU µs per write from /proc (main thread, the other threads, total),
// and the ratio. The synchronous part of write() (checks, sizing, encoding, crc32) is also
// timed alone, as it runs on the event loop.
// A third variant, "growing", is RaftLogFiles with preallocation off (files grow as written),
// also alternated; the latency of its synced writes (p50/p99, writes are sequential) against the
// preallocated log's is what preallocation buys. --background-mibps N runs a child process that
// writes N MiB/s of unsynced data to new files in the same directory meanwhile, as RocksDB's
// WAL, flushes and compactions do beside a node's log.
// --pattern leader follows each synced write with an unsynced one of a commit-only hard state,
// as a leader's driver does (the iteration after an append learns the new commit); the baseline
// then also writes those bytes, unsynced, in a writev of their own.
// Usage: npm run build && node dist/bench/raft/log-files.js [--writes 2000] [--rounds 6] [--entries 40] [--entry-bytes 1024]
//          [--file-mib 64] [--background-mibps 0] [--pattern synced|leader] [--dir DIR]
import { execFileSync } from 'node:child_process'
import { fdatasync, mkdtempSync, openSync, closeSync, rmSync, writeFileSync, writev } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Entry } from '../../src/raft/types.js'
import { RaftLogFiles, type LogRecord } from '../../src/raftstore/log-files.js'
import { argument, percentile, threadCpuDelta, treeThreadCpuMs, type ThreadCpu } from '../lib/common.js'

const writes = Number(argument('writes', '2000'))
const rounds = Number(argument('rounds', '6'))
const entriesPerWrite = Number(argument('entries', '40'))
const entryBytes = Number(argument('entry-bytes', '1024'))
const fileBytesMax = Number(argument('file-mib', '64')) * 1024 * 1024
const backgroundMiBps = Number(argument('background-mibps', '0'))
const pattern = argument('pattern', 'synced')
if (pattern !== 'synced' && pattern !== 'leader') throw new Error(`--pattern must be synced or leader, got ${pattern}`)
const root = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-logfiles-'))

/**
 * backgroundWriter writes `mibps` MiB/s of unsynced 1 MiB blocks to new 64 MiB files in `dir`
 * until stopped; started through a shell that exits, so it is not in this process's tree and
 * its CPU does not count in the figures (returns its stop function).
 */
function backgroundWriter(dir: string, mibps: number): () => void {
  const code = `const fs = require('node:fs'); const block = Buffer.alloc(1 << 20, 7); const gap = 1000 / ${mibps}; let next = performance.now();
for (let f = 0; ; f++) { const p = ${JSON.stringify(dir)} + '/background-' + f; const fd = fs.openSync(p, 'w');
  for (let i = 0; i < 64; i++) { fs.writeSync(fd, block); next += gap; const wait = next - performance.now(); if (wait > 0) Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, wait) }
  fs.closeSync(fd); fs.rmSync(p) }`
  const script = join(dir, 'background-writer.cjs')
  writeFileSync(script, code)
  const pid = Number(execFileSync('/bin/sh', ['-c', `"${process.execPath}" "${script}" >/dev/null 2>&1 & echo $!`], { encoding: 'utf8' }).trim())
  return () => {
    try {
      process.kill(pid)
    } catch {
      // already gone
    }
  }
}

interface Figure {
  main: number
  workers: number
  wallMs: number
  writes: number
  latencies: number[]
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
  return { ...used, wallMs, writes: count, latencies: [] }
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
/** nextIndexes: each log's next entry index (every log gets the same contiguous batches). */
const nextIndexes = new Map<RaftLogFiles, number>()

async function logFilesRound(log: RaftLogFiles): Promise<Figure> {
  const latencies: number[] = []
  const nextIndex = nextIndexes.get(log) ?? 1
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
      latencies.push(Number(process.hrtime.bigint() - t0) / 1e6)
      if (pattern === 'leader') await log.write([{ type: 'hardState', groupId: 1, hardState: { term: 3, vote: 1, commit: nextIndex + (i + 1) * entriesPerWrite - 1 } }], false)
    }
    nextIndexes.set(log, nextIndex + writes * entriesPerWrite)
  }, writes).then((figure) => ({ ...figure, latencies }))
}

async function baselineRound(fd: number, bytes: number, position: { at: number }): Promise<Figure> {
  // The same bytes as one write of the log: a header and 40 entries, handed to writev as they come.
  const parts: Buffer[] = [Buffer.alloc(bytes - entriesPerWrite * entryBytes, 1), ...payloads]
  // --pattern leader: a record of one hard state (8 + 9 + 24 bytes), written unsynced.
  const hardState = [Buffer.alloc(41, 2)]
  return measure(async () => {
    for (let i = 0; i < writes; i++) {
      await new Promise<void>((resolve, reject) => writev(fd, parts, position.at, (error) => (error ? reject(error) : resolve())))
      position.at += bytes
      await new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())))
      if (pattern !== 'leader') continue
      await new Promise<void>((resolve, reject) => writev(fd, hardState, position.at, (error) => (error ? reject(error) : resolve())))
      position.at += hardState[0]!.length
    }
  }, writes)
}

function add(into: Figure, figure: Figure): void {
  into.main += figure.main
  into.workers += figure.workers
  into.wallMs += figure.wallMs
  into.writes += figure.writes
  into.latencies.push(...figure.latencies)
}

function show(name: string, figure: Figure): string {
  const per = (ms: number) => ((ms * 1000) / figure.writes).toFixed(1)
  const sorted = [...figure.latencies].sort((a, b) => a - b)
  const tail = sorted.length === 0 ? '' : `   synced write p50 ${percentile(sorted, 50).toFixed(2)} ms, p99 ${percentile(sorted, 99).toFixed(2)} ms, max ${sorted[sorted.length - 1]!.toFixed(1)} ms`
  return `${name.padEnd(26)} CPU µs/write: total ${per(figure.main + figure.workers).padStart(6)}  main ${per(figure.main).padStart(6)}  other threads ${per(figure.workers).padStart(6)}   wall µs/write ${per(figure.wallMs).padStart(7)}${tail}`
}

async function main(): Promise<void> {
  const log = await RaftLogFiles.open({ dir: join(root, 'log'), fileBytesMax, powerLoss: false })
  const growing = await RaftLogFiles.open({ dir: join(root, 'growing'), fileBytesMax, powerLoss: false, preallocate: false })
  const stopBackground = backgroundMiBps > 0 ? backgroundWriter(root, backgroundMiBps) : undefined
  const baseFd = openSync(join(root, 'baseline.bin'), 'w')
  // Bytes of one log write: record header 8 + items (9 + 12 + 40 * (13 + 1024)) + (9 + 24).
  const bytes = 8 + 9 + 12 + entriesPerWrite * (13 + entryBytes) + 9 + 24
  const position = { at: 0 }
  const zero = (): Figure => ({ main: 0, workers: 0, wallMs: 0, writes: 0, latencies: [] })
  const totals = { log: zero(), growing: zero(), base: zero() }
  // Warm-up (JIT, page cache of the files, the first rotations), not counted.
  await logFilesRound(log)
  await logFilesRound(growing)
  await baselineRound(baseFd, bytes, position)
  encodeNs = 0
  encodeCalls = 0
  for (let round = 0; round < rounds; round++) {
    add(totals.base, await baselineRound(baseFd, bytes, position))
    add(totals.log, await logFilesRound(log))
    add(totals.growing, await logFilesRound(growing))
  }
  stopBackground?.()
  await log.close()
  await growing.close()
  closeSync(baseFd)
  console.log(`${rounds} rounds x ${writes} writes of ${entriesPerWrite} x ${entryBytes} B entries + a hard state (${bytes} B per write), sync on each${pattern === 'leader' ? ', each followed by an unsynced hard state' : ''}; files of ${fileBytesMax / 1048576} MiB; background writer ${backgroundMiBps} MiB/s`)
  console.log(show('baseline writev+fdatasync', totals.base))
  console.log(show('RaftLogFiles.write', totals.log))
  console.log(show('  preallocation off', totals.growing))
  const ratio = (totals.log.main + totals.log.workers) / (totals.base.main + totals.base.workers)
  console.log(`ratio (total CPU): ${ratio.toFixed(2)}x; write() on the event loop (checks + encode + crc32): ${(encodeNs / encodeCalls / 1000).toFixed(1)} µs/write`)
  console.log(`stats: ${JSON.stringify(log.stats)}; preallocation off: ${JSON.stringify(growing.stats)}`)
}

main()
  .catch((error: unknown) => {
    console.error(error)
    process.exitCode = 1
  })
  .finally(() => rmSync(root, { recursive: true, force: true }))
