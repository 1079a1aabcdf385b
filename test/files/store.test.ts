/**
 * The file store through the client library against a real local server: round trips at the
 * chunk boundaries, ranges, names, listing with paging, replaced and deleted files leaving no
 * chunks, a failed upload leaving nothing visible, two concurrent uploads to one name ending
 * with one complete file, the size limit, and the collector's grace period and deadlines.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash, randomBytes } from 'node:crypto'
import { open, type DistKV } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { files, type FileStore } from '../../src/files/index.js'
import { chunkKey, manifestKey, recordKey } from '../../src/files/keys.js'
import { cleanup, makeTempDir } from '../local/helpers.js'

const chunk = 1024 * 1024
let dir: string
let kv: DistKV
let store: FileStore

before(async () => {
  dir = makeTempDir('distkv-files-')
  kv = await open(dir, { name: 'files-test', idleTimeoutSeconds: 0 })
  store = files(kv, { garbageGraceMs: 0 })
})

after(async () => {
  await kv.close()
  await cleanup(dir)
})

/** fileKeys counts the keys of the file namespace of each kind (manifests, chunks, records). */
async function fileKeys(): Promise<{ m: number; c: number; r: number }> {
  const counts = { m: 0, c: 0, r: 0 }
  for await (const [key] of kv.query({ gte: Buffer.from([0xff]), values: false })) {
    const kind = String.fromCharCode(key[2]!) as 'm' | 'c' | 'r'
    counts[kind]++
  }
  return counts
}

async function* pieces(data: Buffer, size: number, failAt?: number): AsyncGenerator<Buffer> {
  for (let offset = 0; offset < data.length; offset += size) {
    if (failAt !== undefined && offset >= failAt) throw new Error('source broke')
    yield data.subarray(offset, offset + size)
  }
}

test('round trips byte for byte at 0, 1, chunk-1, chunk, chunk+1 and 3 chunks + 5 bytes', async () => {
  for (const size of [0, 1, chunk - 1, chunk, chunk + 1, 3 * chunk + 5]) {
    const data = randomBytes(size)
    const info = await store.putFile(`size-${size}`, pieces(data, 64 * 1024 + 7), { contentType: 'application/x-test' })
    assert.equal(info.size, size)
    assert.equal(info.sha256, createHash('sha256').update(data).digest('hex'))
    assert.equal(info.contentType, 'application/x-test')
    const back = await store.readFile(`size-${size}`)
    assert.ok(back !== undefined && back.equals(data), `size ${size} differs`)
  }
})

test('small files live inside their manifest (no chunk, no record) up to inlineBytesMax', async () => {
  const limit = store.config.inlineBytesMax
  for (const size of [limit, limit + 1]) {
    const before = await fileKeys()
    const data = randomBytes(size)
    await store.putFile(`inline-${size}`, data)
    const after = await fileKeys()
    assert.deepEqual(after, size <= limit ? { ...before, m: before.m + 1 } : { m: before.m + 1, c: before.c + 1, r: before.r + 1 })
    assert.ok((await store.readFile(`inline-${size}`))!.equals(data))
    const file = await store.getFile(`inline-${size}`, { range: { start: 3, end: 9 } })
    const parts: Buffer[] = []
    for await (const part of file!.stream) parts.push(part as Buffer)
    assert.deepEqual(Buffer.concat(parts), data.subarray(3, 10))
  }
  // Replacing a chunked file by an inline one is one write: the old upload's record lets the
  // sweep find its chunks afterwards.
  const before = await fileKeys()
  await store.putFile('inline-' + (limit + 1), 'now small')
  assert.deepEqual(await fileKeys(), before)
  await store.sweep()
  assert.deepEqual(await fileKeys(), { m: before.m, c: before.c - 1, r: before.r - 1 })
  assert.equal((await store.readFile('inline-' + (limit + 1)))?.toString(), 'now small')
})

test('an inline manifest is stored as 01 | u32 BE JSON byte length | JSON | content (docs/files.md), names of any UTF-8 included', async () => {
  // Multi-byte characters make the JSON's byte length differ from its string length.
  const name = 'inline/ünïcödé 名前 🐈.bin'
  const data = randomBytes(1000)
  const info = await store.putFile(name, data, { contentType: 'image/png' })
  const stored = (await kv.get(manifestKey(name)))!
  assert.equal(stored[0], 0x01)
  const jsonBytes = stored.readUInt32BE(1)
  const json = JSON.parse(stored.subarray(5, 5 + jsonBytes).toString('utf8')) as Record<string, unknown>
  assert.deepEqual(Object.keys(json), ['v', 'name', 'size', 'contentType', 'sha256', 'etag', 'created', 'uploadId', 'chunkBytes', 'chunks'])
  assert.deepEqual({ name: json.name, size: json.size, contentType: json.contentType, sha256: json.sha256, chunks: json.chunks }, { name, size: 1000, contentType: 'image/png', sha256: info.sha256, chunks: 0 })
  assert.ok(stored.subarray(5 + jsonBytes).equals(data))
  assert.ok((await store.readFile(name))!.equals(data))
})

test('ranges: inside one chunk, across chunks, the last byte, empty', async () => {
  const data = randomBytes(2 * chunk + 100)
  await store.putFile('ranged', data)
  for (const [start, end] of [
    [0, 0],
    [10, 20],
    [chunk - 5, chunk + 5],
    [chunk - 1, 2 * chunk + 99],
    [2 * chunk + 99, 2 * chunk + 99],
    [5, 4],
  ] as const) {
    const file = await store.getFile('ranged', { range: { start, end } })
    const parts: Buffer[] = []
    for await (const part of file!.stream) parts.push(part as Buffer)
    assert.deepEqual(Buffer.concat(parts), data.subarray(start, end + 1), `range ${start}-${end}`)
  }
  await assert.rejects(store.getFile('ranged', { range: { start: 0, end: 2 * chunk + 100 } }), { code: ErrorCode.INVALID })
})

test('names with spaces, unicode and ../ are names, not paths; bad names are refused', async () => {
  for (const name of ['with space.txt', 'ünïcødé/日本語 🎉.png', '../../etc/passwd', '..', 'a/b/../c']) {
    await store.putFile(name, name)
    assert.equal((await store.readFile(name))?.toString(), name)
  }
  for (const bad of ['', 'nul\u0000byte', 'tab\tname', 'x'.repeat(1025), '\ud800lone']) {
    await assert.rejects(store.putFile(bad, 'x'), { code: ErrorCode.INVALID }, JSON.stringify(bad).slice(0, 20))
  }
  assert.equal(await store.getFile('never-stored'), undefined)
  assert.equal(await store.deleteFile('never-stored'), false)
})

test('listFiles pages by name and filters by prefix; plain key listings below 0xFF do not see files', async () => {
  for (let i = 0; i < 7; i++) await store.putFile(`list/${i}`, `content ${i}`, { contentType: 'text/plain' })
  const first = await store.listFiles({ prefix: 'list/', limit: 3 })
  assert.deepEqual(first.items.map((f) => f.name), ['list/0', 'list/1', 'list/2'])
  assert.equal(first.next, 'list/2')
  const rest = await store.listFiles({ prefix: 'list/', after: first.next!, limit: 10 })
  assert.deepEqual(rest.items.map((f) => f.name), ['list/3', 'list/4', 'list/5', 'list/6'])
  assert.equal(rest.next, undefined)
  assert.equal(rest.items[0]!.contentType, 'text/plain')
  assert.match(rest.items[0]!.etag, /^"[0-9a-f]{32}"$/)
  for await (const [key] of kv.query({ lt: Buffer.from([0xff]) })) assert.notEqual(key[0], 0xff)
})

test('replacing and deleting a file removes the old chunks and records', async () => {
  const before = await fileKeys()
  await store.putFile('replaced', randomBytes(3 * chunk))
  await store.putFile('replaced', randomBytes(chunk + 1))
  let counts = await fileKeys()
  assert.deepEqual(counts, { m: before.m + 1, c: before.c + 2, r: before.r + 1 })
  assert.equal(await store.deleteFile('replaced'), true)
  counts = await fileKeys()
  assert.deepEqual(counts, before)
  assert.equal(await store.getFile('replaced'), undefined)
})

test('an upload whose source fails halfway leaves nothing visible and no chunks', async () => {
  const before = await fileKeys()
  const data = randomBytes(4 * chunk)
  await assert.rejects(store.putFile('broken', pieces(data, 256 * 1024, 2 * chunk + 1)), /source broke/)
  assert.equal(await store.statFile('broken'), undefined)
  assert.deepEqual(await fileKeys(), before)
  // A failed replacement keeps the old file whole.
  await store.putFile('kept', 'old content')
  await assert.rejects(store.putFile('kept', pieces(data, 256 * 1024, chunk)), /source broke/)
  assert.equal((await store.readFile('kept'))?.toString(), 'old content')
})

test('two concurrent uploads to one name end with one complete file, and the loser is collected', async () => {
  const before = await fileKeys()
  const a = Buffer.alloc(3 * chunk + 11, 0x61)
  const b = Buffer.alloc(2 * chunk + 22, 0x62)
  const results = await Promise.all([store.putFile('race', pieces(a, 100_000)), store.putFile('race', pieces(b, 130_000))])
  const winner = (await store.readFile('race'))!
  assert.ok(winner.equals(a) || winner.equals(b), 'the file is one upload whole, never a mix')
  const info = (await store.statFile('race'))!
  assert.ok(results.some((r) => r.etag === info.etag))
  await store.collect('race')
  const counts = await fileKeys()
  assert.equal(counts.c - before.c, Math.ceil(winner.length / chunk))
  assert.equal(counts.r - before.r, 1)
})

test('the file size limit fails the upload with KV_ERR_FILE_TOO_LARGE and keeps nothing', async () => {
  const small = files(kv, { fileBytesMax: 2 * chunk, garbageGraceMs: 0 })
  const before = await fileKeys()
  await assert.rejects(small.putFile('too-big', pieces(randomBytes(3 * chunk), 300_000)), { code: ErrorCode.FILE_TOO_LARGE })
  assert.deepEqual(await fileKeys(), before)
  const info = await small.putFile('just-fits', randomBytes(2 * chunk))
  assert.equal(info.size, 2 * chunk)
})

test('collector: a superseded upload waits out the grace period; an abandoned one waits for its deadline', async () => {
  let now = Date.now()
  const graceful = files(kv, { garbageGraceMs: 60_000, now: () => now })
  await graceful.putFile('graced', randomBytes(chunk + 1))
  const old = (await graceful.getFile('graced'))!
  await graceful.putFile('graced', 'new')
  assert.equal(await graceful.collect('graced'), 0) // marks the replaced upload garbage
  // The old reader still gets its bytes: the chunks outlive the replacement by the grace period.
  let bytes = 0
  for await (const part of old.stream) bytes += (part as Buffer).length
  assert.equal(bytes, chunk + 1)
  now += 61_000
  assert.equal(await graceful.collect('graced'), 1)
  // An upload that died after writing its record and a chunk: kept until deadline + margin.
  const id = 'ab'.repeat(16)
  await kv.put(recordKey('abandoned', id), JSON.stringify({ state: 'uploading', deadline: now + 1000 }))
  await kv.put(chunkKey(id, 0), 'orphan')
  assert.equal(await graceful.collect('abandoned'), 0)
  now += 1000 + 60_001
  await graceful.collect('abandoned') // marks it garbage
  now += 60_001
  await graceful.sweep()
  assert.equal(await kv.get(chunkKey(id, 0)), undefined)
  assert.equal(await kv.get(recordKey('abandoned', id)), undefined)
})

test('storeChunkWritesInflight bounds chunk writes across concurrent uploads, and every upload still completes', async () => {
  let inflight = 0
  let peak = 0
  // The real database underneath; the wrapper only counts chunk puts that are under way.
  const counting: DistKV = Object.create(kv, {
    put: {
      value: async (key: Uint8Array | string, value: Uint8Array | string, options?: { sync?: boolean }) => {
        const isChunk = typeof key !== 'string' && key[2] === 0x63
        if (isChunk) peak = Math.max(peak, ++inflight)
        try {
          await kv.put(key, value, options)
        } finally {
          if (isChunk) inflight--
        }
      },
    },
  })
  const bounded = files(counting, { chunkBytes: 4096, chunkWritesInflight: 4, storeChunkWritesInflight: 3, garbageGraceMs: 0 })
  const bodies = Array.from({ length: 5 }, () => randomBytes(6 * 4096 + 7))
  await Promise.all(bodies.map((body, i) => bounded.putFile(`slots/${i}`, pieces(body, 5000))))
  assert.ok(peak <= 3, `at most 3 chunk writes in flight, saw ${peak}`)
  assert.ok(peak >= 2, 'uploads did overlap')
  assert.equal(bounded.writeSlots.waiting, 0)
  for (const [i, body] of bodies.entries()) assert.ok((await bounded.readFile(`slots/${i}`))!.equals(body))
})
