/**
 * LocalStore over the memory engine (with its crash model) and RocksDB: group commit,
 * exactly-once writes across crashes, keyspace separation, query ranges and page bounds.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { rmSync } from 'node:fs'
import { createEngine, MemoryEngine } from '../../src/engine/index.js'
import { ErrorCode } from '../../src/errors.js'
import { Limits } from '../../src/limits.js'
import { LocalStore, type QueryPage } from '../../src/local/store.js'
import { RecentRequests } from '../../src/local/recent-requests.js'
import { encodeTimestamp, requestKey } from '../../src/local/keyspace.js'
import type { WireRange } from '../../src/local/validate.js'
import { makeTempDir } from './helpers.js'

const b = (text: string): Buffer => Buffer.from(text)
const put = (key: string, value: string) => ({ type: 'put', key: b(key), value: b(value) }) as const

async function openStore(engine = new MemoryEngine({ durability: 'lose-unsynced' }), options = {}): Promise<{ engine: MemoryEngine; store: LocalStore }> {
  await engine.open()
  const store = new LocalStore(engine, options)
  await store.open()
  return { engine, store }
}

async function collect(pages: AsyncIterable<QueryPage>): Promise<string[]> {
  const out: string[] = []
  for await (const page of pages) page.keys.forEach((key, i) => out.push(`${key.toString('latin1')}=${page.values[i]!.toString('latin1')}`))
  return out
}

test('concurrent sync writes share engine batches, each batch synced; sync:false writes skip the fsync', async () => {
  const { engine, store } = await openStore()
  await Promise.all(Array.from({ length: 200 }, (_, i) => store.write(randomUUID(), [put(`k${i}`, `v${i}`)], true)))
  assert.equal(store.stats.writeRequests, 200)
  assert.ok(store.stats.engineBatches < 200, `200 writes took ${store.stats.engineBatches} batches`)
  assert.equal(store.stats.syncedBatches, store.stats.engineBatches)
  await store.write(randomUUID(), [put('lazy', 'x')], false)
  assert.equal(store.stats.syncedBatches, store.stats.engineBatches - 1)
  engine.crash()
  const { store: again } = await openStore(engine)
  assert.equal((await again.get(b('k199')))?.toString(), 'v199', 'acknowledged sync writes survive a crash')
  assert.equal(await again.get(b('lazy')), undefined, 'an unsynced write is lost by a crash (so it was not fsynced)')
})

test('a re-sent request id is answered without being applied again, also after a crash', async () => {
  const { engine, store } = await openStore()
  const first = randomUUID()
  await store.write(first, [put('k', 'first')], true)
  await store.write(randomUUID(), [put('k', 'second')], true)
  await store.write(first, [put('k', 'first')], true)
  assert.equal((await store.get(b('k')))?.toString(), 'second')
  assert.equal(store.stats.duplicateRequests, 1)
  engine.crash()
  const { store: again } = await openStore(engine)
  await again.write(first, [put('k', 'first')], true)
  assert.equal((await again.get(b('k')))?.toString(), 'second', 'the applied id was persisted with its write')
})

test('a copy arriving while the original is still queued waits for it and is not applied twice', async () => {
  const { store } = await openStore()
  const id = randomUUID()
  await Promise.all([store.write(id, [put('k', 'v')], true), store.write(id, [put('k', 'v')], true)])
  assert.equal(store.stats.writeRequests, 1)
  assert.equal(store.stats.duplicateRequests, 1)
})

test('the write queue is bounded by pendingWritesMax', async () => {
  const { store } = await openStore(undefined, { pendingWritesMax: 2 })
  const results = await Promise.allSettled([1, 2, 3].map((i) => store.write(randomUUID(), [put(`k${i}`, 'v')], true)))
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 2)
  const rejected = results.find((r) => r.status === 'rejected') as PromiseRejectedResult
  assert.equal(rejected.reason.code, ErrorCode.TOO_MANY_REQUESTS)
  assert.match(rejected.reason.message, /pendingWritesMax/)
})

test('request ids are not user data: queries never show them, and a malformed id is refused', async () => {
  const { engine, store } = await openStore()
  const low = { type: 'put', key: Buffer.from([0x00]), value: b('low') } as const
  const high = { type: 'put', key: Buffer.from([0xff]), value: b('high') } as const
  await store.write(randomUUID(), [low, high], true)
  assert.deepEqual(await collect(store.query({})), ['\x00=low', '\xff=high'])
  assert.ok(engine.size > 2, 'the engine holds the request-id record too')
  assert.throws(() => store.write('not-a-uuid', [put('k', 'v')], true), { code: ErrorCode.INVALID })
})

test('applied ids are bounded by count, and evicted ones are deleted from the engine', async () => {
  const { engine, store } = await openStore(undefined, {
    recentRequests: { retentionMs: 60_000, idsMax: 3, evictionsPerBatchMax: 10 },
  })
  for (let i = 0; i < 10; i++) await store.write(randomUUID(), [put(`k${i}`, 'v')], true)
  assert.equal(store.recentRequestIds, 3)
  // 10 user keys plus at most idsMax + one batch's worth of not-yet-deleted records.
  assert.ok(engine.size <= 10 + 3 + 1, `engine holds ${engine.size} keys`)
})

test('applied ids expire after retentionMs', async () => {
  let now = 1_000_000
  const recent = new RecentRequests({ retentionMs: 1000, idsMax: 100, evictionsPerBatchMax: 10 }, () => now)
  const id = Buffer.alloc(16, 1)
  const record = recent.record([id])
  assert.equal(recent.has(id), false, 'an id counts only once its batch is written')
  record.commit()
  assert.ok(recent.has(id))
  now += 1001
  const ops = recent.record([]).ops
  assert.equal(recent.has(id), false)
  assert.deepEqual(ops.map((op) => op.type), ['del'])
  assert.deepEqual(ops[0]!.key, record.ops[0]!.key, 'the expired group record is the one deleted')
})

test('one engine batch records all its request ids in one record, and they survive a crash', async () => {
  const { engine, store } = await openStore()
  const ids = Array.from({ length: 50 }, () => randomUUID())
  await Promise.all(ids.map((id, i) => store.write(id, [put(`k${i}`, 'v')], true)))
  assert.equal(store.stats.engineBatches, 1, 'the 50 writes shared one batch')
  assert.equal(engine.size, 50 + 1, '50 user keys and one id record')
  engine.crash()
  const { store: again } = await openStore(engine)
  assert.equal(again.recentRequestIds, 50)
  await Promise.all(ids.map((id, i) => again.write(id, [put(`k${i}`, 'replayed')], true)))
  assert.equal(again.stats.duplicateRequests, 50)
  assert.equal((await again.get(b('k7')))?.toString(), 'v')
})

test('per-id records of older directories are honoured, and deleted once expired', async () => {
  let now = 5_000_000
  const engine = new MemoryEngine()
  await engine.open()
  const legacy = Buffer.alloc(16, 7)
  await engine.put(requestKey(legacy), encodeTimestamp(now))
  const recent = new RecentRequests({ retentionMs: 1000, idsMax: 100, evictionsPerBatchMax: 10 }, () => now)
  await recent.load(engine)
  assert.ok(recent.has(legacy))
  const fresh = Buffer.alloc(16, 8)
  const first = recent.record([fresh])
  await engine.batch(first.ops)
  first.commit()
  now += 1001
  const later = recent.record([])
  assert.equal(recent.has(legacy), false)
  assert.deepEqual(later.ops.map((op) => op.key), [requestKey(legacy), first.ops[0]!.key], 'oldest first')
  await engine.batch(later.ops)
  assert.equal(engine.size, 0)
})

test('group record sequence numbers continue after a restart', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  const recent = new RecentRequests({ retentionMs: 60_000, idsMax: 100, evictionsPerBatchMax: 10 })
  for (let i = 0; i < 3; i++) {
    const record = recent.record([Buffer.alloc(16, i)])
    await engine.batch(record.ops)
    record.commit()
  }
  const reloaded = new RecentRequests({ retentionMs: 60_000, idsMax: 100, evictionsPerBatchMax: 10 })
  await reloaded.load(engine)
  const next = reloaded.record([Buffer.alloc(16, 9)])
  await engine.batch(next.ops)
  assert.equal(engine.size, 4, 'the new record did not overwrite an old one')
  for (let i = 0; i < 3; i++) assert.ok(reloaded.has(Buffer.alloc(16, i)))
})

const keys = ['', 'a', 'a\x00', 'ab', 'abc', 'ac', 'b', 'b\xff', 'ba', 'c'].map((k) => Buffer.from(k, 'latin1')).slice(1)

function model(range: WireRange): string[] {
  let selected = [...keys].sort(Buffer.compare).filter((key) => {
    if (range.gt && Buffer.compare(key, range.gt) <= 0) return false
    if (range.gte && Buffer.compare(key, range.gte) < 0) return false
    if (range.lt && Buffer.compare(key, range.lt) >= 0) return false
    if (range.lte && Buffer.compare(key, range.lte) > 0) return false
    if (range.prefix && !key.subarray(0, range.prefix.length).equals(range.prefix)) return false
    return true
  })
  if (range.reverse) selected.reverse()
  if (range.limit !== undefined) selected = selected.slice(0, range.limit)
  return selected.map((key) => `${range.keys === false ? '' : key.toString('latin1')}=${range.values === false ? '' : 'v' + key.toString('latin1')}`)
}

test('query honours every range option and their combinations, in bytewise order', async () => {
  const { store } = await openStore()
  await store.write(randomUUID(), keys.map((key) => ({ type: 'put', key, value: Buffer.concat([b('v'), key]) })), true)
  const bounds = [undefined, 'a', 'ab', 'b', 'b\xff', 'zz'].map((k) => (k === undefined ? undefined : Buffer.from(k, 'latin1')))
  let cases = 0
  for (const lower of bounds) for (const upper of bounds) for (const prefix of [undefined, b('a'), b('b'), b('x')]) {
    for (const inclusive of [true, false]) for (const reverse of [false, true]) {
      const range: WireRange = { reverse }
      if (lower) range[inclusive ? 'gte' : 'gt'] = lower
      if (upper) range[inclusive ? 'lte' : 'lt'] = upper
      if (prefix) range.prefix = prefix
      const pages = await collect(store.query(range))
      assert.deepEqual(pages, model(range), JSON.stringify(range))
      cases++
    }
  }
  for (const extra of [{ limit: 0 }, { limit: 3 }, { limit: 3, reverse: true }, { keys: false }, { values: false }, { limit: 100 }]) {
    const pages = await collect(store.query(extra))
    assert.deepEqual(pages, model(extra), JSON.stringify(extra))
  }
  assert.ok(cases > 500)
})

test('query pages stay within queryPageItemsMax and about queryPageBytesMax (RocksDB)', async () => {
  const dir = makeTempDir()
  const engine = createEngine({ kind: 'rocksdb', dir })
  await engine.open()
  try {
    const store = new LocalStore(engine)
    await store.open()
    const value = Buffer.alloc(1000, 7)
    for (let start = 0; start < 5000; start += 1000) {
      const ops = Array.from({ length: 1000 }, (_, i) => ({ type: 'put', key: b(`k${String(start + i).padStart(5, '0')}`), value }) as const)
      await store.write(randomUUID(), ops, false)
    }
    let pages = 0
    let total = 0
    for await (const page of store.query({})) {
      pages++
      total += page.keys.length
      assert.ok(page.keys.length <= Limits.queryPageItemsMax)
      assert.ok(page.keys.length * 1006 <= Limits.queryPageBytesMax + 128 * 1006, `page of ${page.keys.length} entries`)
    }
    assert.equal(total, 5000)
    assert.ok(pages >= 5000 * 1006 / (Limits.queryPageBytesMax + 128 * 1006), `${pages} pages`)
    await store.close()
  } finally {
    await engine.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a sync write is acknowledged only after its fsync; later groups are written meanwhile', async () => {
  const { engine, store } = await openStore()
  const sync = engine.sync.bind(engine)
  let release: (() => void) | undefined
  engine.sync = async () => {
    await new Promise<void>((resolve) => (release = resolve))
    await sync()
  }
  let acknowledged = false
  const first = store.write(randomUUID(), [put('a', '1')], true).then(() => void (acknowledged = true))
  await new Promise((resolve) => setTimeout(resolve, 20))
  assert.equal(acknowledged, false, 'not acknowledged while its fsync is held')
  await store.write(randomUUID(), [put('b', '2')], false)
  assert.equal((await store.get(b('b')))?.toString(), '2', 'an unsynced write behind it was written and answered')
  assert.equal(acknowledged, false)
  release!()
  await first
  await store.close()
})
