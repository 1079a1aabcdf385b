// bench/engine: synced RocksDB batch writes, walSync 'native' (fdatasync inside DB::Write on
// the JavaScript thread) against 'threadpool' (sync: false write + coalesced fdatasync of the WAL
// on libuv's thread pool), from 1 and from 64 concurrent writers, with the event-loop lag p99
// during each run. The baselines are the raw fdatasync rates of the same disk (small write +
// fdatasync in a loop), measured in the same run before and after, once with fdatasync on the
// JavaScript thread and once on the thread pool (on a shared, overloaded VM the second is
// often much faster: the figure to compare the thread-pool mode against). Writers yield to the event
// loop between writes (as requests arriving on sockets would), so that the lag figure shows
// what a server would see rather than a microtask loop that never yields.
// Usage: npm run build && node dist/bench/engine/run.js [--seconds 3] [--dir DIR] [--value-bytes 128]
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { monitorEventLoopDelay } from 'node:perf_hooks'
import { setImmediate as yieldToLoop } from 'node:timers/promises'
import { RocksDbEngine, type WalSyncMode } from '../../src/engine/rocksdb.js'
import { argument, fsyncRate, percentile, poolFsyncRate } from '../lib/common.js'

interface Figures {
  mode: WalSyncMode
  writers: number
  perSecond: number
  p50Ms: number
  p99Ms: number
  lagP99Ms: number
  /** writesPerRound: synced writes per WAL sync round (threadpool only). */
  writesPerRound: number | undefined
}

/** run keeps `writers` synced single-put batches in flight against a fresh engine for `seconds`. */
async function run(baseDir: string, mode: WalSyncMode, writers: number, seconds: number, valueBytes: number): Promise<Figures> {
  const dir = mkdtempSync(join(baseDir, `${mode}-${writers}-`))
  const engine = new RocksDbEngine({ dir, walSync: mode, backgroundThreads: 2 })
  await engine.open()
  const value = Buffer.alloc(valueBytes, 0x61)
  const latencies: number[] = []
  const lag = monitorEventLoopDelay({ resolution: 1 })
  const roundsBefore = engine.walSyncStats?.roundsCompleted ?? 0
  try {
    lag.enable()
    const end = performance.now() + seconds * 1000
    await Promise.all(Array.from({ length: writers }, async (_, writer) => {
      for (let n = 0; performance.now() < end; n++) {
        const start = performance.now()
        await engine.batch([{ type: 'put', key: Buffer.from(`w${writer}-${n}`), value }], { sync: true })
        latencies.push(performance.now() - start)
        await yieldToLoop()
      }
    }))
    lag.disable()
    const rounds = (engine.walSyncStats?.roundsCompleted ?? 0) - roundsBefore
    latencies.sort((a, b) => a - b)
    return {
      mode,
      writers,
      perSecond: latencies.length / seconds,
      p50Ms: percentile(latencies, 50),
      p99Ms: percentile(latencies, 99),
      lagP99Ms: lag.percentile(99) / 1e6,
      writesPerRound: mode === 'threadpool' && rounds > 0 ? latencies.length / rounds : undefined,
    }
  } finally {
    await engine.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

function fixed(value: number | undefined, digits = 1): string {
  return value === undefined || Number.isNaN(value) ? '-' : value.toFixed(digits)
}

async function main(): Promise<void> {
  const seconds = Number(argument('seconds', '3'))
  const valueBytes = Number(argument('value-bytes', '128'))
  const baseDir = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-engine-'))
  try {
    const fsyncBefore = fsyncRate(baseDir, 2)
    const poolBefore = await poolFsyncRate(baseDir, 2)
    const results: Figures[] = []
    for (const writers of [1, 64]) {
      // Alternating modes so that load from other programs on the machine hurts both alike.
      for (const mode of ['native', 'threadpool'] as const) results.push(await run(baseDir, mode, writers, seconds, valueBytes))
    }
    const fsyncAfter = fsyncRate(baseDir, 2)
    const poolAfter = await poolFsyncRate(baseDir, 2)
    const fsync = (fsyncBefore + fsyncAfter) / 2
    const pool = (poolBefore + poolAfter) / 2
    console.log(`raw fdatasync on the JS thread: ${fsyncBefore.toFixed(0)}/s before, ${fsyncAfter.toFixed(0)}/s after (mean ${fsync.toFixed(0)}/s)`)
    console.log(`raw fdatasync on the thread pool: ${poolBefore.toFixed(0)}/s before, ${poolAfter.toFixed(0)}/s after (mean ${pool.toFixed(0)}/s)`)
    console.log(`${seconds}s per run, ${valueBytes} B values, one put per batch; "x fsync" divides by the raw rate of the same thread kind`)
    console.log('mode        writers   writes/s  x fsync   p50 ms   p99 ms  loop lag p99 ms  writes/round')
    for (const r of results) {
      const raw = r.mode === 'native' ? fsync : pool
      console.log(`${r.mode.padEnd(10)} ${String(r.writers).padStart(8)} ${fixed(r.perSecond, 0).padStart(10)} ${fixed(r.perSecond / raw, 2).padStart(9)} ${fixed(r.p50Ms, 2).padStart(8)} ${fixed(r.p99Ms, 2).padStart(8)} ${fixed(r.lagP99Ms, 2).padStart(16)} ${fixed(r.writesPerRound, 1).padStart(13)}`)
    }
    for (const writers of [1, 64]) {
      const native = results.find((r) => r.mode === 'native' && r.writers === writers)!
      const threaded = results.find((r) => r.mode === 'threadpool' && r.writers === writers)!
      console.log(`${writers} writer(s): threadpool/native writes/s = ${(threaded.perSecond / native.perSecond).toFixed(2)}x, loop lag p99 native/threadpool = ${(native.lagP99Ms / threaded.lagP99Ms).toFixed(1)}x`)
    }
  } finally {
    rmSync(baseDir, { recursive: true, force: true })
  }
}

await main()
