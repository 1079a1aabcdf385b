// DistLevel against abstract-level's own conformance suite (tape-driven), each database on a
// fresh in-process local server (memory engine) reached through the real open(dir) path.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { DistLevel } from '../../src/client/level.js'
import type { LocalServerHandle } from '../../src/local/index.js'
import { open } from '../../src/client/index.js'
import { startLocalServer } from '../../src/local/index.js'

interface TapeRow {
  type: string
  ok?: boolean
  name?: string
  id?: number
  test?: number
  actual?: unknown
  expected?: unknown
}
interface TapeHarness {
  (name: string, fn: (t: unknown) => unknown): void
  createStream(options: { objectMode: true }): NodeJS.ReadableStream
  onFinish(fn: () => void): void
}

const require = createRequire(import.meta.url)
const tape = require('tape') as { createHarness(): TapeHarness }
const suite = require('abstract-level/test') as (options: { test: TapeHarness; factory: (options?: Record<string, unknown>) => DistLevel }) => void

const root = mkdtempSync(join(tmpdir(), 'distkv-level-'))
let databases = 0
const running: Array<{ level: DistLevel; server: () => Promise<LocalServerHandle> | undefined }> = []

/**
 * newDatabase returns a DistLevel on a new directory whose local server runs in this process
 * (memory engine, for speed); the DistLevel reaches it like any client, through open(dir).
 * The server outlives close() so that a reopened database finds its data again.
 */
function newDatabase(options?: Record<string, unknown>): DistLevel {
  void stopClosed()
  const dir = join(root, String(databases++))
  let server: Promise<LocalServerHandle> | undefined
  const level = new DistLevel(
    {
      kv: async () => {
        server ??= startLocalServer({ dir, engine: 'memory', idleTimeoutSeconds: 0, handleSignals: false })
        await server
        return await open(dir)
      },
    },
    options,
  )
  running.push({ level, server: () => server })
  return level
}

/** stopClosed stops the servers of databases that are closed (or all of them). */
async function stopClosed(all = false): Promise<void> {
  const stopping: Array<Promise<void>> = []
  for (let i = running.length - 1; i >= 0; i--) {
    const { level, server } = running[i]!
    if (!all && level.status !== 'closed') continue
    running.splice(i, 1)
    const started = server()
    if (started !== undefined) stopping.push(started.then((handle) => handle.stop()))
  }
  await Promise.all(stopping)
}

// About 6 s of CPU; the generous timeout is for machines shared with other heavy work.
test('DistLevel passes the abstract-level test suite', { timeout: 240_000 }, async () => {
  const harness = tape.createHarness()
  const failures: string[] = []
  const testNames = new Map<number, string>()
  let asserts = 0
  harness.createStream({ objectMode: true }).on('data', (row: TapeRow) => {
    if (row.type === 'test' && row.id !== undefined) testNames.set(row.id, row.name ?? '')
    if (row.type !== 'assert') return
    asserts++
    if (row.ok !== true) {
      failures.push(`${testNames.get(row.test ?? -1)}: ${row.name} (actual ${String(row.actual)}, expected ${String(row.expected)})`)
    }
  })
  const finished = new Promise<void>((resolve) => harness.onFinish(resolve))
  suite({ test: harness, factory: newDatabase })
  await finished
  await Promise.all(running.map(({ level }) => level.close().catch(() => {})))
  await stopClosed(true)
  rmSync(root, { recursive: true, force: true })
  assert.ok(asserts > 1000, `only ${asserts} assertions ran`)
  assert.deepEqual(failures, [], `${failures.length} of ${asserts} assertions failed`)
})
