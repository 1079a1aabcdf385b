/**
 * The DistKV API through open() against a real, auto-started local server on RocksDB: every
 * method, input types, atomic batches, getSize, streamed queries, bad inputs, closed clients,
 * and the request timeout while the server is stopped.
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { open, type DistKV } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { Limits } from '../../src/limits.js'
import { RemoteKV } from '../../src/client/remote.js'
import { LocalMethod } from '../../src/local/index.js'
import { localPaths } from '../../src/local/paths.js'
import { WireClient } from '../../src/wire/index.js'
import { alive, cleanup, makeTempDir, pointerPid, waitFor } from '../local/helpers.js'
import { join } from 'node:path'

let dir: string
let db: DistKV

before(async () => {
  dir = makeTempDir('distkv-api-')
  db = await open(dir, { name: 'api-test', idleTimeoutSeconds: 0 })
})

after(async () => {
  await db.close()
  await cleanup(dir)
})

async function entries(range?: Parameters<DistKV['query']>[0]): Promise<string[]> {
  const out: string[] = []
  for await (const [key, value] of db.query(range)) out.push(`${key}=${value}`)
  return out
}

test('get/put/del/has/getSize/getMany with string and byte keys; results are Buffers', async () => {
  await db.put('s', 'string value')
  await db.put(new Uint8Array([1, 2, 3]), new Uint8Array([4, 5]))
  const value = await db.get('s')
  assert.ok(Buffer.isBuffer(value))
  assert.equal(value.toString(), 'string value')
  assert.deepEqual(await db.get(Buffer.from([1, 2, 3])), Buffer.from([4, 5]))
  assert.equal(await db.get('missing'), undefined)
  assert.equal(await db.has('s'), true)
  assert.equal(await db.has('missing'), false)
  assert.equal(await db.getSize('s'), 12)
  assert.equal(await db.getSize('missing'), undefined)
  await db.put('empty', '')
  assert.deepEqual(await db.get('empty'), Buffer.alloc(0))
  assert.equal(await db.has('empty'), true)
  assert.deepEqual(await db.getMany(['s', 'missing', 'empty']), [Buffer.from('string value'), undefined, Buffer.alloc(0)])
  await db.del('s')
  await db.del('never-existed')
  assert.equal(await db.get('s'), undefined)
  await db.put('lazy', 'x', { sync: false })
  await db.sync()
  assert.equal((await db.get('lazy'))?.toString(), 'x')
})

test('getSize answers with a number, never the value', async () => {
  const big = Buffer.alloc(Limits.valueBytesMax, 9)
  await db.put('big', big)
  const raw = await (db as RemoteKV).call(LocalMethod.getSize, { key: Buffer.from('big') })
  assert.equal(raw, big.length)
})

test('batch is atomic: one invalid op (checked by the server) and nothing is applied', async () => {
  await db.batch([
    { type: 'put', key: 'b/1', value: 'one' },
    { type: 'put', key: 'b/2', value: 'two' },
    { type: 'del', key: 'b/1' },
  ])
  assert.deepEqual(await entries({ prefix: 'b/' }), ['b/2=two'])
  const ops = [
    { type: 'put', key: Buffer.from('b/3'), value: Buffer.from('three') },
    { type: 'put', key: Buffer.from('b/4'), value: Buffer.alloc(Limits.valueBytesMax + 1) },
  ]
  await assert.rejects((db as RemoteKV).call(LocalMethod.batch, { ops, sync: true }), { code: ErrorCode.VALUE_TOO_LARGE })
  assert.equal(await db.has('b/3'), false)
  await db.batch([])
})

test('query: prefix, bounds, limit, reverse, keys/values flags', async () => {
  await db.batch(['q/a', 'q/b', 'q/c', 'q/d', 'qq', 'r'].map((key) => ({ type: 'put', key, value: key.toUpperCase() }) as const))
  assert.deepEqual(await entries({ prefix: 'q/' }), ['q/a=Q/A', 'q/b=Q/B', 'q/c=Q/C', 'q/d=Q/D'])
  assert.deepEqual(await entries({ prefix: 'q/', gt: 'q/a', lte: 'q/c' }), ['q/b=Q/B', 'q/c=Q/C'])
  assert.deepEqual(await entries({ gte: 'q/b', lt: 'q/d' }), ['q/b=Q/B', 'q/c=Q/C'])
  assert.deepEqual(await entries({ prefix: 'q', reverse: true, limit: 2 }), ['qq=QQ', 'q/d=Q/D'])
  assert.deepEqual(await entries({ prefix: 'q/', keys: false, limit: 1 }), ['=Q/A'])
  assert.deepEqual(await entries({ prefix: 'q/', values: false, limit: 1 }), ['q/a='])
  assert.deepEqual(await entries({ prefix: 'q/', limit: 0 }), [])
  assert.deepEqual(await entries({ gt: 'r' }), [])
})

test('a large range is streamed in bounded pages, and breaking out early is fine', async () => {
  const value = Buffer.alloc(200, 1)
  for (let start = 0; start < 20_000; start += 2000) {
    await db.batch(Array.from({ length: 2000 }, (_, i) => ({ type: 'put', key: `big/${String(start + i).padStart(6, '0')}`, value }) as const), { sync: false })
  }
  let count = 0
  let previous = ''
  for await (const [key] of db.query({ prefix: 'big/' })) {
    assert.ok(key.toString() > previous)
    previous = key.toString()
    count++
  }
  assert.equal(count, 20_000)
  for await (const [key] of db.query({ prefix: 'big/' })) {
    assert.equal(key.toString(), 'big/000000')
    break
  }
  // Count pages on the wire directly: the server never sends the range in one piece.
  const raw = await WireClient.connect({ path: localPaths(dir).socketPath }, { clientId: randomUUID(), name: 'pages', pid: process.pid })
  let pages = 0
  for await (const page of raw.stream(LocalMethod.query, { prefix: Buffer.from('big/') })) {
    pages++
    assert.ok((page as { keys: unknown[] }).keys.length <= Limits.queryPageItemsMax)
  }
  await raw.close()
  assert.ok(pages >= 20_000 / Limits.queryPageItemsMax, `${pages} pages`)
  assert.equal(await db.has('big/000000'), true, 'the client still works after an abandoned query')
})

test('bad inputs are refused with KV_ERR_* codes, on the client and on the server', async () => {
  const bigKey = 'k'.repeat(Limits.keyBytesMax + 1)
  await assert.rejects(db.put(bigKey, 'v'), { code: ErrorCode.KEY_TOO_LARGE })
  await assert.rejects(db.get(bigKey), { code: ErrorCode.KEY_TOO_LARGE })
  await assert.rejects(db.put('k', Buffer.alloc(Limits.valueBytesMax + 1)), { code: ErrorCode.VALUE_TOO_LARGE })
  await db.put('k'.repeat(Limits.keyBytesMax), Buffer.alloc(Limits.valueBytesMax))
  await assert.rejects(db.put(42 as unknown as string, 'v'), { code: ErrorCode.INVALID })
  await assert.rejects(db.put('k', null as unknown as string), { code: ErrorCode.INVALID })
  await assert.rejects(db.getMany('k' as unknown as string[]), { code: ErrorCode.INVALID })
  await assert.rejects(db.batch([{ type: 'nope', key: 'k' } as never]), { code: ErrorCode.INVALID })
  await assert.rejects(db.put('k', 'v', { sync: 'yes' as unknown as boolean }), { code: ErrorCode.INVALID })
  await assert.rejects(entries({ limit: 'ten' as unknown as number }), { code: ErrorCode.INVALID })
  const call = (method: string, params: unknown): Promise<unknown> => (db as RemoteKV).call(method, params)
  await assert.rejects(call(LocalMethod.put, { key: 42, value: Buffer.from('v') }), { code: ErrorCode.INVALID })
  await assert.rejects(call(LocalMethod.put, { key: Buffer.alloc(Limits.keyBytesMax + 1), value: Buffer.from('v') }), {
    code: ErrorCode.KEY_TOO_LARGE,
  })
  await assert.rejects(call(LocalMethod.get, null), { code: ErrorCode.INVALID })
  await assert.rejects(call('kv.nonsense', {}), { code: ErrorCode.UNKNOWN_METHOD })
})

test('a closed client refuses every call with KV_ERR_CLOSED', async () => {
  const other = await open(dir)
  await other.close()
  await other.close()
  await assert.rejects(other.get('k'), { code: ErrorCode.CLOSED })
  await assert.rejects(other.put('k', 'v'), { code: ErrorCode.CLOSED })
  await assert.rejects(other.sync(), { code: ErrorCode.CLOSED })
  await assert.rejects(async () => {
    for await (const _ of other.query()) break
  }, { code: ErrorCode.CLOSED })
})

test('a request fails with KV_ERR_TIMEOUT after requestTimeoutMs while the server is stopped, then recovers', async () => {
  const slow = await open(dir, { requestTimeoutMs: 500 })
  const pid = pointerPid(dir)!
  process.kill(pid, 'SIGSTOP')
  try {
    await assert.rejects(slow.get('k'), { code: ErrorCode.TIMEOUT })
  } finally {
    process.kill(pid, 'SIGCONT')
  }
  assert.equal(await slow.has('b/2'), true)
  await slow.close()
})

test('a query interrupted by kill -9 of the server resumes after the last key it delivered', async () => {
  const reader = await open(dir)
  let count = 0
  let previous = ''
  for await (const [key] of reader.query({ prefix: 'big/', limit: 15_000 })) {
    assert.ok(key.toString() > previous, `${key} after ${previous}`)
    previous = key.toString()
    if (++count === 100) {
      const pid = pointerPid(dir)!
      process.kill(pid, 'SIGKILL')
      await waitFor(() => !alive(pid), 5_000, 'the server to die')
    }
  }
  assert.equal(count, 15_000)
  assert.notEqual(pointerPid(dir), undefined)
  await reader.close()
})

test('open() refuses a path that cannot be a directory', { timeout: 30_000 }, async () => {
  await assert.rejects(open(join(dir, 'local-server.log', 'sub')), { code: ErrorCode.INVALID })
  // A path under /proc once made directory creation loop forever instead of failing.
  await assert.rejects(open('/proc/distkv-no-such-dir/db'), { code: ErrorCode.INVALID })
})

test('concurrent sync writes from one client share fsyncs on the server (group commit)', async () => {
  const stats = async (): Promise<{ writeRequests: number; engineBatches: number; syncedBatches: number }> =>
    ((await (db as RemoteKV).call(LocalMethod.info, {})) as { stats: { writeRequests: number; engineBatches: number; syncedBatches: number } }).stats
  const before = await stats()
  await Promise.all(Array.from({ length: 200 }, (_, i) => db.put(`gc/${i}`, 'v')))
  const after = await stats()
  assert.equal(after.writeRequests - before.writeRequests, 200)
  assert.ok(after.syncedBatches - before.syncedBatches < 200, `${after.syncedBatches - before.syncedBatches} synced batches for 200 writes`)
})

test('open() with engine: leveldb starts a LevelDB server', async () => {
  const levelDir = makeTempDir('distkv-api-level-')
  try {
    const level = await open(levelDir, { engine: 'leveldb', idleTimeoutSeconds: 0 })
    await level.put('k', 'v')
    assert.equal((await level.get('k'))?.toString(), 'v')
    assert.equal((level as RemoteKV).serverInfo?.engine, 'leveldb')
    await level.close()
  } finally {
    await cleanup(levelDir)
  }
})
