// The whole DistKV client API through a cluster proxy (`connect()` against `distkv dev`): point
// reads and writes, batches (atomic in one shard, refused across shards, split when asked),
// queries merged across shards in both directions with bounds and limits, bad inputs, kv.multi
// frames (per-op ids and errors; writes batched per shard, each still applied once), and the
// admin.cluster view.
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { slotOf, SLOT_COUNT } from '../../src/meta/slots.js'
import { decodeMultiReply, encodeMultiRequestBody, MULTI_BINARY_METHOD } from '../../src/local/multi-codec.js'
import type { MultiOp } from '../../src/local/multi.js'
import { WireClient } from '../../src/wire/client.js'
import { requestIdFromBytes } from '../../src/wire/codec.js'
import { DevFixture, keysOnDistinctShards } from './fixture.js'

let dev: DevFixture
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ shards: 4 })
  kv = await dev.client()
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

test('put, get, has, getSize, getMany and del route to the owning shard', async () => {
  await kv.put('alpha', 'one')
  await kv.put(Buffer.from([0, 1, 2]), Buffer.from([9, 9]))
  assert.equal((await kv.get('alpha'))?.toString(), 'one')
  assert.deepEqual(await kv.get(Buffer.from([0, 1, 2])), Buffer.from([9, 9]))
  assert.equal(await kv.get('missing'), undefined)
  assert.equal(await kv.has('alpha'), true)
  assert.equal(await kv.has('missing'), false)
  assert.equal(await kv.getSize('alpha'), 3)
  assert.equal(await kv.getSize('missing'), undefined)
  const many = await kv.getMany(['alpha', 'missing', Buffer.from([0, 1, 2])])
  assert.deepEqual(many.map((v) => v?.toString('hex')), [Buffer.from('one').toString('hex'), undefined, '0909'])
  await kv.del('alpha')
  assert.equal(await kv.get('alpha'), undefined)
  await kv.sync()
})

test('a batch in one shard is atomic; across shards it is refused unless atomic is false', async () => {
  const view = await dev.view(kv)
  const [a, b] = keysOnDistinctShards(view, slotOf, 2)
  await assert.rejects(kv.batch([{ type: 'put', key: a!, value: '1' }, { type: 'put', key: b!, value: '2' }]), { code: 'KV_ERR_CROSS_SHARD_BATCH' })
  assert.equal(await kv.get(a!), undefined, 'a refused batch writes nothing')
  await kv.batch([{ type: 'put', key: a!, value: '1' }, { type: 'put', key: b!, value: '2' }], { atomic: false })
  assert.equal((await kv.get(b!))?.toString(), '2')
  await kv.batch([{ type: 'put', key: '{user:7}name', value: 'ann' }, { type: 'put', key: '{user:7}mail', value: 'a@x' }, { type: 'del', key: '{user:7}old' }])
  assert.equal((await kv.get('{user:7}mail'))?.toString(), 'a@x')
  await kv.batch([])
})

test('query merges every shard in key order, with bounds, limit and reverse, across pages', async () => {
  const keys = Array.from({ length: 1500 }, (_, i) => `q/${String(i).padStart(5, '0')}`)
  for (let i = 0; i < keys.length; i += 500) {
    await Promise.all(keys.slice(i, i + 500).map((key) => kv.put(key, `v${key}`)))
  }
  const shardsHit = new Set(keys.map((key) => slotOf(Buffer.from(key))).map((slot) => Math.floor((slot * 4) / SLOT_COUNT)))
  assert.ok(shardsHit.size > 1, 'the keys span shards')
  const all: string[] = []
  for await (const [key, value] of kv.query({ prefix: 'q/' })) {
    all.push(key.toString())
    assert.equal(value.toString(), `v${key}`)
  }
  assert.deepEqual(all, keys)
  const reversed: string[] = []
  for await (const [key] of kv.query({ prefix: 'q/', reverse: true, limit: 10 })) reversed.push(key.toString())
  assert.deepEqual(reversed, keys.slice(-10).reverse())
  const bounded: string[] = []
  for await (const [key, value] of kv.query({ gt: 'q/00010', lte: 'q/00020', values: false })) {
    bounded.push(key.toString())
    assert.equal(value.length, 0)
  }
  assert.deepEqual(bounded, keys.slice(11, 21))
  let none = 0
  for await (const _ of kv.query({ prefix: 'q/', limit: 0 })) none++
  assert.equal(none, 0)
})

test('bad input is refused with its code before anything is written', async () => {
  await assert.rejects(kv.put('x'.repeat(5000), 'v'), { code: 'KV_ERR_KEY_TOO_LARGE' })
  await assert.rejects(kv.put('k', Buffer.alloc(1024 * 1024 + 1)), { code: 'KV_ERR_VALUE_TOO_LARGE' })
  await assert.rejects(kv.call('kv.put', { key: 42, value: 'v' }), { code: 'KV_ERR_INVALID' })
  await assert.rejects(kv.call('store.write', { shard: 2, ops: [] }), { code: 'KV_ERR_AUTH' })
  await assert.rejects(kv.call('admin.addShard', {}), { code: 'KV_ERR_AUTH' })
})

test('admin.cluster shows nodes, the meta leader, shards with leaders and every slot once', async () => {
  const view = await dev.view(kv)
  assert.equal(view.mode, 'cluster')
  assert.equal(view.nodes.length, 3)
  assert.ok(view.nodes.every((n) => n.health === 'up' && n.roles.length === 3))
  assert.notEqual(view.meta.leader, null)
  assert.equal(view.shards.length, 4)
  let slots = 0
  for (const shard of view.shards) {
    assert.equal(shard.replicas.length, 3)
    assert.notEqual(shard.leader, null)
    slots += shard.slotCount
  }
  assert.equal(slots, SLOT_COUNT)
})

/** rawClient connects to a proxy without the client library, to send frames with chosen ids. */
async function rawClient(endpoint: string): Promise<WireClient> {
  const [host, port] = endpoint.split(':')
  return WireClient.connect({ host: host!, port: Number(port) }, { clientId: randomUUID(), name: 'api-test', pid: process.pid })
}

test('kv.multiBinary: the binary frame of coalesced calls is served by the proxy (no fallback round trip), per-op ids and errors', async () => {
  const view = await dev.view(kv)
  const keys = keysOnDistinctShards(view, slotOf, 4).map((key) => Buffer.from(`bin-${key}`))
  const ids = keys.map(() => randomBytes(16))
  const frame = (value: string): MultiOp[] => [
    ...keys.map((key, i): MultiOp => [1, ids[i]!, key, Buffer.from(value), true]),
    [1, randomBytes(16), Buffer.alloc(5000, 0x61), Buffer.from(value), true],
  ]
  const client = await rawClient(dev.endpoints()[0]!)
  try {
    const first = decodeMultiReply(await client.requestBody(MULTI_BINARY_METHOD, encodeMultiRequestBody(frame('once')), { timeoutMs: 20_000 }), keys.length + 1)
    assert.deepEqual(first.slice(0, keys.length), keys.map(() => null))
    assert.equal((first[keys.length] as { code: string }).code, 'KV_ERR_KEY_TOO_LARGE', 'the bad op fails alone')
    // The same ids again: answered, not applied again.
    decodeMultiReply(await client.requestBody(MULTI_BINARY_METHOD, encodeMultiRequestBody(frame('twice')), { timeoutMs: 20_000 }), keys.length + 1)
    const reads: MultiOp[] = keys.map((key) => [0, randomBytes(16), key])
    const values = decodeMultiReply(await client.requestBody(MULTI_BINARY_METHOD, encodeMultiRequestBody(reads), { timeoutMs: 20_000 }), keys.length) as Buffer[]
    assert.deepEqual(values.map((value) => value.toString()), keys.map(() => 'once'))
    await assert.rejects(client.requestBody(MULTI_BINARY_METHOD, Buffer.from([1, 0, 0, 0, 9]), { timeoutMs: 20_000 }), { code: 'KV_ERR_PROTOCOL' })
  } finally {
    await client.close()
  }
})

test('kv.multi: writes batched per shard, each op applied once by its own id, a bad op fails alone', async () => {
  const view = await dev.view(kv)
  const keys = keysOnDistinctShards(view, slotOf, 4).map((key) => Buffer.from(key))
  const ids = keys.map(() => randomBytes(16))
  const frame = (value: string) => [
    ...keys.map((key, i) => [1, ids[i], key, Buffer.from(value), true]),
    [1, randomBytes(16), Buffer.alloc(5000, 0x61), Buffer.from(value), true],
    [0, randomBytes(16), keys[0]],
  ]
  const [first, second] = dev.endpoints()
  const client = await rawClient(first!)
  const other = await rawClient(second!)
  try {
    const results = (await client.request('kv.multi', { ops: frame('once') }, { timeoutMs: 20_000 })) as unknown[]
    assert.deepEqual(results.slice(0, keys.length), keys.map(() => null))
    assert.equal((results[keys.length] as { code: string }).code, 'KV_ERR_KEY_TOO_LARGE', 'the bad op fails alone')
    // Re-sent with the same ids, through another proxy and as lone puts: answered, not applied again.
    await other.request('kv.multi', { ops: frame('twice') }, { timeoutMs: 20_000 })
    await Promise.all(keys.map((key, i) => other.request('kv.put', { key, value: Buffer.from('thrice') }, { requestId: requestIdFromBytes(ids[i]!), timeoutMs: 20_000 })))
    const read = (await client.request('kv.multi', { ops: keys.map((key) => [0, randomBytes(16), key]) }, { timeoutMs: 20_000 })) as Buffer[]
    assert.deepEqual(read.map((value) => value.toString()), keys.map(() => 'once'))
    // Concurrent lone puts with fresh ids share groups and are all applied.
    await Promise.all(keys.map((key) => client.request('kv.put', { key, value: Buffer.from('new') }, { timeoutMs: 20_000 })))
    assert.deepEqual((await kv.getMany(keys)).map((value) => value?.toString()), keys.map(() => 'new'))
  } finally {
    await client.close()
    await other.close()
  }
})
