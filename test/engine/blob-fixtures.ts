// Shared by the blob engine's tests: a small RocksDB under a temp directory, a raw read that
// bypasses pointer resolution, and deterministic values.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'

/** rocks is the inner engine the blob tests use: RocksDB in DIR/db, small caches. */
export const rocks = (dir: string) => new RocksDbEngine({ dir: join(dir, 'db'), cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 })

/** withDir runs `body` in a fresh directory (named after `prefix`, with `subdirs` made in it), removed afterwards. */
export async function withDir(prefix: string, body: (dir: string) => Promise<void>, subdirs: string[] = []): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  for (const sub of subdirs) mkdirSync(join(dir, sub))
  try {
    await body(dir)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** raw reads what the inner engine holds for `key` (a pointer or the value), bypassing resolution; the engine must be closed. */
export async function raw(dir: string, key: Buffer): Promise<Buffer | undefined> {
  const inner = rocks(dir)
  await inner.open()
  try {
    return await inner.get(key)
  } finally {
    await inner.close()
  }
}
