// One-way peer streams of the TCP transport (src/raftstore/peer-stream.ts) over real loopback
// sockets: batches arrive in order with no reply, snapshots keep their acknowledged path, a
// dead peer is reported and reconnected to, and hostile input closes only its own stream.
import assert from 'node:assert/strict'
import { connect, createServer, type Socket } from 'node:net'
import { test } from 'node:test'
import { encodeEnvelopes } from '../../src/raftstore/message-codec.js'
import { ENTRY_INLINE_BYTES_MAX } from '../../src/raftstore/peer-stream.js'
import { TcpTransport, type TcpTransportLimits } from '../../src/raftstore/tcp-transport.js'
import { encodeBody } from '../../src/wire/codec.js'
import { FrameType, ZERO_ID, encodeFrame } from '../../src/wire/frame.js'
import { WireServer, type WireAddress } from '../../src/wire/index.js'
import { Recorder, message } from './recorder.js'

interface StreamNode { server: WireServer; transport: TcpTransport; recorder: Recorder }

const LIMITS: Partial<TcpTransportLimits> = { snapshotChunkBytes: 64 * 1024, reconnectDelayMsMin: 10, reconnectDelayMsMax: 20, connectTimeoutMs: 1000 }

/** streamNode starts a transport with peer streams; `streams` maps node ids to stream addresses. */
async function streamNode(nodeId: number, wire: Map<number, WireAddress>, streams: Map<number, WireAddress>, options: { port?: number; token?: string; limits?: Partial<TcpTransportLimits> } = {}): Promise<StreamNode> {
  const server = new WireServer({ serverInfo: { nodeId } })
  const transport = new TcpTransport({
    nodeId,
    server,
    peers: (id) => wire.get(id),
    token: options.token,
    limits: { ...LIMITS, ...options.limits },
    stream: { listen: { host: '127.0.0.1', port: options.port ?? 0 }, peers: (id) => streams.get(id) },
  })
  const recorder = new Recorder()
  await transport.start(recorder)
  wire.set(nodeId, await server.listen({ host: '127.0.0.1', port: 0 }))
  streams.set(nodeId, transport.streamAddress!)
  return { server, transport, recorder }
}

async function stop(...nodes: StreamNode[]): Promise<void> {
  for (const node of nodes) {
    await node.transport.close()
    await node.server.close()
  }
}

test('stream: batches arrive in order without any request; a snapshot still goes in acknowledged chunks', async () => {
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  const one = await streamNode(1, wire, streams)
  const two = await streamNode(2, wire, streams)
  try {
    for (let index = 11; index <= 60; index++) {
      one.transport.send([{ groupId: 9, message: message({ to: 2, index, entries: [{ term: 3, index: index + 1, type: 'normal', data: Buffer.alloc(1000, index) }] }) }])
    }
    await two.recorder.until(() => two.recorder.received.length === 50)
    assert.deepEqual(two.recorder.received.map((r) => r.envelopes[0]!.message.index), Array.from({ length: 50 }, (_, i) => 11 + i))
    assert.equal(two.recorder.received[49]!.envelopes[0]!.message.entries[0]!.data[999], 60)
    assert.deepEqual(two.server.peers(), [], 'no wire connection: the batches came on the stream')

    const data = Buffer.alloc(150 * 1024, 5)
    const snapshot = { meta: { index: 70, term: 3, confState: { voters: [1, 2], learners: [], votersOutgoing: [] } }, data }
    one.transport.send([{ groupId: 9, message: message({ to: 2, type: 'heartbeat' }) }, { groupId: 9, message: message({ to: 2, type: 'snap', snapshot }) }])
    await one.recorder.until(() => one.recorder.snapshotStatuses.length === 1)
    assert.deepEqual(one.recorder.snapshotStatuses, [[9, 2, true]])
    await two.recorder.until(() => two.recorder.received.length === 52)
    const types = two.recorder.received.slice(50).map((r) => r.envelopes[0]!.message.type).sort()
    assert.deepEqual(types, ['heartbeat', 'snap'])
    assert.deepEqual(two.server.peers().map((p) => p.name), ['raft-node-1'], 'the snapshot came over a wire connection')
  } finally {
    await stop(one, two)
  }
})

test('stream: entries larger than ENTRY_INLINE_BYTES_MAX (sent by reference in a writev) arrive intact and in order', async () => {
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  const one = await streamNode(1, wire, streams)
  const two = await streamNode(2, wire, streams)
  try {
    const big = (fill: number) => Buffer.alloc(ENTRY_INLINE_BYTES_MAX + 1 + fill * 1000, fill)
    for (let index = 1; index <= 6; index++) {
      const entries = [{ term: 3, index: 2 * index, type: 'normal' as const, data: big(index) }, { term: 3, index: 2 * index + 1, type: 'normal' as const, data: Buffer.alloc(10, index) }]
      one.transport.send([{ groupId: 9, message: message({ to: 2, index, entries }) }, { groupId: 8, message: message({ to: 2, index, entries: [entries[0]!] }) }])
    }
    await two.recorder.until(() => two.recorder.received.length === 6)
    for (let i = 0; i < 6; i++) {
      const [first, second] = two.recorder.received[i]!.envelopes
      assert.deepEqual([first!.groupId, second!.groupId], [9, 8])
      assert.ok(Buffer.from(first!.message.entries[0]!.data).equals(big(i + 1)), `batch ${i}: the large entry byte for byte`)
      assert.ok(Buffer.from(first!.message.entries[1]!.data).equals(Buffer.alloc(10, i + 1)))
      assert.ok(Buffer.from(second!.message.entries[0]!.data).equals(big(i + 1)))
    }
  } finally {
    await stop(one, two)
  }
})

test('stream: a dead peer is reported unreachable, and the stream reconnects once it is back', async () => {
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  const one = await streamNode(1, wire, streams)
  let two = await streamNode(2, wire, streams)
  try {
    one.transport.send([{ groupId: 4, message: message({ to: 2 }) }])
    await two.recorder.until(() => two.recorder.received.length === 1)
    const port = (streams.get(2) as { port: number }).port
    await stop(two)
    // The connection's end is reported for the groups that used it; new sends fail to connect.
    await one.recorder.until(() => one.recorder.unreachables.length > 0)
    assert.deepEqual(one.recorder.unreachables[0], [4, 2])
    const before = one.recorder.unreachables.length
    one.transport.send([{ groupId: 5, message: message({ to: 2 }) }])
    await one.recorder.until(() => one.recorder.unreachables.length > before)
    assert.ok(one.recorder.unreachables.slice(before).some(([group]) => group === 5))

    two = await streamNode(2, wire, streams, { port })
    while (two.recorder.received.length === 0) {
      one.transport.send([{ groupId: 4, message: message({ to: 2, type: 'heartbeat' }) }])
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.equal(two.recorder.received[0]!.envelopes[0]!.message.type, 'heartbeat')
  } finally {
    await stop(one, two)
  }
})

/** closedAfter opens a socket to a stream listener, writes `frames`, and checks that the receiver closes it. */
async function closedAfter(address: WireAddress, ...frames: Buffer[]): Promise<void> {
  const socket: Socket = connect((address as { port: number }).port, '127.0.0.1')
  socket.on('error', () => {})
  for (const frame of frames) socket.write(frame)
  let timer: NodeJS.Timeout | undefined
  const closed = await Promise.race([
    new Promise((resolve) => socket.once('close', () => resolve(true))),
    new Promise((resolve) => (timer = setTimeout(() => resolve(false), 5000))),
  ])
  clearTimeout(timer)
  socket.destroy()
  assert.ok(closed, 'the receiver closed the stream')
}

function hello(fields: Record<string, unknown>): Buffer {
  return encodeFrame(FrameType.HELLO, ZERO_ID, encodeBody({ version: 1, from: 1, to: 2, ...fields }))
}

function batchFrame(bytes: Buffer): Buffer {
  return encodeFrame(FrameType.REQUEST, ZERO_ID, bytes)
}

test('stream: garbage, bad hellos, a wrong token, oversized or malformed frames close that stream only', async () => {
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  const limits = { streamFrameBytesMax: 4096 }
  const two = await streamNode(2, wire, streams, { token: 'secret', limits })
  const one = await streamNode(1, wire, streams, { token: 'secret', limits })
  try {
    const address = streams.get(2)!
    const good = batchFrame(encodeEnvelopes([{ groupId: 1, message: message({}) }]))
    await closedAfter(address, Buffer.from('GET / HTTP/1.1\r\n\r\n'))
    await closedAfter(address, good) // a batch before any hello
    await closedAfter(address, hello({ token: 'wrong' }), good)
    await closedAfter(address, hello({}), good) // no token
    await closedAfter(address, hello({ token: 'secret', to: 3 }), good) // addressed to another node
    await closedAfter(address, hello({ token: 'secret', version: 2 }), good)
    await closedAfter(address, hello({ token: 'secret' }), batchFrame(Buffer.from([1, 0, 0, 0, 9]))) // a lying count
    const oversized = Buffer.alloc(24)
    oversized.writeUInt32LE(4097, 0)
    oversized[4] = FrameType.REQUEST
    await closedAfter(address, hello({ token: 'secret' }), oversized) // streamFrameBytesMax, refused on the header
    assert.equal(two.recorder.received.length, 0, 'nothing from a refused stream was delivered')

    one.transport.send([{ groupId: 1, message: message({}) }])
    await two.recorder.until(() => two.recorder.received.length === 1)
    assert.equal(two.recorder.received[0]!.from, 1)
  } finally {
    await stop(one, two)
  }
})

test('stream: streamConnectionsMax bounds incoming streams, and a batch above streamFrameBytesMax is dropped and reported', async () => {
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  const two = await streamNode(2, wire, streams, { limits: { streamConnectionsMax: 1 } })
  const one = await streamNode(1, wire, streams, { limits: { streamFrameBytesMax: 2000 } })
  try {
    one.transport.send([{ groupId: 1, message: message({}) }])
    await two.recorder.until(() => two.recorder.received.length === 1)
    await closedAfter(streams.get(2)!, hello({})) // a second stream while one is open
    one.transport.send([{ groupId: 3, message: message({ entries: [{ term: 3, index: 11, type: 'normal', data: Buffer.alloc(3000) }] }) }])
    assert.deepEqual(one.recorder.unreachables, [[3, 2]])
    one.transport.send([{ groupId: 1, message: message({ type: 'heartbeat' }) }])
    await two.recorder.until(() => two.recorder.received.length === 2)
    assert.equal(two.recorder.received[1]!.envelopes[0]!.message.type, 'heartbeat')
  } finally {
    await stop(one, two)
  }
})

test('stream: a peer that stops reading is dropped after requestTimeoutMs and reported unreachable', async () => {
  // A "peer" that accepts and never reads: the sender's bytes pile up in its socket buffer.
  const accepted: Socket[] = []
  const hung = createServer((socket) => {
    socket.pause()
    accepted.push(socket)
  })
  await new Promise<void>((resolve) => hung.listen(0, '127.0.0.1', resolve))
  const wire = new Map<number, WireAddress>()
  const streams = new Map<number, WireAddress>()
  // peerQueueBytesMax far above what is sent: only the stall can report this peer unreachable.
  const one = await streamNode(1, wire, streams, { limits: { requestTimeoutMs: 50, peerQueueBytesMax: 1024 * 1024 * 1024 } })
  streams.set(2, { host: '127.0.0.1', port: (hung.address() as { port: number }).port })
  try {
    const big = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < 40 && one.recorder.unreachables.length === 0; i++) {
      one.transport.send([{ groupId: 6, message: message({ entries: [{ term: 3, index: 11, type: 'normal', data: big }] }) }])
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
    assert.ok(one.recorder.unreachables.length > 0, 'the stalled stream was dropped and reported')
    assert.deepEqual(one.recorder.unreachables[0], [6, 2])
    assert.ok(accepted.length >= 1)
  } finally {
    await stop(one)
    for (const socket of accepted) socket.destroy()
    await new Promise((resolve) => hung.close(resolve))
  }
})
