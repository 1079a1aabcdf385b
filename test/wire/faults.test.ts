// Hostile and broken peers: bounds, garbage, disconnects, slow and non-reading clients.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { ErrorCode } from '../../src/errors.js'
import { FrameDecoder, FrameType, encodeFrame, type Frame } from '../../src/wire/frame.js'
import { encodeBody, errorFromWire, requestIdToBytes, newRequestId } from '../../src/wire/codec.js'
import { PROTOCOL_VERSION, WireClient, type WireAddress } from '../../src/wire/index.js'
import { helloBytesMax } from '../../src/wire/server-connection.js'
import { connectClient, hello, rejectsWith, startServer } from './helpers.js'

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

/** rawConnect opens a plain socket and collects the frames the server sends. */
async function rawConnect(address: WireAddress): Promise<{ socket: Socket; frames: Frame[]; closed: Promise<void> }> {
  const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host)
  await new Promise((resolve) => socket.once('connect', resolve))
  const decoder = new FrameDecoder(1 << 24)
  const frames: Frame[] = []
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk)
    for (let r = decoder.next(); r !== null && 'frame' in r; r = decoder.next()) frames.push(r.frame)
  })
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
  return { socket, frames, closed }
}

function helloFrame(version = PROTOCOL_VERSION): Buffer {
  return encodeFrame(FrameType.HELLO, Buffer.alloc(16), encodeBody({ version, ...hello() }))
}

test('connections beyond connectionsMax are refused with KV_ERR_TOO_MANY_CONNECTIONS; the others keep working', async () => {
  const s = await startServer({ connectionsMax: 2 })
  try {
    const a = await connectClient(s.unix)
    const b = await connectClient(s.tcp)
    const refused = await rejectsWith(connectClient(s.unix), ErrorCode.TOO_MANY_CONNECTIONS)
    assert.equal(refused.details?.connectionsMax, 2)
    assert.deepEqual(await Promise.all([a.request('echo', 1), b.request('echo', 2)]), [1, 2])
    await a.close()
    for (let i = 0; i < 100 && s.server.connectionCount > 1; i++) await delay(5)
    const c = await connectClient(s.unix) // a slot is free again
    await Promise.all([b.close(), c.close()])
  } finally {
    await s.stop()
  }
})

test('requests beyond inflightRequestsMax get KV_ERR_TOO_MANY_REQUESTS; the rest complete', async () => {
  const s = await startServer({ inflightRequestsMax: 4 })
  try {
    const client = await connectClient(s.unix)
    const results = await Promise.allSettled(Array.from({ length: 10 }, () => client.request('sleep', 20)))
    const refused = results.filter((r) => r.status === 'rejected')
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 4)
    assert.equal(refused.length, 6)
    for (const r of refused) assert.equal((r as PromiseRejectedResult).reason.code, ErrorCode.TOO_MANY_REQUESTS)
    await client.close()
  } finally {
    await s.stop()
  }
})

test('garbage bytes, an oversized frame or a request before hello close only that connection, with an error frame', async () => {
  const s = await startServer({ frameBytesMax: 1024 })
  try {
    const good = await connectClient(s.unix)
    const cases: Array<[Buffer, string]> = [
      // 'GET ' read as a little-endian length is about 542 MB: refused before anything else.
      [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), ErrorCode.FRAME_TOO_LARGE],
      [Buffer.concat([Buffer.from([4, 0, 0, 0, 77]), Buffer.alloc(40, 0xff)]), ErrorCode.PROTOCOL],
      [Buffer.concat([helloFrame(), encodeFrame(FrameType.REQUEST, Buffer.alloc(16), Buffer.alloc(2000))]), ErrorCode.FRAME_TOO_LARGE],
      [encodeFrame(FrameType.REQUEST, Buffer.alloc(16), encodeBody(['echo', 1])), ErrorCode.PROTOCOL],
      [encodeFrame(FrameType.HELLO, Buffer.alloc(16), Buffer.from([0xc1, 0xc1])), ErrorCode.PROTOCOL],
    ]
    for (const [bytes, code] of cases) {
      const raw = await rawConnect(s.unix)
      raw.socket.write(bytes)
      await raw.closed
      const last = raw.frames.at(-1)
      assert.ok(last !== undefined && last.type === FrameType.ERROR, `an error frame for ${code}`)
      assert.equal(errorFromWire(last.body).code, code)
    }
    assert.equal(await good.request('echo', 'fine'), 'fine')
    await good.close()
  } finally {
    await s.stop()
  }
})

test('before its hello is accepted a client may send only small frames (helloBytesMax)', async () => {
  const s = await startServer()
  try {
    const raw = await rawConnect(s.unix)
    const header = encodeFrame(FrameType.HELLO, Buffer.alloc(16), Buffer.alloc(0))
    header.writeUInt32LE(helloBytesMax + 1, 0)
    raw.socket.write(header)
    await raw.closed
    const error = errorFromWire(raw.frames.at(-1)!.body)
    assert.equal(error.code, ErrorCode.FRAME_TOO_LARGE)
    assert.equal(error.details?.frameBytesMax, helloBytesMax)
    // After the hello, frames up to frameBytesMax are fine.
    const client = await connectClient(s.unix)
    const big = Buffer.alloc(helloBytesMax * 4, 1)
    assert.deepEqual(await client.request('echo', big), big)
    await client.close()
  } finally {
    await s.stop()
  }
})

test('an unknown protocol version is refused with a clear message', async () => {
  const s = await startServer()
  try {
    const raw = await rawConnect(s.unix)
    raw.socket.write(helloFrame(99))
    await raw.closed
    const error = errorFromWire(raw.frames.at(-1)!.body)
    assert.equal(error.code, ErrorCode.PROTOCOL)
    assert.match(error.message, /unsupported protocol version 99.*version 1/)
  } finally {
    await s.stop()
  }
})

test('a slow stream reader: the server produces at most one window of pages ahead', async () => {
  const window = 4
  const s = await startServer({ streamWindowPages: window })
  try {
    const client = await connectClient(s.unix)
    const iterator = client.stream('count', { to: 1000 })[Symbol.asyncIterator]()
    let consumed = 0
    for (let round = 0; round < 5; round++) {
      await iterator.next()
      consumed++
      await delay(30) // let the server run ahead as far as it is allowed to
      assert.ok(s.probe.produced <= consumed + window, `produced ${s.probe.produced} with ${consumed} consumed`)
    }
    assert.ok(s.probe.produced >= consumed + 1, 'the server did run ahead within its window')
    await iterator.return!()
    await client.close()
  } finally {
    await s.stop()
  }
})

test('breaking out of a stream loop cancels it on the server and closes its iterator', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.unix)
    let pages = 0
    for await (const _ of client.stream('count', { to: 1_000_000 })) if (++pages === 3) break
    for (let i = 0; i < 100 && !s.probe.returned; i++) await delay(10)
    assert.equal(s.probe.returned, true)
    assert.equal(s.probe.aborted, true)
    assert.ok(s.probe.produced < 100)
    assert.equal(await client.request('echo', 1), 1)
    await client.close()
  } finally {
    await s.stop()
  }
})

test('a client that disconnects mid-stream: the server closes the iterator and keeps serving', async () => {
  const s = await startServer()
  try {
    const client = await connectClient(s.tcp)
    const iterator = client.stream('count', { to: 1_000_000 })[Symbol.asyncIterator]()
    await iterator.next()
    await client.close()
    // Pages that had already arrived are still delivered, then the stream fails.
    await rejectsWith((async () => { for (;;) if ((await iterator.next()).done === true) return })(), ErrorCode.CLOSED)
    for (let i = 0; i < 100 && !s.probe.returned; i++) await delay(10)
    assert.equal(s.probe.returned, true)
    const other = await connectClient(s.tcp)
    assert.equal(await other.request('echo', 2), 2)
    await other.close()
  } finally {
    await s.stop()
  }
})

test('a client that never reads: the server stops reading its requests and its buffered bytes stay bounded', async () => {
  const writeBufferBytesMax = 256 * 1024
  const inflightRequestsMax = 8
  const blobBytes = 64 * 1024
  const s = await startServer({ writeBufferBytesMax, inflightRequestsMax })
  try {
    const raw = await rawConnect(s.unix)
    raw.socket.write(helloFrame())
    await delay(20)
    raw.socket.pause() // never read again
    // 2000 requests would be 128 MiB of replies; send them in waves so none is refused for inflight.
    let outgoingMax = 0
    for (let wave = 0; wave < 40; wave++) {
      for (let i = 0; i < 50; i++) {
        raw.socket.write(encodeFrame(FrameType.REQUEST, requestIdToBytes(newRequestId()), encodeBody(['blob', blobBytes])))
      }
      await delay(5)
      outgoingMax = Math.max(outgoingMax, s.server.outgoingBytes)
    }
    // Bound: the write buffer, plus replies already computed for requests read before the pause.
    const bound = writeBufferBytesMax + (inflightRequestsMax + 1) * (blobBytes + 64) + 64 * 1024
    assert.ok(outgoingMax > 0)
    assert.ok(outgoingMax <= bound, `server buffered ${outgoingMax} bytes for a non-reading client (bound ${bound})`)
    assert.ok(raw.socket.writableLength > 0, 'the client backed up: the server stopped reading it')
    const other = await connectClient(s.unix)
    assert.equal(await other.request('echo', 'served'), 'served')
    await other.close()
    raw.socket.destroy()
  } finally {
    await s.stop()
  }
})

test('connect gives up with KV_ERR_TIMEOUT when the server never answers the hello', async () => {
  const accepted: Socket[] = []
  const silent = createServer((socket) => accepted.push(socket)) // accepts, never speaks
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve))
  const port = (silent.address() as { port: number }).port
  try {
    const error = await rejectsWith(WireClient.connect({ host: '127.0.0.1', port }, hello(), { connectTimeoutMs: 100 }), ErrorCode.TIMEOUT)
    assert.match(error.message, /connectTimeoutMs/)
  } finally {
    for (const socket of accepted) socket.destroy()
    await new Promise((resolve) => silent.close(resolve))
  }
})

test('a connection that never sends its hello is closed after helloTimeoutMs', async () => {
  const s = await startServer({ helloTimeoutMs: 50 })
  try {
    const raw = await rawConnect(s.tcp)
    await raw.closed
    assert.equal(errorFromWire(raw.frames.at(-1)!.body).code, ErrorCode.PROTOCOL)
    for (let i = 0; i < 100 && s.server.connectionCount > 0; i++) await delay(5)
    assert.equal(s.server.connectionCount, 0)
  } finally {
    await s.stop()
  }
})
