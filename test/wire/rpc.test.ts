// Requests and streams over real Unix and TCP sockets.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, KvError } from '../../src/errors.js'
import { WireClient, newRequestId } from '../../src/wire/index.js'
import { EncodedBody, encodeBody } from '../../src/wire/codec.js'
import { connectClient, hello, rejectsWith, startServer } from './helpers.js'

test('requests round trip over Unix and TCP with many in flight', async () => {
  const s = await startServer()
  try {
    for (const address of [s.unix, s.tcp]) {
      const client = await connectClient(address)
      assert.equal(client.serverInfo.serverId, 'test-server')
      const results = await Promise.all(Array.from({ length: 500 }, (_, i) => client.request('echo', { i, key: Buffer.from(`k${i}`) })))
      results.forEach((result: any, i) => {
        assert.equal(result.i, i)
        assert.ok(Buffer.isBuffer(result.key))
        assert.equal(result.key.toString(), `k${i}`)
      })
      await client.close()
      assert.equal(client.closed, true)
    }
  } finally {
    await s.stop()
  }
})

test('the handler sees the caller-supplied request id and the peer identity', async () => {
  const s = await startServer()
  try {
    const info = hello()
    const client = await WireClient.connect(s.tcp, info)
    const requestId = newRequestId()
    const ctx = (await client.request('ctx', null, { requestId })) as any
    assert.deepEqual(ctx, { requestId, clientId: info.clientId, transport: 'tcp' })
    const peers = s.server.peers()
    assert.equal(peers.length, 1)
    assert.equal(peers[0]!.clientId, info.clientId)
    assert.equal(peers[0]!.requests, 1)
    await client.close()
  } finally {
    await s.stop()
  }
})

test('KvErrors keep code, message and details; other errors arrive as INTERNAL; unknown methods are refused', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.unix)
    const error = await rejectsWith(client.request('fail', 10), ErrorCode.VALUE_TOO_LARGE)
    assert.equal(error.message, 'value is too large')
    assert.deepEqual(error.details, { valueBytesMax: 10 })
    await rejectsWith(client.request('bug', null), ErrorCode.INTERNAL)
    await rejectsWith(client.request('nope', null), ErrorCode.UNKNOWN_METHOD)
    await rejectsWith(client.request('', null), ErrorCode.INVALID)
    // The connection survives all of that.
    assert.equal(await client.request('echo', 'still here'), 'still here')
    await client.close()
  } finally {
    await s.stop()
  }
})

test('a request timeout rejects with KV_ERR_TIMEOUT and cancels the handler', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.unix)
    await rejectsWith(client.request('wait', null, { timeoutMs: 50 }), ErrorCode.TIMEOUT)
    await rejectsWith(client.request('echo', 1, { timeoutMs: -1 }), ErrorCode.INVALID)
    await rejectsWith(client.request('echo', 1, { requestId: 'nope' }), ErrorCode.INVALID)
    assert.equal(await client.request('echo', 1), 1)
    await client.close()
  } finally {
    await s.stop()
  }
})

test('request timeouts share one timer: a shorter timeout sent later still fires first, and no timer outlives its requests', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.unix)
    const timersBefore = process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length
    let longSettled = false
    const long = rejectsWith(client.request('wait', null, { timeoutMs: 60_000 }), ErrorCode.CLOSED).finally(() => (longSettled = true))
    // The timer was armed for the long deadline; the short one must re-arm it, not wait behind it.
    const error = await rejectsWith(client.request('wait', null, { timeoutMs: 30 }), ErrorCode.TIMEOUT)
    assert.equal(longSettled, false)
    assert.deepEqual(error.details, { timeoutMs: 30 })
    assert.match(error.message, /wait got no reply within timeoutMs \(30 ms\)/)
    // A request that settles takes its share of the timer with it: with none left, no Timeout
    // may stay behind to hold the process open until the 60 s deadline.
    assert.equal(await client.request('echo', 2, { timeoutMs: 60_000 }), 2)
    await client.close()
    await long
    assert.equal(process.getActiveResourcesInfo().filter((name) => name === 'Timeout').length, timersBefore)
  } finally {
    await s.stop()
  }
})

test('pending requests reject with KV_ERR_CLOSED when the connection drops', async () => {
  const s = await startServer()
  const client = await connectClient(s.unix)
  let closeCalled = false
  client.onClose(() => (closeCalled = true))
  const pending = client.request('wait', null)
  await new Promise((resolve) => setTimeout(resolve, 20))
  await s.stop()
  await rejectsWith(pending, ErrorCode.CLOSED)
  assert.equal(closeCalled, true)
  await rejectsWith(client.request('echo', 1), ErrorCode.CLOSED)
})

test('connect to nothing fails with KV_ERR_UNAVAILABLE', async () => {
  await rejectsWith(WireClient.connect({ path: '/nonexistent/distkv.sock' }, hello()), ErrorCode.UNAVAILABLE)
})

test('authentication: a refused hello rejects connect with KV_ERR_AUTH', async () => {
  const s = await startServer({
    authenticate: (info, transport) => {
      if (transport === 'tcp' && info.token !== 'secret') throw new KvError(ErrorCode.AUTH, 'bad token')
    },
  })
  try {
    const refused = await rejectsWith(connectClient(s.tcp, 'wrong'), ErrorCode.AUTH)
    assert.equal(refused.message, 'bad token')
    const ok = await connectClient(s.tcp, 'secret')
    const unix = await connectClient(s.unix)
    assert.equal(await ok.request('echo', 1), 1)
    await ok.close()
    await unix.close()
  } finally {
    await s.stop()
  }
})

test('streams deliver every page in order and end', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.tcp)
    const pages: number[] = []
    for await (const page of client.stream('count', { to: 100 })) pages.push((page as number[])[0]!)
    assert.deepEqual(pages, Array.from({ length: 100 }, (_, i) => i))
    // A stream error arrives after the pages before it.
    const seen: unknown[] = []
    await rejectsWith(
      (async () => {
        for await (const page of client.stream('broken', null)) seen.push(page)
      })(),
      ErrorCode.UNAVAILABLE,
    )
    assert.deepEqual(seen, [1])
    await rejectsWith(
      (async () => {
        for await (const _ of client.stream('nope', null)) assert.fail('no pages expected')
      })(),
      ErrorCode.UNKNOWN_METHOD,
    )
    await client.close()
  } finally {
    await s.stop()
  }
})

test('pre-encoded bodies: requestBody sends [method, params] as given, an EncodedBody reply is sent as is, both bounded by frameBytesMax', async () => {
  const s = await startServer({ frameBytesMax: 64 * 1024 })
  s.server.handle('encoded', async (params) => new EncodedBody(encodeBody({ got: params })))
  s.server.handle('huge', async () => new EncodedBody(encodeBody(Buffer.alloc(100 * 1024))))
  try {
    const client = await connectClient(s.unix)
    assert.deepEqual(await client.requestBody('echo', encodeBody(['echo', { a: 1 }])), { a: 1 })
    assert.deepEqual(await client.request('encoded', 'x'), { got: 'x' })
    await rejectsWith(client.request('huge', null), ErrorCode.FRAME_TOO_LARGE)
    await rejectsWith(client.requestBody('echo', encodeBody(['echo', Buffer.alloc(30 * 1024 * 1024)])), ErrorCode.FRAME_TOO_LARGE)
    assert.equal(await client.request('echo', 'still here'), 'still here')
    await client.close()
  } finally {
    await s.stop()
  }
})
