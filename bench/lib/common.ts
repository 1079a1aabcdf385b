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

/** treeCpuMs sums user + system CPU time (ms) of process `rootPid` and every live descendant, from /proc (Linux). */
export function treeCpuMs(rootPid: number): number {
  const children = new Map<number, number[]>()
  const ticks = new Map<number, number>()
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue
    let stat: string
    try {
      stat = readFileSync(`/proc/${entry}/stat`, 'utf8')
    } catch {
      continue // exited while we looked
    }
    // After the parenthesised command name: ppid is the 2nd field, utime and stime the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const pid = Number(entry)
    const parent = Number(fields[1])
    ticks.set(pid, Number(fields[11]) + Number(fields[12]))
    children.set(parent, [...(children.get(parent) ?? []), pid])
  }
  let total = 0
  const pending = [rootPid]
  // The visited count bounds the walk even if /proc changed under us into a cycle.
  for (let visited = 0; pending.length > 0 && visited < ticks.size + 1; visited++) {
    const pid = pending.pop()!
    total += ticks.get(pid) ?? 0
    pending.push(...(children.get(pid) ?? []))
  }
  // USER_HZ is 100 on every Linux ABI Node supports.
  return total * 10
}
