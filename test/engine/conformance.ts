/**
 * The one conformance suite of the Engine interface, run against every implementation
 * (rocksdb.test.ts, leveldb.test.ts, memory.test.ts): bytewise order, ranges, snapshots,
 * atomic batches, sync, reopen, misuse errors, and a fast-check comparison with a model.
 */
import assert from 'node:assert/strict'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, test } from 'node:test'
import fc from 'fast-check'
import type { Engine, EngineOp, RangeOptions } from '../../src/engine/engine.js'
import { checkAgainstModel, modelRange, readAll } from './model.js'

/** MakeEngine builds an unopened engine storing in `dir` (the memory engine ignores it). */
export type MakeEngine = (dir: string) => Engine

const b = (...bytes: number[]) => Buffer.from(bytes)
const text = (s: string) => Buffer.from(s)

/** tricky keys: 0x00 and 0xff bytes, and keys that are prefixes of each other. */
const trickyKeys = [b(0x00), b(0x00, 0x00), b(0x00, 0xff), b(0x01), text('a'), b(0x61, 0x00), text('ab'), text('abc'), b(0x61, 0xff), b(0x7f), b(0x80), b(0xff), b(0xff, 0x00), b(0xff, 0xff), b(0xff, 0xff, 0xff)]
const sortedTricky = [...trickyKeys].sort(Buffer.compare)

/** runEngineConformance registers the whole suite for one engine implementation. */
export function runEngineConformance(name: string, makeEngine: MakeEngine, options: { persistent: boolean } = { persistent: true }): void {
  describe(`engine conformance: ${name}`, () => {
    const withEngine = (title: string, body: (engine: Engine, dir: string) => Promise<void>) =>
      test(title, async () => {
        const dir = await mkdtemp(join(tmpdir(), `distkv-engine-${name}-`))
        const engine = makeEngine(dir)
        await engine.open()
        try {
          await body(engine, dir)
        } finally {
          await engine.close()
          await rm(dir, { recursive: true, force: true })
        }
      })

    withEngine('keys iterate in bytewise order, 0x00/0xff bytes and prefixes included', async (engine) => {
      for (const key of [...trickyKeys].reverse()) await engine.put(key, Buffer.concat([text('v:'), key]))
      const all = await readAll(engine)
      assert.deepEqual(all.map(([key]) => key), sortedTricky)
      assert.deepEqual(all.map(([, value]) => value), sortedTricky.map((key) => Buffer.concat([text('v:'), key])))
      const reversed = await readAll(engine, { reverse: true })
      assert.deepEqual(reversed.map(([key]) => key), [...sortedTricky].reverse())
    })

    withEngine('get, getMany, put overwrite, del, and binary values round-trip', async (engine) => {
      const binary = Buffer.from(Array.from({ length: 256 }, (_, i) => i))
      await engine.put(text('k'), binary)
      assert.deepEqual(await engine.get(text('k')), binary)
      await engine.put(text('k'), text('second'))
      assert.deepEqual(await engine.get(text('k')), text('second'))
      await engine.put(text('empty'), Buffer.alloc(0))
      assert.deepEqual(await engine.get(text('empty')), Buffer.alloc(0))
      assert.equal(await engine.get(text('missing')), undefined)
      assert.deepEqual(await engine.getMany([text('missing'), text('k'), text('empty')]), [undefined, text('second'), Buffer.alloc(0)])
      assert.deepEqual(await engine.getMany([]), [])
      await engine.del(text('k'))
      await engine.del(text('never-there'))
      assert.equal(await engine.get(text('k')), undefined)
    })

    withEngine('gt/gte/lt/lte combinations, reverse and limit select the model range', async (engine) => {
      await engine.batch(trickyKeys.map((key): EngineOp => ({ type: 'put', key, value: key })))
      const probes = [b(0x00), b(0x00, 0x00), text('a'), text('ab'), b(0x61, 0x00, 0x00), b(0xff), b(0xff, 0xff), b(0x50)]
      const ranges: RangeOptions[] = []
      for (const low of probes) {
        for (const high of probes) {
          ranges.push({ gt: low, lt: high }, { gte: low, lte: high }, { gt: low, lte: high }, { gte: low, lt: high })
        }
        ranges.push({ gt: low }, { gte: low }, { lt: low }, { lte: low }, { gt: low, gte: low }, { lt: low, lte: low })
      }
      ranges.push({ gt: text('a'), gte: text('ab') }, { lt: b(0xff), lte: b(0x80) }, {})
      for (const range of ranges) {
        for (const extra of [{}, { reverse: true }, { limit: 2 }, { reverse: true, limit: 1 }, { limit: 0 }, { limit: -1 }]) {
          await checkAgainstModel(engine, new Map(trickyKeys.map((key) => [key.toString('hex'), key])), { ...range, ...extra })
        }
      }
    })

    withEngine('keys: false and values: false leave that half empty', async (engine) => {
      await engine.put(text('a'), text('1'))
      await engine.put(text('b'), text('2'))
      assert.deepEqual(await readAll(engine, { keys: false }), [[Buffer.alloc(0), text('1')], [Buffer.alloc(0), text('2')]])
      assert.deepEqual(await readAll(engine, { values: false }), [[text('a'), Buffer.alloc(0)], [text('b'), Buffer.alloc(0)]])
    })

    withEngine('a batch with an invalid op applies nothing', async (engine) => {
      await engine.put(text('keep'), text('old'))
      const bad = [
        { type: 'put', key: text('keep'), value: text('new') },
        { type: 'put', key: text('x'), value: 'not a buffer' },
      ] as unknown as EngineOp[]
      await assert.rejects(engine.batch(bad), { code: 'KV_ERR_INVALID' })
      const badType = [{ type: 'del', key: text('keep') }, { type: 'merge', key: text('x') }] as unknown as EngineOp[]
      await assert.rejects(engine.batch(badType), { code: 'KV_ERR_INVALID' })
      await assert.rejects(engine.put('string key' as unknown as Buffer, text('v')), { code: 'KV_ERR_INVALID' })
      assert.deepEqual(await readAll(engine), [[text('keep'), text('old')]])
      await engine.batch([{ type: 'put', key: text('x'), value: text('1') }, { type: 'del', key: text('keep') }, { type: 'put', key: text('y'), value: text('2') }])
      assert.deepEqual(await readAll(engine), [[text('x'), text('1')], [text('y'), text('2')]])
    })

    withEngine('an iterator reads the snapshot taken when it was created', async (engine) => {
      const keys = Array.from({ length: 300 }, (_, i) => text(`k${String(i).padStart(4, '0')}`))
      await engine.batch(keys.map((key): EngineOp => ({ type: 'put', key, value: text('old') })))
      const iterator = engine.iterator()
      const first = await iterator.nextBatch(10)
      await engine.batch([
        ...keys.map((key): EngineOp => ({ type: 'put', key, value: text('new') })),
        { type: 'del', key: keys[200]! },
        { type: 'put', key: text('k9999'), value: text('added') },
        { type: 'put', key: text('a-before'), value: text('added') },
      ])
      const rest: Array<[Buffer, Buffer]> = []
      for (let rows = await iterator.nextBatch(64); rows.length > 0; rows = await iterator.nextBatch(64)) rest.push(...rows)
      await iterator.close()
      const seen = [...first, ...rest]
      assert.deepEqual(seen.map(([key]) => key), keys)
      assert.ok(seen.every(([, value]) => value.equals(text('old'))))
      assert.equal((await readAll(engine)).length, 301)
    })

    withEngine('sync writes and sync() resolve and the data reads back', async (engine) => {
      await engine.put(text('a'), text('1'), { sync: true })
      await engine.del(text('a'), { sync: true })
      await engine.batch([{ type: 'put', key: text('b'), value: text('2') }], { sync: true })
      await engine.put(text('c'), text('3'), { sync: false })
      await engine.sync()
      await engine.batch([], { sync: true })
      assert.deepEqual(await readAll(engine), [[text('b'), text('2')], [text('c'), text('3')]])
    })

    withEngine('close then open keeps the data', async (engine) => {
      await engine.put(text('persist'), text('yes'), { sync: true })
      await engine.put(text('later'), text('also'))
      await engine.close()
      await engine.open()
      assert.deepEqual(await engine.get(text('persist')), text('yes'))
      assert.deepEqual(await engine.get(text('later')), text('also'))
    })

    if (options.persistent) {
      withEngine('a new engine on the same directory sees the data', async (engine, dir) => {
        await engine.batch(trickyKeys.map((key): EngineOp => ({ type: 'put', key, value: key })), { sync: true })
        await engine.close()
        const again = makeEngine(dir)
        await again.open()
        try {
          assert.deepEqual((await readAll(again)).map(([key]) => key), sortedTricky)
        } finally {
          await again.close()
        }
      })
    }

    if (options.persistent) {
      withEngine('a second engine on an open directory fails with KV_ERR_UNAVAILABLE, then opens once it is free', async (engine, dir) => {
        await engine.put(text('k'), text('v'))
        const second = makeEngine(dir)
        await assert.rejects(second.open(), { code: 'KV_ERR_UNAVAILABLE', message: /locked/ })
        await assert.rejects(second.get(text('k')), { code: 'KV_ERR_CLOSED' })
        await engine.close()
        await second.open()
        try {
          assert.deepEqual(await second.get(text('k')), text('v'))
        } finally {
          await second.close()
        }
      })
    }

    withEngine('a closed engine refuses every operation with KV_ERR_CLOSED', async (engine) => {
      await engine.put(text('a'), text('1'))
      const iterator = engine.iterator()
      await engine.close()
      const closed = { code: 'KV_ERR_CLOSED' }
      await assert.rejects(engine.get(text('a')), closed)
      await assert.rejects(engine.getMany([text('a')]), closed)
      await assert.rejects(engine.put(text('a'), text('2')), closed)
      await assert.rejects(engine.del(text('a')), closed)
      await assert.rejects(engine.batch([]), closed)
      await assert.rejects(engine.sync(), closed)
      assert.throws(() => engine.iterator(), closed)
      await assert.rejects(iterator.nextBatch(1), closed)
      await engine.close()
      await engine.open()
      assert.deepEqual(await engine.get(text('a')), text('1'))
    })

    withEngine('close lets reads already in flight finish, then refuses new ones', async (engine) => {
      const value = Buffer.alloc(512, 1)
      await engine.batch(Array.from({ length: 2000 }, (_, i): EngineOp => ({ type: 'put', key: text(`k${String(i).padStart(5, '0')}`), value })))
      const iterator = engine.iterator()
      const page = iterator.nextBatch(2000)
      const read = engine.get(text('k00001'))
      await engine.close()
      assert.ok((await page).length > 0)
      assert.deepEqual(await read, value)
      await assert.rejects(iterator.nextBatch(1), { code: 'KV_ERR_CLOSED' })
      await engine.open()
      assert.equal((await readAll(engine, { gte: text('k01990') })).length, 10)
    })

    withEngine('iterator misuse: bad counts, concurrent calls, use after close', async (engine) => {
      await engine.batch(Array.from({ length: 5 }, (_, i): EngineOp => ({ type: 'put', key: text(`k${i}`), value: text('v') })))
      const iterator = engine.iterator()
      for (const count of [0, -1, 1.5, Number.NaN, 100_001]) {
        await assert.rejects(iterator.nextBatch(count), { code: 'KV_ERR_INVALID' })
      }
      assert.throws(() => engine.iterator({ limit: 1.5 }), { code: 'KV_ERR_INVALID' })
      assert.throws(() => engine.iterator({ gt: 'a' as unknown as Buffer }), { code: 'KV_ERR_INVALID' })
      const pending = iterator.nextBatch(2)
      await assert.rejects(iterator.nextBatch(2), { code: 'KV_ERR_INVALID' })
      assert.equal((await pending).length, 2)
      await iterator.close()
      await iterator.close()
      await assert.rejects(iterator.nextBatch(1), { code: 'KV_ERR_CLOSED' })
    })

    test('matches a model on random operation sequences (fast-check)', async () => {
      await fc.assert(
        fc.asyncProperty(fc.array(operationArbitrary, { minLength: 1, maxLength: 30 }), async (operations) => {
          const dir = await mkdtemp(join(tmpdir(), `distkv-engine-${name}-prop-`))
          const engine = makeEngine(dir)
          await engine.open()
          try {
            await runOperations(engine, operations)
          } finally {
            await engine.close()
            await rm(dir, { recursive: true, force: true })
          }
        }),
        { numRuns: 40 },
      )
    })
  })
}

const keyArbitrary = fc.uint8Array({ minLength: 1, maxLength: 3, min: 0, max: 3 }).map((bytes) => Buffer.from(bytes.map((x) => [0x00, 0x01, 0x7f, 0xff][x]!)))
const valueArbitrary = fc.uint8Array({ maxLength: 8 }).map((bytes) => Buffer.from(bytes))
const rangeArbitrary = fc.record(
  { gt: keyArbitrary, gte: keyArbitrary, lt: keyArbitrary, lte: keyArbitrary, reverse: fc.boolean(), limit: fc.integer({ min: -1, max: 5 }) },
  { requiredKeys: [] },
)
type Operation =
  | { kind: 'put'; key: Buffer; value: Buffer }
  | { kind: 'del'; key: Buffer }
  | { kind: 'batch'; ops: Array<{ put: boolean; key: Buffer; value: Buffer }> }
  | { kind: 'query'; range: RangeOptions }
  | { kind: 'reopen' }
  | { kind: 'snapshot'; range: RangeOptions; ops: Array<{ put: boolean; key: Buffer; value: Buffer }> }
const batchOpsArbitrary = fc.array(fc.record({ put: fc.boolean(), key: keyArbitrary, value: valueArbitrary }), { maxLength: 6 })
const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant('put' as const), key: keyArbitrary, value: valueArbitrary }),
  fc.record({ kind: fc.constant('del' as const), key: keyArbitrary }),
  fc.record({ kind: fc.constant('batch' as const), ops: batchOpsArbitrary }),
  fc.record({ kind: fc.constant('query' as const), range: rangeArbitrary }),
  fc.record({ kind: fc.constant('snapshot' as const), range: rangeArbitrary, ops: batchOpsArbitrary }),
  fc.constant({ kind: 'reopen' as const }),
)

async function applyBatch(engine: Engine, model: Map<string, Buffer>, ops: Array<{ put: boolean; key: Buffer; value: Buffer }>): Promise<void> {
  await engine.batch(ops.map(({ put, key, value }): EngineOp => (put ? { type: 'put', key, value } : { type: 'del', key })))
  for (const { put, key, value } of ops) put ? model.set(key.toString('hex'), value) : model.delete(key.toString('hex'))
}

async function runOperations(engine: Engine, operations: Operation[]): Promise<void> {
  const model = new Map<string, Buffer>()
  const hex = (key: Buffer) => key.toString('hex')
  for (const operation of operations) {
    if (operation.kind === 'put') {
      await engine.put(operation.key, operation.value)
      model.set(hex(operation.key), operation.value)
    } else if (operation.kind === 'del') {
      await engine.del(operation.key)
      model.delete(hex(operation.key))
    } else if (operation.kind === 'batch') {
      await applyBatch(engine, model, operation.ops)
    } else if (operation.kind === 'snapshot') {
      // An iterator opened before a batch must not see it, even after its first page.
      const expected = modelRange(model, operation.range)
      const iterator = engine.iterator(operation.range)
      const rows = await iterator.nextBatch(1)
      await applyBatch(engine, model, operation.ops)
      for (let page = await iterator.nextBatch(3); page.length > 0; page = await iterator.nextBatch(3)) rows.push(...page)
      await iterator.close()
      assert.deepEqual(rows, expected)
    } else if (operation.kind === 'reopen') {
      await engine.close()
      await engine.open()
    } else {
      await checkAgainstModel(engine, model, operation.range)
    }
  }
  await checkAgainstModel(engine, model, {})
  for (const [key, value] of model) assert.deepEqual(await engine.get(Buffer.from(key, 'hex')), value)
}
