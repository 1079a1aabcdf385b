// The HTTP front end of a cluster node over its proxy called in process (ClusterInProcessKV):
// keys, listings, batches and files of every layout (empty, inline, chunked across shards)
// round-trip through node 1's HTTP API, and RPC clients see the same data.
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../../src/client/remote.js'
import { raw } from '../../http/helpers.js'
import { DevFixture } from '../../cluster/fixture.js'

let dev: DevFixture
let url: string
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ restart: false })
  url = dev.cluster().nodes[0]!.http
  kv = await dev.client()
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

test('keys, a listing and a batch go through the in-process proxy', async () => {
  assert.equal((await raw(`${url}/v1/kv/greeting`, { method: 'PUT', body: 'hello' })).status, 204)
  assert.equal((await kv.get('greeting'))?.toString(), 'hello')
  await kv.put('from-rpc', 'world')
  const got = await raw(`${url}/v1/kv/from-rpc`)
  assert.equal(got.status, 200)
  assert.equal(got.body.toString(), 'world')
  const ops = Array.from({ length: 20 }, (_, i) => ({ type: 'put', key: `list:${String(i).padStart(2, '0')}`, value: Buffer.from(`v${i}`).toString('base64') }))
  // Keys without a shared {tag} span shards: an atomic batch is refused, as over RPC.
  const refused = await raw(`${url}/v1/batch`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ ops }) })
  assert.equal(refused.status, 400)
  assert.equal(JSON.parse(refused.body.toString()).error.code, 'KV_ERR_CROSS_SHARD_BATCH')
  for (const op of ops) assert.equal((await raw(`${url}/v1/kv/${op.key}`, { method: 'PUT', body: Buffer.from(op.value, 'base64') })).status, 204)
  // The listing is gathered from every shard and merged in key order.
  const page = JSON.parse((await raw(`${url}/v1/kv?prefix=list:&limit=15`)).body.toString()) as { items: Array<{ key: string; size: number }>; next?: string }
  assert.deepEqual(page.items.map((item) => item.key), ops.slice(0, 15).map((op) => op.key))
  // Sizes come from getSize calls made together, i.e. coalesced reads of several shards.
  assert.deepEqual(page.items.map((item) => item.size), ops.slice(0, 15).map((op) => Buffer.from(op.value, 'base64').length))
  const head = await raw(`${url}/v1/kv/from-rpc`, { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], '5')
  assert.equal((await raw(`${url}/healthz`)).status, 200)
  assert.equal(page.next, 'list:14')
  assert.equal((await raw(`${url}/v1/kv/greeting`, { method: 'DELETE' })).status, 204)
  assert.equal(await kv.get('greeting'), undefined)
  assert.equal((await raw(`${url}/v1/kv/greeting`)).status, 404)
})

test('files of every layout round-trip, with Range and 304', async () => {
  for (const size of [0, 16 * 1024, 3 * 1024 * 1024 + 17]) {
    const body = randomBytes(size)
    const name = `${url}/v1/files/cluster/${size}.bin`
    const put = await raw(name, { method: 'PUT', headers: { 'content-type': 'application/x-test' }, body })
    assert.equal(put.status, 201, put.body.toString())
    const info = JSON.parse(put.body.toString()) as { size: number; sha256: string; etag: string }
    assert.equal(info.size, size)
    assert.equal(info.sha256, createHash('sha256').update(body).digest('hex'))
    const got = await raw(name)
    assert.equal(got.status, 200)
    assert.equal(got.headers['content-type'], 'application/x-test')
    assert.ok(got.body.equals(body), `${size} B file read back differs`)
    assert.equal((await raw(name, { headers: { 'if-none-match': info.etag } })).status, 304)
    if (size > 0) {
      const start = Math.floor(size / 3)
      const part = await raw(name, { headers: { range: `bytes=${start}-${start + 99}` } })
      assert.equal(part.status, 206)
      assert.ok(part.body.equals(body.subarray(start, start + 100)))
    }
  }
  const listed = JSON.parse((await raw(`${url}/v1/files?prefix=cluster/`)).body.toString()) as { items: Array<{ name: string }> }
  assert.deepEqual(listed.items.map((item) => item.name).sort(), ['cluster/0.bin', 'cluster/16384.bin', 'cluster/3145745.bin'])
  assert.equal((await raw(`${url}/v1/files/cluster/0.bin`, { method: 'DELETE' })).status, 204)
  assert.equal((await raw(`${url}/v1/files/cluster/0.bin`)).status, 404)
})
