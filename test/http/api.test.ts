/**
 * The key/value, batch, cluster, health, metrics, OpenAPI and UI routes against a real HTTP
 * server over a local database, and the front end's limits and error shapes.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { raw, startTestServer, type TestServer } from './helpers.js'

let server: TestServer

before(async () => {
  server = await startTestServer()
})

after(async () => {
  await server.close()
})

const keyUrl = (key: string): string => `${server.url}/v1/kv/${encodeURIComponent(key)}`

async function errorCode(reply: Response): Promise<string> {
  return ((await reply.json()) as { error: { code: string } }).error.code
}

test('PUT, GET, HEAD and DELETE one key; the client library sees the same data', async () => {
  assert.equal((await fetch(keyUrl('greeting/ünï code'), { method: 'PUT', body: 'hello' })).status, 204)
  const got = await fetch(keyUrl('greeting/ünï code'))
  assert.equal(got.status, 200)
  assert.equal(await got.text(), 'hello')
  assert.equal((await server.kv.get('greeting/ünï code'))?.toString(), 'hello')
  const head = await raw(keyUrl('greeting/ünï code'), { method: 'HEAD' })
  assert.equal(head.headers['content-length'], '5')
  assert.equal((await fetch(keyUrl('greeting/ünï code'), { method: 'DELETE' })).status, 204)
  const gone = await fetch(keyUrl('greeting/ünï code'))
  assert.equal(gone.status, 404)
  assert.equal(await errorCode(gone), 'KV_ERR_NOT_FOUND')
  assert.equal((await fetch(keyUrl('never'), { method: 'DELETE' })).status, 204)
})

test('bad input gets a JSON error with a KV_ERR code and the matching status', async () => {
  const tooBig = await fetch(keyUrl('big'), { method: 'PUT', body: Buffer.alloc(1024 * 1024 + 1) })
  assert.equal(tooBig.status, 413)
  assert.equal(await errorCode(tooBig), 'KV_ERR_VALUE_TOO_LARGE')
  const longKey = await fetch(keyUrl('k'.repeat(5000)), { method: 'PUT', body: 'x' })
  assert.equal(longKey.status, 413)
  assert.equal(await errorCode(longKey), 'KV_ERR_KEY_TOO_LARGE')
  const twoSegments = await raw(`${server.url}/v1/kv/a/b`)
  assert.equal(twoSegments.status, 400)
  assert.equal(JSON.parse(twoSegments.body.toString()).error.code, 'KV_ERR_INVALID')
  const method = await fetch(`${server.url}/v1/kv`, { method: 'POST' })
  assert.equal(method.status, 405)
  assert.equal(await errorCode(method), 'KV_ERR_UNKNOWN_METHOD')
  const route = await fetch(`${server.url}/v2/nothing`)
  assert.equal(route.status, 404)
  assert.equal((await fetch(`${server.url}/v1/kv?limit=5000`)).status, 400)
  const headers = await raw(`${server.url}/healthz`, { headers: { 'x-padding': 'p'.repeat(20_000) } })
  assert.equal(headers.status, 431)
})

test('GET /v1/kv lists keys with sizes, prefix, bounds, reverse and paging; file keys stay hidden', async () => {
  for (let i = 0; i < 5; i++) await server.kv.put(`list/${i}`, 'v'.repeat(i))
  await server.kv.put('other', 'x')
  await fetch(`${server.url}/v1/files/hidden.txt`, { method: 'PUT', body: 'file content' })
  const page = (await (await fetch(`${server.url}/v1/kv?prefix=list/&limit=2`)).json()) as { items: Array<{ key: string; size: number }>; next?: string }
  assert.deepEqual(page.items, [
    { key: 'list/0', size: 0 },
    { key: 'list/1', size: 1 },
  ])
  assert.equal(page.next, 'list/1')
  const rest = (await (await fetch(`${server.url}/v1/kv?prefix=list/&gt=${page.next}`)).json()) as { items: Array<{ key: string }>; next?: string }
  assert.deepEqual(rest.items.map((i) => i.key), ['list/2', 'list/3', 'list/4'])
  assert.equal(rest.next, undefined)
  const reversed = (await (await fetch(`${server.url}/v1/kv?prefix=list/&reverse=true&limit=2`)).json()) as { items: Array<{ key: string }> }
  assert.deepEqual(reversed.items.map((i) => i.key), ['list/4', 'list/3'])
  const all = (await (await fetch(`${server.url}/v1/kv?limit=1000`)).json()) as { items: Array<{ key: string }> }
  assert.ok(all.items.every((item) => !item.key.includes('hidden.txt') && item.key.charCodeAt(0) !== 0xfffd))
  const allReversed = (await (await fetch(`${server.url}/v1/kv?reverse=true&limit=1`)).json()) as { items: Array<{ key: string }> }
  assert.equal(allReversed.items[0]!.key, 'other')
})

test('POST /v1/batch applies puts and deletes atomically; a bad op changes nothing', async () => {
  await server.kv.put('batch/old', 'x')
  const ops = [
    { type: 'put', key: 'batch/a', value: Buffer.from('A').toString('base64') },
    { type: 'put', key: 'batch/b', value: Buffer.from([0, 255]).toString('base64') },
    { type: 'del', key: 'batch/old' },
  ]
  const done = await fetch(`${server.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ ops }) })
  assert.equal(done.status, 200)
  assert.deepEqual(await done.json(), { ok: true, ops: 3 })
  assert.deepEqual(await server.kv.get('batch/b'), Buffer.from([0, 255]))
  assert.equal(await server.kv.get('batch/old'), undefined)
  const bad = await fetch(`${server.url}/v1/batch`, { method: 'POST', body: JSON.stringify({ ops: [{ type: 'put', key: 'batch/c', value: 'QQ==' }, { type: 'nope', key: 'x' }] }) })
  assert.equal(bad.status, 400)
  assert.equal(await server.kv.get('batch/c'), undefined)
  assert.equal((await fetch(`${server.url}/v1/batch`, { method: 'POST', body: 'not json' })).status, 400)
})

test('/v1/cluster describes the local server as one node and one shard owning every slot', async () => {
  const view = (await (await fetch(`${server.url}/v1/cluster`)).json()) as {
    mode: string
    nodes: Array<{ id: number; roles: string[]; health: string; http: string; opsTotal: number; pid: number }>
    shards: Array<{ leader: number; replicas: number[]; slots: Array<[number, number]> }>
  }
  assert.equal(view.mode, 'local')
  assert.equal(view.nodes.length, 1)
  assert.equal(view.nodes[0]!.health, 'up')
  assert.equal(view.nodes[0]!.http, server.url)
  assert.ok(view.nodes[0]!.opsTotal > 0)
  assert.equal(typeof view.nodes[0]!.pid, 'number')
  assert.deepEqual(view.shards[0]!.slots, [[0, 4095]])
})

test('/healthz, /metrics with per-route counts and latencies, /v1/openapi.json, and the UI files', async () => {
  assert.deepEqual(await (await fetch(`${server.url}/healthz`)).json(), { ok: true })
  const metrics = await (await fetch(`${server.url}/metrics`)).text()
  assert.match(metrics, /distkv_http_requests_total\{route="v1_kv_key",method="PUT",status="204"\} \d+/)
  assert.match(metrics, /distkv_http_file_bytes_total\{direction="in"\} [1-9]/)
  assert.match(metrics, /distkv_http_request_duration_seconds_bucket\{le="0.1",route="v1_kv_key",method="GET"\} \d+/)
  const spec = (await (await fetch(`${server.url}/v1/openapi.json`)).json()) as { openapi: string; paths: Record<string, unknown> }
  assert.equal(spec.openapi, '3.1.0')
  for (const path of ['/v1/kv/{key}', '/v1/kv', '/v1/batch', '/v1/files/{name}', '/v1/files', '/v1/cluster', '/healthz', '/metrics']) assert.ok(path in spec.paths, path)
  const page = await fetch(`${server.url}/`)
  assert.equal(page.headers.get('content-type'), 'text/html; charset=utf-8')
  assert.match(await page.text(), /ui\/app\.js/)
  const script = await fetch(`${server.url}/ui/app.js`)
  assert.equal(script.status, 200)
  assert.equal((await raw(`${server.url}/ui/app.js`, { headers: { 'if-none-match': script.headers.get('etag')! } })).status, 304)
})

test('file transfers over uploadsMax get 429 KV_ERR_TOO_MANY_REQUESTS until one finishes', async () => {
  const limited = await startTestServer({ uploadsMax: 1 })
  try {
    const { request } = await import('node:http')
    // Hold one upload open: headers and part of the body sent, the rest withheld.
    const held = request(`${limited.url}/v1/files/held.bin`, { method: 'PUT', headers: { 'content-length': '100000' } })
    const reply = new Promise<number>((resolve) => held.on('response', (res) => (res.resume(), resolve(res.statusCode!))))
    held.write(Buffer.alloc(1000))
    let second: Response | undefined
    for (let i = 0; i < 50; i++) {
      second = await fetch(`${limited.url}/v1/files/other.bin`, { method: 'PUT', body: 'x' })
      if (second.status === 429) break
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.equal(second!.status, 429)
    assert.equal(await errorCode(second!), 'KV_ERR_TOO_MANY_REQUESTS')
    held.end(Buffer.alloc(99_000))
    assert.equal(await reply, 201)
    assert.equal((await fetch(`${limited.url}/v1/files/other.bin`, { method: 'PUT', body: 'x' })).status, 201)
  } finally {
    await limited.close()
  }
})

test('a token protects /v1/* (401 KV_ERR_AUTH) but not the page, health or metrics', async () => {
  const guarded = await startTestServer({ token: 'secret-token' })
  try {
    const denied = await fetch(`${guarded.url}/v1/kv`)
    assert.equal(denied.status, 401)
    assert.equal(await errorCode(denied), 'KV_ERR_AUTH')
    assert.equal((await fetch(`${guarded.url}/v1/kv`, { headers: { authorization: 'Bearer wrong' } })).status, 401)
    assert.equal((await fetch(`${guarded.url}/v1/kv`, { headers: { authorization: 'Bearer secret-token' } })).status, 200)
    assert.equal((await fetch(`${guarded.url}/`)).status, 200)
    assert.equal((await fetch(`${guarded.url}/healthz`)).status, 200)
  } finally {
    await guarded.close()
  }
})
