// The power-loss engine: the Engine conformance suite through its cache, and the two halves of
// its fault model in a real process killed with SIGKILL: synced writes (and all before them)
// survive, unsynced ones are lost. The same child without the fault shows SIGKILL alone loses
// nothing, which is why the fault exists.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { MemoryEngine } from '../../src/engine/memory.js'
import { PowerLossEngine, powerLossCacheBytesMax, withPowerLossFault } from '../../src/engine/power-loss.js'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import { runEngineConformance } from './conformance.js'
import { runUntilKilled } from './kill-child.js'
import { readAll } from './model.js'

const childScript = fileURLToPath(new URL('./power-loss-child.js', import.meta.url))

runEngineConformance('power-loss over rocksdb', (dir) => new PowerLossEngine(new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 })))
runEngineConformance('power-loss over memory', () => new PowerLossEngine(new MemoryEngine()), { persistent: false })

/** runChildUntilKilled runs the child with the fault on or off, SIGKILLs it once ready, and returns what it read. */
async function runChildUntilKilled(dir: string, fault: '0' | '1'): Promise<Array<string | null>> {
  const output = await runUntilKilled(childScript, [dir], fault, (out) => out.includes('\n'))
  const match = /^READY (.*)$/m.exec(output)
  assert.ok(match, output)
  return JSON.parse(match[1]!) as Array<string | null>
}

async function survivors(dir: string): Promise<Record<string, string>> {
  const engine = new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 4 * 1024 * 1024, backgroundThreads: 1 })
  await engine.open()
  try {
    return Object.fromEntries((await readAll(engine)).map(([key, value]) => [key.toString(), value.toString()]))
  } finally {
    await engine.close()
  }
}

test('power-loss: after SIGKILL synced writes and everything before them survive, unsynced writes are lost', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-power-loss-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  // Before the kill the unsynced writes were visible through the engine, as a page cache makes them.
  assert.deepEqual(await runChildUntilKilled(dir, '1'), [null, '4', '5'])
  assert.deepEqual(await survivors(dir), { 'a-synced': '1', 'b-unsynced-then-synced': '2', 'c-synced': '3' })
})

test('power-loss: without the fault SIGKILL loses nothing that reached RocksDB', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-power-loss-'))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  assert.deepEqual(await runChildUntilKilled(dir, '0'), [null, '4', '5'])
  assert.deepEqual(await survivors(dir), { 'b-unsynced-then-synced': '2', 'c-synced': '3', 'd-unsynced': '4', 'e-unsynced': '5' })
})

test('power-loss: an iterator merges cached puts and deletes over the inner snapshot, with limits, both ways', async () => {
  const inner = new MemoryEngine()
  const engine = new PowerLossEngine(inner)
  await engine.open()
  const key = (n: number) => Buffer.from([n])
  for (let n = 0; n < 10; n++) await engine.put(key(n), key(n), { sync: true })
  await engine.batch([{ type: 'del', key: key(2) }, { type: 'del', key: key(3) }, { type: 'put', key: key(4), value: Buffer.from('new') }, { type: 'put', key: key(20), value: key(20) }])
  const iterator = engine.iterator({ gte: key(1), limit: 4 })
  await engine.sync() // the flush after the iterator was opened is not in its snapshot
  await engine.put(key(5), Buffer.from('later'))
  assert.deepEqual((await iterator.nextBatch(2)).map(([k, v]) => [k[0], v.toString('latin1')]), [[1, '\x01'], [4, 'new']])
  assert.deepEqual((await iterator.nextBatch(10)).map(([k]) => k[0]), [5, 6])
  await iterator.close()
  assert.deepEqual((await readAll(engine, { reverse: true, lt: key(7) })).map(([k]) => k[0]), [6, 5, 4, 1, 0])
  assert.equal((await engine.get(key(5)))?.toString(), 'later')
  assert.deepEqual(await inner.get(key(5)), key(5), 'the unsynced put is only in the cache')
  await engine.close()
})

test('power-loss: past powerLossCacheBytesMax the cache is written back unsynced; the switch is validated', async () => {
  const inner = new MemoryEngine()
  const engine = new PowerLossEngine(inner)
  await engine.open()
  const big = Buffer.alloc(1024 * 1024)
  for (let n = 0; n * big.length <= powerLossCacheBytesMax; n++) await engine.put(Buffer.from(`k${n}`), big)
  assert.equal(engine.stats.writebacks, 1)
  assert.ok((await inner.get(Buffer.from('k0'))) !== undefined)
  await engine.close()
  assert.ok(withPowerLossFault(inner, {}) === inner)
  assert.ok(withPowerLossFault(inner, { DISTKV_FAULT_POWER_LOSS: '1' }) instanceof PowerLossEngine)
  assert.throws(() => withPowerLossFault(inner, { DISTKV_FAULT_POWER_LOSS: 'yes' }), { code: 'KV_ERR_INVALID', message: /DISTKV_FAULT_POWER_LOSS/ })
})
