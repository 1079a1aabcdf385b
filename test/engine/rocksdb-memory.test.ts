// The RocksDB engine's memory stays flat however much is written: a native write batch per
// write used to stay attached to the database until it closed, so a process held every value
// it had ever written (found through a cluster node growing to gigabytes under file uploads).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'

const MiB = 1024 * 1024

/** anonymousRss is this process's resident anonymous memory (heap, native allocations), in bytes. */
function anonymousRss(): number {
  const line = readFileSync('/proc/self/status', 'utf8').split('\n').find((l) => l.startsWith('RssAnon:'))
  return Number(line?.split(/\s+/)[1]) * 1024
}

test('rocksdb engine: writing 384 MiB grows resident memory by far less than that', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-rocks-memory-'))
  const engine = new RocksDbEngine({ dir, cacheBytes: 8 * MiB, memtableBudgetBytes: 16 * MiB, backgroundThreads: 2 })
  await engine.open()
  try {
    const value = Buffer.alloc(MiB, 0x5a)
    await engine.batch([{ type: 'put', key: Buffer.from('warm'), value }])
    const before = anonymousRss()
    for (let i = 0; i < 384; i++) {
      const key = Buffer.from(`chunk-${String(i).padStart(6, '0')}`)
      // Alternate batch shapes and sync modes: every write path goes through one native batch.
      if (i % 3 === 0) await engine.batch([{ type: 'put', key, value }, { type: 'del', key: Buffer.from('absent') }], { sync: i % 6 === 0 })
      else await engine.put(key, value)
      if (i % 32 === 0) await new Promise((resolve) => setImmediate(resolve))
    }
    const grownMiB = (anonymousRss() - before) / MiB
    // Memtables (16 MiB budget), the block cache (8 MiB) and allocator slack account for a few
    // tens of MiB; holding what was written would be 384 MiB or more.
    assert.ok(grownMiB < 160, `resident memory grew by ${grownMiB.toFixed(0)} MiB after writing 384 MiB`)
    assert.deepEqual(await engine.get(Buffer.from('chunk-000383')), value)
  } finally {
    await engine.close()
    rmSync(dir, { recursive: true, force: true })
  }
})
