// Child process for rocksdb-wal-sync.test.ts, run under strace: synced writes between marker
// lines on stdout, before and after a forced WAL rotation; or, with `until-killed`, synced puts
// acknowledged on stdout until SIGKILL. Usage: node rocksdb-wal-child.js DIR MODE [until-killed]
import { readdirSync, writeSync } from 'node:fs'
import { RocksDbEngine, type WalSyncMode } from '../../src/engine/rocksdb.js'

/** rotationBytesMax bounds the unsynced bytes written while waiting for RocksDB to switch WALs. */
const rotationBytesMax = 32 * 1024 * 1024

const [dir, mode] = process.argv.slice(2) as [string, WalSyncMode]

function mark(text: string): void {
  // One write(2) on stdout: strace shows it between the engine's own system calls.
  writeSync(1, `MARK ${text}\n`)
}

/** writeUntilKilled acknowledges synced puts on stdout, 8 in flight, until the parent kills it. */
async function writeUntilKilled(): Promise<never> {
  const value = Buffer.alloc(4096, 3)
  let next = 0
  for (;;) {
    await Promise.all(Array.from({ length: 8 }, async () => {
      const n = next++
      await engine.put(Buffer.from(`acked-${n}`), value, { sync: true })
      writeSync(1, `ACK ${n}\n`)
    }))
  }
}

function newestWal(): number {
  const numbers = readdirSync(dir).flatMap((name) => (/^\d+\.log$/.test(name) ? [Number.parseInt(name, 10)] : []))
  return Math.max(0, ...numbers)
}

const engine = new RocksDbEngine({ dir, walSync: mode, cacheBytes: 1024 * 1024, memtableBudgetBytes: 4 * 1024 * 1024, backgroundThreads: 1 })
await engine.open()
if (process.argv[4] === 'until-killed') await writeUntilKilled()
mark(`begin ${process.pid}`)
await engine.put(Buffer.from('synced-1'), Buffer.from('value-1'), { sync: true })
mark('synced')

// 1 MiB write buffers: a few MiB of unsynced writes make RocksDB switch to a new WAL.
const first = newestWal()
const value = Buffer.alloc(64 * 1024, 7)
for (let i = 0, written = 0; newestWal() === first; i++, written += value.length) {
  if (written > rotationBytesMax) throw new Error(`no WAL rotation after ${rotationBytesMax} bytes`)
  await engine.put(Buffer.from(`fill-${i}`), value)
}
mark(`rotated ${newestWal()} dirSyncs=${engine.walSyncStats?.dirSyncs ?? 0}`)
await engine.put(Buffer.from('synced-2'), Buffer.from('value-2'), { sync: true })
mark(`synced2 dirSyncs=${engine.walSyncStats?.dirSyncs ?? 0}`)
await engine.close()
