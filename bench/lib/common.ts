/**
 * Helpers shared by the benchmarks: command-line arguments and the raw disk baseline that
 * several of them print beside their own figures.
 */
import { closeSync, fdatasyncSync, openSync, readdirSync, readFileSync, rmSync, writeSync } from 'node:fs'
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
 * treeWriteBytes sums `write_bytes - cancelled_write_bytes` of /proc/PID/io over process
 * `rootPid` and its live descendants: the bytes they caused to be written to storage. A page is
 * counted when it is dirtied, and again each time it is dirtied after a writeback (a log's last
 * partial page, rewritten by the next append), so this over-counts what the device receives;
 * pages of a file deleted before writeback (a RocksDB WAL after its memtable's flush) are
 * cancelled. Compared with the device's own counter (/proc/diskstats) over a 16 KiB upload run
 * it read ~1.9x higher; use it to compare builds, not as the device's figure. NaN when
 * /proc/PID/io is not readable (another user's process).
 */
export function treeWriteBytes(rootPid: number): number {
  let bytes = 0
  for (const pid of treePids(rootPid)) {
    try {
      const io = readFileSync(`/proc/${pid}/io`, 'utf8')
      const written = /^write_bytes: (\d+)$/m.exec(io)
      const cancelled = /^cancelled_write_bytes: (\d+)$/m.exec(io)
      if (written !== null) bytes += Number(written[1]) - Number(cancelled?.[1] ?? 0)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'EACCES') return Number.NaN
      // exited while we looked
    }
  }
  return bytes
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
