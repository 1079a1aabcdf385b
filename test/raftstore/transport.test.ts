// Raft message codec, the loopback transport and the TCP transport (over real sockets on
// loopback): round trips, per-destination batching, chunked snapshots, unreachable reports,
// reconnection after a peer restarts.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { decodeEnvelopes, encodeEnvelopeParts, encodeEnvelopes, type RaftEnvelope } from '../../src/raftstore/message-codec.js'
import { TcpTransport } from '../../src/raftstore/tcp-transport.js'
import { LoopbackNetwork } from '../../src/raftstore/transport.js'
import { Recorder, message } from './recorder.js'
import { randomUUID } from 'node:crypto'
import { WireClient, WireServer, type WireAddress } from '../../src/wire/index.js'

test('codec: every message field round-trips, byte fields as Buffers', () => {
  const envelopes: RaftEnvelope[] = [
    { groupId: 5, message: message({ entries: [{ term: 2, index: 11, type: 'normal', data: new Uint8Array([1, 2, 3]) }, { term: 3, index: 12, type: 'confChange', data: new Uint8Array(0) }] }) },
    { groupId: 2 ** 40, message: message({ type: 'snap', snapshot: { meta: { index: 7, term: 2, confState: { voters: [1, 2], learners: [3], votersOutgoing: [] } }, data: Buffer.from('state') } }) },
    { groupId: 1, message: message({ type: 'readIndexResp', reject: true, rejectHint: 4, context: new Uint8Array([9, 9]) }) },
  ]
  const decoded = decodeEnvelopes(encodeEnvelopes(envelopes))
  assert.equal(decoded.length, 3)
  assert.deepEqual(decoded[0]!.message.entries.map((e) => [e.term, e.index, e.type, [...e.data]]), [[2, 11, 'normal', [1, 2, 3]], [3, 12, 'confChange', []]])
  assert.ok(Buffer.isBuffer(decoded[0]!.message.entries[0]!.data))
  assert.equal(decoded[1]!.groupId, 2 ** 40)
  assert.deepEqual(decoded[1]!.message.snapshot!.meta, envelopes[1]!.message.snapshot!.meta)
  assert.equal(Buffer.from(decoded[1]!.message.snapshot!.data).toString(), 'state')
  assert.equal(decoded[2]!.message.reject, true)
  assert.deepEqual([...decoded[2]!.message.context!], [9, 9])
  assert.equal(decoded[0]!.message.snapshot, undefined)
  assert.equal(decoded[0]!.message.context, undefined)
  assert.throws(() => decodeEnvelopes(Buffer.from([0xc1])), { code: 'KV_ERR_PROTOCOL' })
  assert.throws(() => decodeEnvelopes(encodeEnvelopes([{ groupId: -1, message: message({}) }])), { code: 'KV_ERR_PROTOCOL' })
  assert.throws(() => decodeEnvelopes(encodeEnvelopes([{ groupId: 1, message: message({ term: 1.5 }) }])), { code: 'KV_ERR_PROTOCOL' })
})

test('codec: encodeEnvelopeParts is the same bytes, with large entry data by reference', () => {
  const small = Buffer.alloc(100, 1)
  const large = Buffer.alloc(70_000, 2)
  const envelopes: RaftEnvelope[] = [
    { groupId: 3, message: message({ entries: [{ term: 2, index: 11, type: 'normal', data: small }, { term: 2, index: 12, type: 'normal', data: large }, { term: 2, index: 13, type: 'normal', data: small }] }) },
    { groupId: 3, message: message({ type: 'readIndexResp', context: new Uint8Array([9]), entries: [{ term: 2, index: 14, type: 'normal', data: large }] }) },
  ]
  const { parts, bytes } = encodeEnvelopeParts(envelopes, 24, 1024)
  const joined = Buffer.concat(parts)
  assert.equal(joined.length, bytes)
  assert.ok(joined.subarray(24).equals(encodeEnvelopes(envelopes)), 'the parts after the headroom are encodeEnvelopes byte for byte')
  assert.equal(parts.filter((part) => part.buffer === large.buffer && part.byteOffset === large.byteOffset).length, 2, 'each large entry is a view, not a copy')
  assert.equal(parts.length, 5)
  const whole = encodeEnvelopeParts(envelopes, 0, Infinity)
  assert.equal(whole.parts.length, 1, 'nothing out of line: one buffer')
  assert.equal(decodeEnvelopes(whole.parts[0]!)[1]!.message.entries[0]!.data.byteLength, 70_000)
})

test('codec: truncated, padded or lying input is KV_ERR_PROTOCOL, never a crash or a huge allocation', () => {
  const whole = encodeEnvelopes([
    { groupId: 1, message: message({ entries: [{ term: 2, index: 11, type: 'normal', data: Buffer.alloc(40, 7) }], context: new Uint8Array([1]) }) },
    { groupId: 1, message: message({ type: 'snap', snapshot: { meta: { index: 7, term: 2, confState: { voters: [1], learners: [], votersOutgoing: [] } }, data: Buffer.from('s') } }) },
  ])
  assert.equal(decodeEnvelopes(whole).length, 2)
  for (let cut = 0; cut < whole.length; cut++) assert.throws(() => decodeEnvelopes(whole.subarray(0, cut)), { code: 'KV_ERR_PROTOCOL' }, `cut at ${cut}`)
  assert.throws(() => decodeEnvelopes(Buffer.concat([whole, Buffer.from([0])])), { code: 'KV_ERR_PROTOCOL', message: /trailing/ })
  const lying = Buffer.from(whole)
  lying.writeUInt32BE(0xffffffff, 1) // a message count no batch of this size can hold
  assert.throws(() => decodeEnvelopes(lying), { code: 'KV_ERR_PROTOCOL' })
  const badVersion = Buffer.from(whole)
  badVersion[0] = 9
  assert.throws(() => decodeEnvelopes(badVersion), { code: 'KV_ERR_PROTOCOL', message: /version/ })
})

test('loopback: one batch per destination; cut links report unreachable and failed snapshots', async () => {
  const network = new LoopbackNetwork()
  const [a, b, c] = [new Recorder(), new Recorder(), new Recorder()]
  const ta = network.transport(1)
  await ta.start(a)
  await network.transport(2).start(b)
  await network.transport(3).start(c)
  ta.send([
    { groupId: 1, message: message({ to: 2 }) },
    { groupId: 2, message: message({ to: 2 }) },
    { groupId: 1, message: message({ to: 3 }) },
  ])
  await b.until(() => b.received.length === 1)
  await c.until(() => c.received.length === 1)
  assert.equal(b.received[0]!.envelopes.length, 2, 'both groups in one batch to node 2')
  network.disconnect(1, 3)
  ta.send([{ groupId: 4, message: message({ to: 3, type: 'snap', snapshot: { meta: { index: 1, term: 1, confState: { voters: [1], learners: [], votersOutgoing: [] } }, data: new Uint8Array(0) } }) }])
  await a.until(() => a.unreachables.length === 1)
  assert.deepEqual(a.unreachables, [[4, 3]])
  assert.deepEqual(a.snapshotStatuses, [[4, 3, false]])
  assert.equal(c.received.length, 1)
})

async function tcpNode(nodeId: number, peers: Map<number, WireAddress>, port = 0): Promise<{ server: WireServer; transport: TcpTransport; recorder: Recorder; address: WireAddress }> {
  const server = new WireServer({ serverInfo: { nodeId } })
  const transport = new TcpTransport({
    nodeId,
    server,
    peers: (id) => peers.get(id),
    limits: { snapshotChunkBytes: 64 * 1024, snapshotChunksInflightMax: 2, reconnectDelayMsMin: 10, reconnectDelayMsMax: 20, connectTimeoutMs: 1000 },
  })
  const recorder = new Recorder()
  await transport.start(recorder)
  const address = await server.listen({ host: '127.0.0.1', port })
  peers.set(nodeId, address)
  return { server, transport, recorder, address }
}

test('tcp: messages and a chunked snapshot cross real sockets; a dead peer is reported and reconnected to', async () => {
  const peers = new Map<number, WireAddress>()
  const one = await tcpNode(1, peers)
  let two = await tcpNode(2, peers)
  try {
    one.transport.send([{ groupId: 9, message: message({ to: 2, entries: [{ term: 3, index: 11, type: 'normal', data: Buffer.alloc(1000, 7) }] }) }])
    await two.recorder.until(() => two.recorder.received.length === 1)
    const got = two.recorder.received[0]!
    assert.equal(got.from, 1)
    assert.deepEqual([...got.envelopes[0]!.message.entries[0]!.data.subarray(0, 3)], [7, 7, 7])

    const data = Buffer.alloc(300 * 1024 + 17)
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff
    const snapshot = { meta: { index: 50, term: 3, confState: { voters: [1, 2, 3], learners: [], votersOutgoing: [] } }, data }
    one.transport.send([{ groupId: 9, message: message({ to: 2, type: 'snap', snapshot }) }])
    await one.recorder.until(() => one.recorder.snapshotStatuses.length === 1)
    assert.deepEqual(one.recorder.snapshotStatuses, [[9, 2, true]])
    await two.recorder.until(() => two.recorder.received.length === 2)
    const snap = two.recorder.received[1]!.envelopes[0]!.message.snapshot!
    assert.deepEqual(snap.meta, snapshot.meta)
    assert.ok(Buffer.from(snap.data).equals(data), 'the snapshot is reassembled byte for byte')

    const port = (two.address as { port: number }).port
    await two.transport.close()
    await two.server.close()
    one.transport.send([{ groupId: 9, message: message({ to: 2 }) }])
    await one.recorder.until(() => one.recorder.unreachables.length > 0)
    assert.deepEqual(one.recorder.unreachables[0], [9, 2])

    two = await tcpNode(2, peers, port)
    // Keep sending, as Raft's heartbeats would, until the back-off lets a reconnect through.
    while (two.recorder.received.length === 0) {
      one.transport.send([{ groupId: 9, message: message({ to: 2, type: 'heartbeat' }) }])
      await new Promise((resolve) => setTimeout(resolve, 10))
    }
    assert.equal(two.recorder.received[0]!.envelopes[0]!.message.type, 'heartbeat')
  } finally {
    await one.transport.close()
    await two.transport.close()
    await one.server.close()
    await two.server.close()
  }
})

test('tcp: malformed or oversized input from a peer is refused with a KV_ERR code and the node keeps serving', async () => {
  const server = new WireServer({ serverInfo: {} })
  const recorder = new Recorder()
  const transport = new TcpTransport({ nodeId: 2, server, peers: () => undefined, limits: { snapshotBytesMax: 1000, snapshotsReceivingMax: 1 } })
  await transport.start(recorder)
  const address = await server.listen({ host: '127.0.0.1', port: 0 })
  const client = await WireClient.connect(address, { clientId: randomUUID(), name: 'peer', pid: process.pid })
  try {
    await assert.rejects(client.request('raft.messages', { from: 1, batches: [Buffer.from([0xc1])] }), { code: 'KV_ERR_PROTOCOL' })
    await assert.rejects(client.request('raft.messages', { from: -1, batches: [] }), { code: 'KV_ERR_PROTOCOL' })
    await assert.rejects(client.request('raft.messages', { from: 1, batches: 'x' }), { code: 'KV_ERR_PROTOCOL' })
    const chunk = (id: string, total: number, offset = 0, bytes = Buffer.alloc(10)) => client.request('raft.snapshot', { from: 1, id, total, offset, chunk: bytes, header: null })
    await assert.rejects(chunk('big', 5000), { code: 'KV_ERR_VALUE_TOO_LARGE', message: /snapshotBytesMax/ })
    await assert.rejects(chunk('bad-offset', 100, 95), { code: 'KV_ERR_PROTOCOL' })
    await chunk('first', 100)
    await assert.rejects(chunk('second', 100), { code: 'KV_ERR_TOO_MANY_REQUESTS', message: /snapshotsReceivingMax/ })
    await assert.rejects(client.request('raft.snapshot', { from: 1, id: 'first', total: 100, offset: 10, chunk: Buffer.alloc(10), header: Buffer.from('nope') }), { code: 'KV_ERR_PROTOCOL' })
    // Still serving: a well-formed batch addressed to this node is delivered, one addressed elsewhere is not.
    await client.request('raft.messages', { from: 1, batches: [encodeEnvelopes([{ groupId: 1, message: message({ to: 2 }) }, { groupId: 1, message: message({ to: 3 }) }])] })
    assert.equal(recorder.received.length, 1)
    assert.equal(recorder.received[0]!.envelopes.length, 1)
  } finally {
    await client.close()
    await transport.close()
    await server.close()
  }
})
