/**
 * The file routes against a real HTTP server over a local database: round trips at the chunk
 * boundaries and at 50 MiB, Range (206/416), If-None-Match (304), HEAD, 404, 413 (by
 * Content-Length without reading the body, and for a chunked body past the limit), names
 * with spaces, unicode and '../', concurrent uploads to one name, an upload cut off halfway,
 * and listing with paging.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { request as httpRequest } from 'node:http'
import { raw, startTestServer, type TestServer } from './helpers.js'

const chunk = 1024 * 1024
let server: TestServer

before(async () => {
  server = await startTestServer({ files: { fileBytesMax: 64 * chunk } })
})

after(async () => {
  await server.close()
})

const fileUrl = (name: string): string => `${server.url}/v1/files/${encodeURIComponent(name)}`

async function put(name: string, body: Buffer, contentType = 'application/octet-stream'): Promise<Response> {
  return fetch(fileUrl(name), { method: 'PUT', body, headers: { 'content-type': contentType } })
}

test('PUT then GET round trips byte for byte at 0, 1, chunk-1, chunk, chunk+1 and 50 MiB', async () => {
  for (const size of [0, 1, chunk - 1, chunk, chunk + 1, 50 * chunk]) {
    const data = randomBytes(size)
    const created = await put(`sizes/${size}`, data, 'image/png')
    assert.equal(created.status, 201)
    const info = (await created.json()) as { size: number; sha256: string; etag: string }
    assert.equal(info.size, size)
    assert.equal(info.sha256, createHash('sha256').update(data).digest('hex'))
    const got = await fetch(fileUrl(`sizes/${size}`))
    assert.equal(got.status, 200)
    assert.equal(got.headers.get('content-type'), 'image/png')
    assert.equal(got.headers.get('content-length'), String(size))
    assert.equal(got.headers.get('etag'), info.etag)
    assert.ok(Buffer.from(await got.arrayBuffer()).equals(data), `size ${size} differs`)
  }
})

test('Range gives 206 with Content-Range; suffix and open ranges; 416 outside the file; HEAD has no body', async () => {
  const data = randomBytes(2 * chunk + 10)
  await put('range.bin', data)
  const cases: Array<[string, number, number]> = [
    ['bytes=0-0', 0, 0],
    ['bytes=100-199', 100, 199],
    [`bytes=${chunk - 3}-${chunk + 3}`, chunk - 3, chunk + 3],
    [`bytes=${2 * chunk}-`, 2 * chunk, 2 * chunk + 9],
    ['bytes=-5', 2 * chunk + 5, 2 * chunk + 9],
    [`bytes=10-${10 * chunk}`, 10, 2 * chunk + 9],
  ]
  for (const [header, start, end] of cases) {
    const reply = await raw(fileUrl('range.bin'), { headers: { range: header } })
    assert.equal(reply.status, 206, header)
    assert.equal(reply.headers['content-range'], `bytes ${start}-${end}/${data.length}`)
    assert.ok(reply.body.equals(data.subarray(start, end + 1)), header)
  }
  const outside = await raw(fileUrl('range.bin'), { headers: { range: `bytes=${data.length}-` } })
  assert.equal(outside.status, 416)
  assert.equal(outside.headers['content-range'], `bytes */${data.length}`)
  const head = await raw(fileUrl('range.bin'), { method: 'HEAD' })
  assert.equal(head.status, 200)
  assert.equal(head.headers['content-length'], String(data.length))
  assert.equal(head.headers['accept-ranges'], 'bytes')
  assert.equal(head.body.length, 0)
})

test('If-None-Match with the current ETag gives 304; a stale one gives the new content', async () => {
  const first = (await (await put('cached.txt', Buffer.from('v1'), 'text/plain')).json()) as { etag: string }
  const same = await raw(fileUrl('cached.txt'), { headers: { 'if-none-match': first.etag } })
  assert.equal(same.status, 304)
  assert.equal(same.body.length, 0)
  await put('cached.txt', Buffer.from('v2'), 'text/plain')
  const changed = await raw(fileUrl('cached.txt'), { headers: { 'if-none-match': first.etag } })
  assert.equal(changed.status, 200)
  assert.equal(changed.body.toString(), 'v2')
})

test('?download=1 adds Content-Disposition with the last name segment; without a query string there is none', async () => {
  await put('docs/report "final".txt', Buffer.from('hello'))
  const plain = await fetch(fileUrl('docs/report "final".txt'))
  assert.equal(plain.status, 200)
  assert.equal(plain.headers.get('content-disposition'), null)
  assert.equal(await plain.text(), 'hello')
  const download = await fetch(`${fileUrl('docs/report "final".txt')}?download=1`)
  assert.equal(download.status, 200)
  assert.equal(download.headers.get('content-disposition'), `attachment; filename="report _final_.txt"; filename*=UTF-8''${encodeURIComponent('report "final".txt')}`)
  assert.equal(await download.text(), 'hello')
})

test('404 for a missing file on GET, HEAD and DELETE, as a KV_ERR_NOT_FOUND JSON error', async () => {
  const missing = await fetch(fileUrl('no such file'))
  assert.equal(missing.status, 404)
  assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'KV_ERR_NOT_FOUND')
  assert.equal((await raw(fileUrl('no such file'), { method: 'HEAD' })).status, 404)
  assert.equal((await fetch(fileUrl('no such file'), { method: 'DELETE' })).status, 404)
  await put('deleted.txt', Buffer.from('x'))
  assert.equal((await fetch(fileUrl('deleted.txt'), { method: 'DELETE' })).status, 204)
  assert.equal((await fetch(fileUrl('deleted.txt'))).status, 404)
})

test('413 when Content-Length is over the limit, before any body byte is sent', async () => {
  // Expect: 100-continue lets the server refuse before the client sends the body at all.
  const reply = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = httpRequest(fileUrl('huge.bin'), { method: 'PUT', headers: { 'content-length': String(65 * chunk), expect: '100-continue' } })
    req.on('continue', () => reject(new Error('server asked for the body')))
    req.on('response', (res) => {
      let body = ''
      res.on('data', (part: Buffer) => (body += part))
      res.on('end', () => resolve({ status: res.statusCode!, body }))
    })
    req.on('error', reject)
    req.flushHeaders()
  })
  assert.equal(reply.status, 413)
  assert.equal((JSON.parse(reply.body) as { error: { code: string } }).error.code, 'KV_ERR_FILE_TOO_LARGE')
  const plain = await raw(fileUrl('huge.bin'), { method: 'PUT', headers: { 'content-length': String(65 * chunk) } }).catch((error: Error) => error)
  assert.ok(plain instanceof Error || plain.status === 413)
})

test('413 for a chunked body that passes the limit; nothing is stored', async () => {
  const status = await new Promise<number>((resolve, reject) => {
    const req = httpRequest(fileUrl('chunked-huge.bin'), { method: 'PUT', headers: { 'transfer-encoding': 'chunked' } })
    req.on('response', (res) => {
      res.resume()
      resolve(res.statusCode!)
    })
    req.on('error', reject)
    const piece = Buffer.alloc(chunk)
    let sent = 0
    const pump = (): void => {
      while (sent < 80) {
        sent++
        if (!req.write(piece)) return void req.once('drain', pump)
      }
      req.end()
    }
    pump()
  })
  assert.equal(status, 413)
  assert.equal((await fetch(fileUrl('chunked-huge.bin'))).status, 404)
})

test('names with spaces, unicode and ../ round trip and list under their own names', async () => {
  const names = ['with space.jpg', 'ünïcødé 日本語 🎉.png', '../../etc/passwd', 'dir/../x']
  for (const name of names) assert.equal((await put(name, Buffer.from(name))).status, 201, name)
  for (const name of names) assert.equal(await (await fetch(fileUrl(name))).text(), name)
  // A raw '..' segment in the request path is not normalized away either.
  const rawDots = await raw(server.url, { path: '/v1/files/dir/../x' })
  assert.equal(rawDots.body.toString(), 'dir/../x')
  const listed = (await (await fetch(`${server.url}/v1/files?prefix=${encodeURIComponent('../')}`)).json()) as { items: Array<{ name: string }> }
  assert.deepEqual(listed.items.map((item) => item.name), ['../../etc/passwd'])
  const bad = await raw(`${server.url}/v1/files/bad%00name`, { method: 'PUT', body: 'x' })
  assert.equal(bad.status, 400)
  assert.equal((await raw(`${server.url}/v1/files/%E0%A4%A`)).status, 400)
})

test('concurrent uploads to one name end with one complete upload', async () => {
  const bodies = [0x41, 0x42, 0x43, 0x44].map((byte, i) => Buffer.alloc(2 * chunk + i * 1000, byte))
  const replies = await Promise.all(bodies.map((body) => put('contended.bin', body)))
  assert.ok(replies.every((reply) => reply.status === 201))
  const got = Buffer.from(await (await fetch(fileUrl('contended.bin'))).arrayBuffer())
  assert.ok(bodies.some((body) => body.equals(got)), 'the stored file is exactly one of the uploads')
  // Concurrent first uploads of a name leave the losers to the collector (docs/files.md): run it
  // now rather than wait for the periodic sweep, so later tests can count live chunks exactly.
  await server.http.files.collect('contended.bin')
})

test('an upload cut off halfway leaves nothing visible, and the old version stays whole', async () => {
  const cutOff = (name: string): Promise<void> =>
    new Promise((resolve) => {
      const req = httpRequest(fileUrl(name), { method: 'PUT', headers: { 'content-length': String(8 * chunk) } })
      req.on('error', () => resolve())
      req.write(randomBytes(3 * chunk + 17), () => setTimeout(() => req.destroy(), 50))
    })
  await cutOff('cut.bin')
  assert.equal((await fetch(fileUrl('cut.bin'))).status, 404)
  await put('cut-replace.bin', Buffer.from('the old version'))
  await cutOff('cut-replace.bin')
  assert.equal(await (await fetch(fileUrl('cut-replace.bin'))).text(), 'the old version')
  // The server notices the dropped socket and deletes the partial chunks: wait for every chunk to belong to a listed file.
  const liveChunks = async (): Promise<number> => {
    const listed = (await (await fetch(`${server.url}/v1/files?limit=1000`)).json()) as { items: Array<{ size: number }> }
    const inline = server.http.files.config.inlineBytesMax
    return listed.items.reduce((n, item) => n + (item.size <= inline ? 0 : Math.ceil(item.size / chunk)), 0)
  }
  let stored = -1
  for (let i = 0; i < 250 && stored !== (await liveChunks()); i++) {
    if (i > 0) await new Promise((resolve) => setTimeout(resolve, 20))
    stored = 0
    for await (const _ of server.kv.query({ prefix: Buffer.from([0xff, 0x46, 0x63]), values: false })) stored++
  }
  assert.equal(stored, await liveChunks(), 'chunks of the cut-off uploads were collected')
})

test('a small (inline) upload cut off before its Content-Length stores nothing and keeps the old version', async () => {
  const cutOff = (name: string): Promise<void> =>
    new Promise<void>((resolve) => {
      const req = httpRequest(fileUrl(name), { method: 'PUT', headers: { 'content-length': '1000' } })
      req.on('error', () => resolve())
      req.write(Buffer.alloc(100, 0x61), () => setTimeout(() => req.destroy(), 50))
    }).then(() => new Promise<void>((resolve) => setTimeout(resolve, 300))) // the server's side of the cut runs after ours: give a wrongly kept body time to be stored
  await cutOff('small-cut.bin')
  assert.equal((await fetch(fileUrl('small-cut.bin'))).status, 404)
  await put('small-cut.bin', Buffer.from('the old small version'))
  await cutOff('small-cut.bin')
  assert.equal(await (await fetch(fileUrl('small-cut.bin'))).text(), 'the old small version')
})

test('GET /v1/files lists with prefix and paging', async () => {
  for (let i = 0; i < 5; i++) await put(`paged/${i}.txt`, Buffer.from(String(i)), 'text/plain')
  const first = (await (await fetch(`${server.url}/v1/files?prefix=paged/&limit=2`)).json()) as { items: Array<{ name: string; contentType: string }>; next?: string }
  assert.deepEqual(first.items.map((f) => f.name), ['paged/0.txt', 'paged/1.txt'])
  assert.equal(first.items[0]!.contentType, 'text/plain')
  const second = (await (await fetch(`${server.url}/v1/files?prefix=paged/&limit=10&after=${encodeURIComponent(first.next!)}`)).json()) as { items: Array<{ name: string }>; next?: string }
  assert.deepEqual(second.items.map((f) => f.name), ['paged/2.txt', 'paged/3.txt', 'paged/4.txt'])
  assert.equal(second.next, undefined)
  assert.equal((await fetch(`${server.url}/v1/files?limit=0`)).status, 400)
})
