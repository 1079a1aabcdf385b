// Runs the engine conformance suite against the memory engine, and tests what only it has:
// the chunked copy-on-write map under many keys, and the crash model used by the simulator.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { EngineOp } from '../../src/engine/engine.js'
import { MemoryEngine } from '../../src/engine/memory.js'
import { chunkEntriesMax } from '../../src/engine/memory-tree.js'
import { runEngineConformance } from './conformance.js'
import { checkAgainstModel, readAll } from './model.js'

runEngineConformance('memory', () => new MemoryEngine(), { persistent: false })
runEngineConformance('memory lose-unsynced', () => new MemoryEngine({ durability: 'lose-unsynced' }), { persistent: false })

/** random is a small seeded generator (mulberry32), so a failure replays. */
function random(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

test('memory: thousands of keys across chunk splits and merges; old snapshots stay intact', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  const next = random(7)
  const model = new Map<string, Buffer>()
  const snapshots: Array<{ iterator: ReturnType<MemoryEngine['iterator']>; expected: Array<[Buffer, Buffer]> }> = []
  for (let step = 0; step < 20_000; step++) {
    const key = Buffer.from([Math.floor(next() * 40), Math.floor(next() * 256)])
    if (next() < 0.6) {
      const value = Buffer.from(String(step))
      await engine.put(key, value)
      model.set(key.toString('hex'), value)
    } else {
      await engine.del(key)
      model.delete(key.toString('hex'))
    }
    if (step % 2500 === 0) {
      const expected = [...model].map(([hex, value]): [Buffer, Buffer] => [Buffer.from(hex, 'hex'), value]).sort(([a], [b]) => Buffer.compare(a, b))
      snapshots.push({ iterator: engine.iterator(), expected })
    }
  }
  assert.ok(model.size > 4 * chunkEntriesMax, 'the test must span many chunks')
  assert.equal(engine.size, model.size)
  await checkAgainstModel(engine, model, {})
  await checkAgainstModel(engine, model, { gte: Buffer.from([10]), lt: Buffer.from([20, 5]), reverse: true })
  for (const { iterator, expected } of snapshots) {
    const rows: Array<[Buffer, Buffer]> = []
    for (let page = await iterator.nextBatch(500); page.length > 0; page = await iterator.nextBatch(500)) rows.push(...page)
    assert.deepEqual(rows, expected)
  }
  await engine.close()
})

test('memory: stored data is a copy of what the caller passed', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  const key = Buffer.from('k')
  const value = Buffer.from('value')
  await engine.put(key, value)
  value.fill(0)
  key.fill(0)
  assert.deepEqual(await engine.get(Buffer.from('k')), Buffer.from('value'))
})

test('memory lose-unsynced: crash drops unsynced batches whole and keeps synced ones', async () => {
  const engine = new MemoryEngine({ durability: 'lose-unsynced' })
  await engine.open()
  await engine.put(Buffer.from('a'), Buffer.from('1'), { sync: true })
  await engine.batch([{ type: 'put', key: Buffer.from('b'), value: Buffer.from('2') }, { type: 'del', key: Buffer.from('a') }])
  await engine.put(Buffer.from('c'), Buffer.from('3'))
  assert.equal(engine.unsyncedBatches, 2)
  const iterator = engine.iterator()
  engine.crash()
  await assert.rejects(engine.get(Buffer.from('a')), { code: 'KV_ERR_CLOSED' })
  await assert.rejects(iterator.nextBatch(1), { code: 'KV_ERR_CLOSED' })
  await engine.open()
  assert.deepEqual(await readAll(engine), [[Buffer.from('a'), Buffer.from('1')]])
})

test('memory lose-unsynced: sync() and a later sync write make earlier writes survive', async () => {
  const engine = new MemoryEngine({ durability: 'lose-unsynced' })
  await engine.open()
  await engine.put(Buffer.from('a'), Buffer.from('1'))
  await engine.sync()
  await engine.put(Buffer.from('b'), Buffer.from('2'))
  await engine.del(Buffer.from('zz'), { sync: true })
  await engine.put(Buffer.from('c'), Buffer.from('3'))
  engine.crash()
  await engine.open()
  assert.deepEqual((await readAll(engine)).map(([key]) => key.toString()), ['a', 'b'])
})

test('memory lose-unsynced: crash can keep a prefix of the unsynced batches', async () => {
  const engine = new MemoryEngine({ durability: 'lose-unsynced' })
  await engine.open()
  const ops = (i: number): EngineOp[] => [{ type: 'put', key: Buffer.from(`k${i}`), value: Buffer.from(`v${i}`) }]
  for (let i = 0; i < 5; i++) await engine.batch(ops(i))
  engine.crash({ keepUnsyncedBatches: 2 })
  await engine.open()
  assert.deepEqual((await readAll(engine)).map(([key]) => key.toString()), ['k0', 'k1'])
  assert.equal(engine.unsyncedBatches, 0)
  engine.crash()
  await engine.open()
  assert.equal(engine.size, 2, 'what survived a crash is durable')
  assert.throws(() => engine.crash({ keepUnsyncedBatches: -1 }), { code: 'KV_ERR_INVALID' })
})

test('memory durable: crash loses nothing', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  await engine.put(Buffer.from('a'), Buffer.from('1'))
  engine.crash()
  await engine.open()
  assert.deepEqual(await engine.get(Buffer.from('a')), Buffer.from('1'))
  assert.throws(() => new MemoryEngine({ durability: 'sometimes' as 'durable' }), { code: 'KV_ERR_INVALID' })
})
