/**
 * `kv.multi` on the local server: per-op results and errors, the frame bound, per-op request
 * ids (a re-sent or duplicated op is applied once), and coalesced writes across kill -9.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import { open } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { LocalMethod, LocalStore, startLocalServer } from '../../src/local/index.js'
import { MemoryEngine } from '../../src/engine/index.js'
import { MultiKind, multiOpsMax, type MultiOp } from '../../src/local/multi.js'
import { WireClient } from '../../src/wire/index.js'
import { alive, cleanup, makeTempDir, pointerPid, waitFor } from './helpers.js'

async function withServer(run: (client: WireClient, dir: string) => Promise<void>): Promise<void> {
  const dir = makeTempDir()
  const server = await startLocalServer({ dir, engine: 'memory', idleTimeoutSeconds: 0, handleSignals: false })
  const client = await WireClient.connect({ path: server.info.socket }, { clientId: randomUUID(), name: 'multi-test', pid: process.pid })
  try {
    await run(client, dir)
  } finally {
    await client.close()
    await server.stop()
    await cleanup(dir)
  }
}

const id = (): Buffer => randomBytes(16)
const b = (text: string): Buffer => Buffer.from(text)

test('kv.multi: every op gets its own result, and a bad op fails only itself', async () => {
  await withServer(async (client) => {
    await client.request(LocalMethod.put, { key: b('seen'), value: b('12345'), sync: false })
    const ops: unknown[] = [
      [MultiKind.put, id(), b('a'), b('1'), true],
      [MultiKind.get, id(), b('seen')],
      [MultiKind.put, id(), Buffer.alloc(5000), b('x'), true], // key over keyBytesMax
      [9, id(), b('k')], // unknown kind
      [MultiKind.get, Buffer.alloc(3), b('seen')], // id not 16 bytes
      'not an op',
      [MultiKind.has, id(), b('seen')],
      [MultiKind.getSize, id(), b('seen')],
      [MultiKind.get, id(), b('absent')],
      [MultiKind.del, id(), b('seen'), null, false],
    ]
    const results = (await client.request(LocalMethod.multi, { ops })) as unknown[]
    assert.equal(results.length, ops.length)
    assert.equal(results[0], null)
    assert.equal((results[1] as Buffer).toString(), '12345')
    assert.equal((results[2] as { code: string }).code, ErrorCode.KEY_TOO_LARGE)
    assert.equal((results[3] as { code: string }).code, ErrorCode.INVALID)
    assert.equal((results[4] as { code: string }).code, ErrorCode.INVALID)
    assert.equal((results[5] as { code: string }).code, ErrorCode.INVALID)
    assert.deepEqual(results.slice(6, 10), [true, 5, null, null])
    assert.equal((await client.request(LocalMethod.get, { key: b('a') }) as Buffer).toString(), '1', 'the good put was applied')
    assert.equal(await client.request(LocalMethod.get, { key: b('seen') }), null, 'the del was applied')
  })
})

test(`kv.multi refuses a frame of more than multiOpsMax (${multiOpsMax}) ops, naming the bound`, async () => {
  await withServer(async (client) => {
    const ops = Array.from({ length: multiOpsMax + 1 }, (): MultiOp => [MultiKind.get, id(), b('k')])
    await assert.rejects(client.request(LocalMethod.multi, { ops }), (error: Error & { code?: string }) => {
      assert.equal(error.code, ErrorCode.INVALID)
      assert.match(error.message, /multiOpsMax \(1024\)/)
      return true
    })
    await assert.rejects(client.request(LocalMethod.multi, { ops: 'nope' }), { code: ErrorCode.INVALID })
  })
})

test('kv.multi: an op id is applied once, whether repeated in a later frame or within one frame', async () => {
  await withServer(async (client) => {
    const once = id()
    await client.request(LocalMethod.multi, { ops: [[MultiKind.put, once, b('k'), b('first'), true]] })
    await client.request(LocalMethod.put, { key: b('k'), value: b('second'), sync: true })
    const replay = (await client.request(LocalMethod.multi, { ops: [[MultiKind.put, once, b('k'), b('first'), true]] })) as unknown[]
    assert.deepEqual(replay, [null], 'the replay is answered as a success')
    assert.equal((await client.request(LocalMethod.get, { key: b('k') }) as Buffer).toString(), 'second', 'and not applied')
    const twice = id()
    await client.request(LocalMethod.multi, {
      ops: [
        [MultiKind.del, twice, b('k'), null, true],
        [MultiKind.put, id(), b('other'), b('v'), true],
        [MultiKind.del, twice, b('k'), null, true],
      ],
    })
    const info = (await client.request(LocalMethod.info, {})) as { stats: { duplicateRequests: number; writeRequests: number } }
    assert.equal(info.stats.duplicateRequests, 2, 'one replay and one in-frame copy were recognised')
  })
})

test('coalesced writes in flight during kill -9 of the server all complete, each applied', async () => {
  const dir = makeTempDir()
  try {
    const db = await open(dir, { idleTimeoutSeconds: 0 })
    await db.put('warm', 'up')
    const pid = pointerPid(dir)!
    // 16 lanes of sequential puts: every round trip carries one coalesced frame of up to 16 ops.
    const lanes = 16
    const perLane = 40
    const count = lanes * perLane
    let acknowledged = 0
    const writes = Array.from({ length: lanes }, async (_, lane) => {
      for (let i = lane; i < count; i += lanes) {
        await db.put(`key-${i}`, `value-${i}`)
        acknowledged++
      }
    })
    // Kill while frames are in flight: after the first acknowledgements, before the last.
    await waitFor(() => acknowledged >= lanes, 10_000, 'the first puts to be acknowledged')
    assert.ok(acknowledged < count, 'the kill lands while puts are still in flight')
    process.kill(pid, 'SIGKILL')
    await waitFor(() => !alive(pid), 5_000, 'the server to die')
    await Promise.all(writes)
    assert.notEqual(pointerPid(dir), pid, 'a new server took over')
    const values = await db.getMany(Array.from({ length: count }, (_, i) => `key-${i}`))
    values.forEach((value, i) => assert.equal(value?.toString(), `value-${i}`))
    await db.close()
  } finally {
    await cleanup(dir)
  }
})

test('the reads of one turn share engine getMany calls of at most readBatchKeysMax keys; one request is never split', async () => {
  const engine = new MemoryEngine({ durability: 'lose-unsynced' })
  await engine.open()
  const store = new LocalStore(engine, { readBatchKeysMax: 10 })
  await store.open()
  await store.write(randomUUID(), [{ type: 'put', key: b('k3'), value: b('three') }], false)
  const calls: number[] = []
  const getMany = engine.getMany.bind(engine)
  engine.getMany = (keys) => {
    calls.push(keys.length)
    return getMany(keys)
  }
  const singles = await Promise.all(Array.from({ length: 25 }, (_, i) => store.get(b(`k${i}`))))
  assert.deepEqual(calls, [10, 10, 5])
  assert.deepEqual(singles.map((value) => value?.toString()), singles.map((_, i) => (i === 3 ? 'three' : undefined)))
  calls.length = 0
  const [many, one] = await Promise.all([store.getMany(Array.from({ length: 15 }, (_, i) => b(`k${i}`))), store.get(b('k3'))])
  assert.deepEqual(calls, [15, 1], 'the 15-key request goes alone, the single read after it')
  assert.equal(many[3]?.toString(), 'three')
  assert.equal(one?.toString(), 'three')
  await store.close()
  await engine.close()
})
