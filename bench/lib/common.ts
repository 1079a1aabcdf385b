/**
 * Helpers shared by the benchmarks: command-line arguments and the raw disk baseline that
 * several of them print beside their own figures.
 */
import { closeSync, fdatasyncSync, openSync, readdirSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs'
import { open } from 'node:fs/promises'
import { join } from 'node:path'

/** argument returns the value after `--name` on the command line, or `fallback`. */
export function argument(name: string, fallback: string): string {
  const at = process.argv.indexOf(`--${name}`)
  return at >= 0 && process.argv[at + 1] !== undefined ? process.argv[at + 1]! : fallback
}

/** fsyncRate measures small write + fdatasync pairs per second in `dir` (on the calling thread). */
export function fsyncRate(dir: string, seconds: number): number {
  const path = join(dir, 'fsync-probe')
  const fd = openSync(path, 'w')
  const block = Buffer.alloc(512, 1)
  let count = 0
  const end = performance.now() + seconds * 1000
  try {
    while (performance.now() < end) {
      writeSync(fd, block)
      fdatasyncSync(fd)
      count++
    }
  } finally {
    closeSync(fd)
    rmSync(path, { force: true })
  }
  return count / seconds
}

/** poolFsyncRate is fsyncRate with each fdatasync on libuv's thread pool (as the engine's WAL syncer does it). */
export async function poolFsyncRate(dir: string, seconds: number): Promise<number> {
  const path = join(dir, 'fsync-probe-pool')
  const fd = openSync(path, 'w')
  const handle = await open(path, 'r')
  const block = Buffer.alloc(512, 1)
  let count = 0
  const end = performance.now() + seconds * 1000
  try {
    while (performance.now() < end) {
      writeSync(fd, block)
      await handle.datasync()
      count++
    }
  } finally {
    await handle.close()
    closeSync(fd)
    rmSync(path, { force: true })
  }
  return count / seconds
}

/** percentile returns the p-th percentile of an ascending array (NaN when empty). */
export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

/** treePids lists process `rootPid` and every live descendant, from /proc (Linux). */
function treePids(rootPid: number): number[] {
  const children = new Map<number, number[]>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited while we looked
    }
    const parent = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1])
    children.set(parent, [...(children.get(parent) ?? []), Number(entry)])
  }
  const found: number[] = []
  const pending = [rootPid]
  // The found count bounds the walk even if /proc changed under us into a cycle.
  while (pending.length > 0 && found.length < 100_000) {
    const pid = pending.pop()!
    found.push(pid)
    pending.push(...(children.get(pid) ?? []))
  }
  return found
}

/**
 * ThreadClass groups a server's threads by what they do: `main` the JavaScript thread (and
 * its syscalls), `rocksdb` RocksDB's flush and compaction threads (named rocksdb:high/low),
 * `workers` Node's other threads: V8's compiler and GC helpers and the libuv threadpool (fs,
 * fdatasync, crypto), which Node 20 does not name apart (all are "node").
 */
export type ThreadClass = 'main' | 'rocksdb' | 'workers'

function threadClass(comm: string, tid: number, pid: number): ThreadClass {
  if (tid === pid) return 'main'
  if (comm.startsWith('rocksdb:')) return 'rocksdb'
  return 'workers'
}

/** ThreadCpu is user and system CPU time (ms) per thread class, summed over a process tree. */
export type ThreadCpu = Record<ThreadClass, { user: number; system: number }>

/**
 * treeThreadCpuMs splits the CPU time of process `rootPid` and its descendants by thread class
 * (from /proc/PID/task/TID/stat). Threads that exited between two samples drop out, so a
 * difference of two samples can under-count short-lived threads (the classes above are long-lived).
 */
export function treeThreadCpuMs(rootPid: number): ThreadCpu {
  const cpu: ThreadCpu = { main: { user: 0, system: 0 }, rocksdb: { user: 0, system: 0 }, workers: { user: 0, system: 0 } }
  for (const pid of treePids(rootPid)) {
    let tids: string[]
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue
    }
    for (const tid of tids) {
      let stat: string
      try {
        stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
      } catch {
        continue
      }
      const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      const into = cpu[threadClass(comm, Number(tid), pid)]
      into.user += Number(fields[11]) * 10
      into.system += Number(fields[12]) * 10
    }
  }
  return cpu
}

/** threadCpuDelta is `after - before`, class by class. */
export function threadCpuDelta(before: ThreadCpu, after: ThreadCpu): ThreadCpu {
  const delta = { ...after }
  for (const key of Object.keys(after) as ThreadClass[]) delta[key] = { user: after[key].user - before[key].user, system: after[key].system - before[key].system }
  return delta
}

/**
 * deviceWrittenBytes is the byte count the block device holding `dir` has written since boot
 * (/proc/diskstats, sectors written x 512), or NaN when `dir` is not on a block device (tmpfs).
 * It counts every process's writes to that device, once each, when they reach it: call
 * `sync` before reading it to count what was written back late. (/proc/PID/io's write_bytes is
 * not usable here: it counts a page when it is dirtied, and a small write into a file written
 * earlier in large pieces, such as a preallocated log file, dirties a whole large folio: 49x
 * the bytes for 41 KB O_DSYNC writes on this host, while the device wrote 1.1x.)
 */
export function deviceWrittenBytes(dir: string): number {
  const dev = statSync(dir).dev
  const major = (dev >> 8) & 0xfff
  const minor = (dev & 0xff) | ((dev >> 12) & 0xfff00)
  for (const line of readFileSync('/proc/diskstats', 'utf8').split('\n')) {
    const fields = line.trim().split(/\s+/)
    if (Number(fields[0]) === major && Number(fields[1]) === minor) return Number(fields[9]) * 512
  }
  return Number.NaN
}

/** treeCpuMs sums user + system CPU time (ms) of process `rootPid` and every live descendant, from /proc (Linux). */
export function treeCpuMs(rootPid: number): number {
  let ticks = 0
  for (const pid of treePids(rootPid)) {
    try {
      // After the parenthesised command name, utime and stime are the 12th and 13th fields.
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      ticks += Number(fields[11]) + Number(fields[12])
    } catch {
      // exited while we looked
    }
  }
  // USER_HZ is 100 on every Linux ABI Node supports.
  return ticks * 10
}
