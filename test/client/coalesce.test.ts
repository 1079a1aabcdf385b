/**
 * Client-side coalescing: concurrent single-key calls share kv.multi frames, each op keeps its
 * id when re-sent after a lost reply (and is applied once), each gets its own result or error,
 * the queue and the frames are bounded, and a server without kv.multi still works.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, KvError } from '../../src/errors.js'
import { Coalescer, coalesceQueueMax } from '../../src/client/coalesce.js'
import { RemoteKV, type Connector } from '../../src/client/remote.js'
import { LocalMethod, startLocalServer, type LocalServerHandle } from '../../src/local/index.js'
import { MultiKind, multiOpsMax, type MultiKindValue, type MultiOp } from '../../src/local/multi.js'
import { decodeMultiRequest } from '../../src/local/multi-codec.js'
import { decodeBody } from '../../src/wire/codec.js'
import { WireClient, WireServer } from '../../src/wire/index.js'
import { cleanup, makeTempDir } from '../local/helpers.js'

/**
 * Spy sees each request as (method, params); a binary multi frame is shown decoded, as
 * `{ ops }` with its method. `send` makes the real request (return undefined to pass it on).
 */
type Spy = (send: () => Promise<unknown>, client: WireClient, method: string, params: unknown) => Promise<unknown> | undefined

function decodedOps(body: Buffer): MultiOp[] {
  const decoded = decodeBody(body)
  assert.ok('value' in decoded)
  return decodeMultiRequest((decoded.value as unknown[])[1]).map((op) => [op.kind as MultiKindValue, op.id, op.key, op.value, op.sync])
}

/** connectorTo connects to `socket`; `spy` may intercept a request. */
function connectorTo(socket: string, spy?: Spy): Connector {
  return async (hello) => {
    const client = await WireClient.connect({ path: socket }, hello)
    const real = client.request.bind(client)
    const realBody = client.requestBody.bind(client)
    client.request = (method, params, options) => spy?.(() => real(method, params, options), client, method, params) ?? real(method, params, options)
    client.requestBody = (method, body, options) =>
      spy?.(() => realBody(method, body, options), client, method, { ops: decodedOps(Buffer.isBuffer(body) ? body : Buffer.concat(body)) }) ?? realBody(method, body, options)
    return client
  }
}

async function withServer(run: (server: LocalServerHandle) => Promise<void>): Promise<void> {
  const dir = makeTempDir()
  const server = await startLocalServer({ dir, engine: 'memory', idleTimeoutSeconds: 0, handleSignals: false })
  try {
    await run(server)
  } finally {
    await server.stop()
    await cleanup(dir)
  }
}

test('concurrent calls of one turn travel as one binary kv.multi frame and each gets its own result', async () => {
  await withServer(async (server) => {
    const frames: number[] = []
    const kv = new RemoteKV({
      connector: connectorTo(server.info.socket, (_send, _client, method, params) => {
        assert.notEqual(method, LocalMethod.multi, 'a server with kv.multiBinary gets no MessagePack multi')
        if (method === LocalMethod.multiBinary) frames.push((params as { ops: unknown[] }).ops.length)
        return undefined
      }),
    })
    await Promise.all(Array.from({ length: 100 }, (_, i) => kv.put(`k${i}`, `v${i}`)))
    const [values, present, size, absent] = await Promise.all([
      Promise.all(Array.from({ length: 100 }, (_, i) => kv.get(`k${i}`))),
      kv.has('k1'),
      kv.getSize('k10'),
      kv.get('nope'),
    ])
    values.forEach((value, i) => assert.equal(value?.toString(), `v${i}`))
    assert.deepEqual([present, size, absent], [true, 3, undefined])
    assert.deepEqual(frames, [100, 103], 'one frame per turn')
    await kv.close()
  })
})

test('after a lost reply, coalesced ops are re-sent with their own ids and applied once', async () => {
  await withServer(async (server) => {
    const sent: string[][] = []
    let lose = true
    const kv = new RemoteKV({
      connector: connectorTo(server.info.socket, (send, client, method, params) => {
        if (method !== LocalMethod.multiBinary) return undefined
        const ops = (params as { ops: MultiOp[] }).ops
        sent.push(ops.map((op) => op[1].toString('hex')))
        if (!lose) return undefined
        lose = false
        // The server applies the frame, then the connection dies before the caller sees the reply.
        return send().then(async () => {
          await client.close()
          throw new KvError(ErrorCode.CLOSED, 'connection lost after the server applied the frame')
        })
      }),
    })
    await Promise.all([kv.put('a', '1'), kv.put('b', '2'), kv.del('c')])
    // Each op retries on its own backoff timer; timers that expire in different loop turns
    // re-send in separate frames, so count ids, not frames.
    assert.equal(new Set(sent[0]).size, 3, 'each op has its own id')
    const resent = sent.slice(1).flat()
    assert.deepEqual([...resent].sort(), [...sent[0]].sort(), 'each op re-sent exactly once, with its own id')
    assert.equal(server.store.stats.duplicateRequests, 3, 'the re-sent copies were answered, not applied')
    assert.equal((await kv.get('a'))?.toString(), '1')
    await kv.close()
  })
})

test('a server with kv.multi but not kv.multiBinary gets MessagePack frames, and a failed op fails only its own call', async () => {
  const dir = makeTempDir()
  const wire = new WireServer({ serverInfo: {} })
  // A server whose answers are scripted per key, to see that the client routes each one.
  wire.handle(LocalMethod.multi, async (params: { ops: MultiOp[] }) =>
    params.ops.map(([, , key]) => (key.toString() === 'bad' ? { code: ErrorCode.VALUE_TOO_LARGE, message: 'scripted' } : Buffer.from('ok'))),
  )
  const socket = `${dir}/s.sock`
  await wire.listen({ path: socket })
  try {
    const kv = new RemoteKV({ connector: connectorTo(socket) })
    const results = await Promise.allSettled([kv.get('good'), kv.get('bad'), kv.get('fine')])
    assert.equal(results[0].status === 'fulfilled' && results[0].value?.toString(), 'ok')
    assert.equal(results[1].status === 'rejected' && (results[1].reason as KvError).code, ErrorCode.VALUE_TOO_LARGE)
    assert.equal(results[2].status === 'fulfilled' && results[2].value?.toString(), 'ok')
    await kv.close()
  } finally {
    await wire.close()
    await cleanup(dir, [], [])
  }
})

test('a server without kv.multi is used one request per call', async () => {
  const dir = makeTempDir()
  const wire = new WireServer({ serverInfo: {} })
  const store = new Map<string, Buffer>()
  wire.handle(LocalMethod.put, async (p: { key: Buffer; value: Buffer }) => {
    store.set(p.key.toString(), p.value)
    return null
  })
  wire.handle(LocalMethod.get, async (p: { key: Buffer }) => store.get(p.key.toString()) ?? null)
  const socket = `${dir}/s.sock`
  await wire.listen({ path: socket })
  try {
    const kv = new RemoteKV({ connector: connectorTo(socket) })
    await Promise.all([kv.put('x', '1'), kv.put('y', '2')])
    assert.deepEqual((await Promise.all([kv.get('x'), kv.get('y')])).map(String), ['1', '2'])
    await kv.close()
  } finally {
    await wire.close()
    await cleanup(dir, [], [])
  }
})

test(`the coalescing queue is bounded by coalesceQueueMax, and frames by multiOpsMax`, async () => {
  const frames: number[] = []
  const coalescer = new Coalescer(async (ops) => {
    frames.push(ops.length)
    return ops.map(() => null)
  })
  const deadline = Date.now() + 60_000
  const op = (): MultiOp => [MultiKind.get, Buffer.alloc(16), Buffer.from('k')]
  const accepted = Array.from({ length: coalesceQueueMax }, () => coalescer.submit(op(), deadline))
  await assert.rejects(coalescer.submit(op(), deadline), (error: KvError) => {
    assert.equal(error.code, ErrorCode.TOO_MANY_REQUESTS)
    assert.match(error.message, new RegExp(`coalesceQueueMax \\(${coalesceQueueMax}\\)`))
    return true
  })
  await Promise.all(accepted)
  assert.equal(frames.length, Math.ceil(coalesceQueueMax / multiOpsMax))
  assert.ok(frames.every((size) => size <= multiOpsMax))
  assert.deepEqual(await coalescer.submit(op(), deadline), null, 'the queue accepts again once flushed')
})
