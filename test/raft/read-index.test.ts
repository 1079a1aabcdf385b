/**
 * Linearizable reads with ReadIndex (dissertation §6.4; Raft paper §8): the leader records its
 * commit index, confirms with a heartbeat round that it still leads, and only then answers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network, bytes } from './network.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import { READ_INDEX_PENDING_MAX } from '../../src/raft/index.js'

const plain = { preVote: false, checkQuorum: false }
const decoder = new TextDecoder()

test('§6.4 a leader answers ReadIndex with its commit index after a quorum acknowledges a heartbeat', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  const node = net.peer(1).node
  node.readIndex(bytes('r1'))
  const heartbeats = net.collect()
  assert.ok(heartbeats.every((m) => m.type === 'heartbeat' && decoder.decode(m.context!) === 'r1'))
  assert.equal(net.peer(1).readStates.length, 0, 'not before the round completes')
  for (const m of heartbeats) net.deliver(m)
  net.stabilize()
  assert.deepEqual(net.peer(1).readStates.map((s) => [s.index, decoder.decode(s.context)]), [[3, 'r1']])
})

test('§6.4 a leader that hears only a minority never answers a read (it may no longer be leader)', () => {
  const net = new Network([1, 2, 3, 4, 5], plain)
  net.electLeader(1)
  // 1 can still reach 2, but 3, 4, 5 have moved on under a new leader.
  for (const other of [3, 4, 5]) net.cutLink(1, other)
  net.cutLink(2, 3)
  net.cutLink(2, 4)
  net.cutLink(2, 5)
  net.electLeader(3)
  net.propose(3, 'newer')
  net.peer(1).node.readIndex(bytes('stale?'))
  net.stabilize()
  net.tick(3, [1])
  assert.ok(net.sent.some((m) => m.type === 'heartbeatResp' && m.from === 2 && m.to === 1), '2 did acknowledge')
  assert.equal(net.peer(1).readStates.length, 0)
})

test('§6.4 a leader waits until it has committed an entry of its own term before serving reads', () => {
  const net = new Network([1, 2, 3], plain)
  net.filter = (m) => m.type !== 'app'
  net.electLeader(1)
  net.peer(1).node.readIndex(bytes('early'))
  net.stabilize()
  net.tick(2, [1])
  assert.equal(net.peer(1).readStates.length, 0)
  net.heal()
  net.tick(2, [1])
  assert.deepEqual(net.peer(1).readStates.map((s) => s.index), [2])
})

test('§6.4 a follower forwards ReadIndex to the leader and gets the read index back', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  net.peer(3).node.readIndex(bytes('from-3'))
  net.stabilize()
  assert.ok(net.sent.some((m) => m.type === 'readIndex' && m.from === 3 && m.to === 1))
  assert.deepEqual(net.peer(3).readStates.map((s) => [s.index, decoder.decode(s.context)]), [[3, 'from-3']])
  assert.equal(net.peer(1).readStates.length, 0)
})

test('§6.4 concurrent reads are all confirmed by the round that confirms the latest', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  const node = net.peer(1).node
  net.filter = (m) => m.type !== 'heartbeatResp'
  node.readIndex(bytes('a'))
  node.readIndex(bytes('b'))
  net.stabilize()
  net.propose(1, 'x')
  node.readIndex(bytes('c'))
  net.heal()
  net.stabilize()
  assert.deepEqual(net.peer(1).readStates.map((s) => [decoder.decode(s.context), s.index]), [['a', 2], ['b', 2], ['c', 3]])
})

test('§6.4 a single-voter leader answers reads at once', () => {
  const net = new Network([1], plain)
  net.electLeader(1)
  net.peer(1).node.readIndex(bytes('solo'))
  net.stabilize()
  assert.deepEqual(net.peer(1).readStates.map((s) => s.index), [2])
})

test('§6.4 an empty or oversized read context is refused', () => {
  const net = new Network([1], plain)
  const isInvalid = (e: unknown): boolean => e instanceof KvError && e.code === ErrorCode.INVALID
  assert.throws(() => net.peer(1).node.readIndex(new Uint8Array(0)), isInvalid)
  assert.throws(() => net.peer(1).node.readIndex(new Uint8Array(5000)), isInvalid)
})

test('§6.4 pending reads are bounded by READ_INDEX_PENDING_MAX', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  const node = net.peer(1).node
  for (let i = 0; i < READ_INDEX_PENDING_MAX + 10; i++) node.readIndex(bytes(`r${i}`))
  const msgs = net.collect()
  assert.equal(msgs.filter((m) => m.type === 'heartbeat').length, READ_INDEX_PENDING_MAX * 2)
})
