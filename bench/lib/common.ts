/**
 * Helpers shared by the benchmarks: command-line arguments and the raw disk baseline that
 * several of them print beside their own figures.
 */
import { closeSync, fdatasyncSync, openSync, rmSync, writeSync } from 'node:fs'
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
