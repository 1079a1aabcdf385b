/**
 * Log compaction and InstallSnapshot (Raft paper §7): the driver compacts storage; a leader
 * whose follower needs compacted entries sends a snapshot, the follower restores from it, and
 * the leader resumes replication after reportSnapshot.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network } from './network.js'
import { SnapshotTemporarilyUnavailable } from '../../src/raft/util.js'

const plain = { preVote: false, checkQuorum: false }

function laggingFollowerNetwork(): Network {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  for (let i = 0; i < 10; i++) net.propose(1, `e${i}`)
  net.compact(1, 9) // entries up to 9 are gone from 1's storage
  return net
}

test('§7 a leader sends a snapshot to a follower that needs entries it has compacted', () => {
  const net = laggingFollowerNetwork()
  net.heal()
  net.tick(1, [1])
  const snaps = net.sent.filter((m) => m.type === 'snap' && m.to === 3)
  assert.equal(snaps.length, 1)
  assert.equal(snaps[0]!.snapshot!.meta.index, 12)
  // The follower's acknowledgement of the snapshot moves it straight back to replication.
  assert.equal(net.status(1).progress![3]!.state, 'replicate')
  // The follower restored the state machine from the snapshot.
  assert.deepEqual(net.peer(3).applied, net.peer(1).applied)
  assert.equal(net.status(3).commit, 12)
})

test('§7 a snapshot still being generated (SnapshotTemporarilyUnavailable) is sent once storage has it', () => {
  const net = laggingFollowerNetwork()
  const storage = net.peer(1).storage
  const generated = storage.snapshot.bind(storage)
  let asked = 0
  storage.snapshot = () => {
    asked++
    throw new SnapshotTemporarilyUnavailable()
  }
  net.heal()
  net.tick(6, [1])
  assert.ok(asked >= 1, 'the leader asked storage for a snapshot')
  assert.equal(net.sent.filter((m) => m.type === 'snap').length, 0, 'nothing is sent while the snapshot is unavailable')
  assert.notEqual(net.status(1).progress![3]!.state, 'snapshot')
  storage.snapshot = generated
  net.tick(6, [1])
  assert.equal(net.sent.filter((m) => m.type === 'snap' && m.to === 3).length, 1, 'sent on a heartbeat response once generated')
  assert.deepEqual(net.peer(3).applied, net.peer(1).applied)
})

test('§7 after reportSnapshot(ok) the leader probes and resumes normal replication', () => {
  const net = laggingFollowerNetwork()
  net.heal()
  net.tick(1, [1])
  net.peer(1).node.reportSnapshot(3, true)
  net.propose(1, 'after')
  net.tick(2, [1])
  assert.equal(net.status(1).progress![3]!.state, 'replicate')
  assert.deepEqual(net.peer(3).applied, net.peer(1).applied)
  assert.equal(net.peer(3).applied.at(-1), 'after')
})

test('§7 a failed snapshot (reportSnapshot false) is retried', () => {
  const net = laggingFollowerNetwork()
  net.heal()
  const snaps: number[] = []
  net.filter = (m) => {
    if (m.type === 'snap') snaps.push(m.to)
    return m.type !== 'snap' // the transfer fails; the test network reports it with reportSnapshot(3, false)
  }
  net.tick(1, [1])
  assert.deepEqual(snaps, [3])
  assert.equal(net.status(1).progress![3]!.state, 'probe', 'a failed transfer returns the peer to probing')
  net.heal()
  net.tick(3, [1])
  assert.deepEqual(net.peer(3).applied, net.peer(1).applied)
  assert.equal(net.sent.filter((m) => m.type === 'snap').length, 2)
})

test('§7 while a snapshot is in flight nothing else is sent to that peer', () => {
  const net = laggingFollowerNetwork()
  net.heal()
  net.reportSnapshots = false
  net.filter = (m) => !(m.type === 'appResp' && m.from === 3 && !m.reject) // the snapshot's ack is lost
  net.tick(1, [1])
  assert.equal(net.status(1).progress![3]!.state, 'snapshot')
  const mark = net.sent.length
  net.propose(1, 'more')
  net.tick(3, [1])
  assert.deepEqual(net.sent.slice(mark).filter((m) => m.from === 1 && m.to === 3).map((m) => m.type).filter((t) => t !== 'heartbeat'), [])
  net.heal()
  net.peer(1).node.reportSnapshot(3, true)
  net.tick(2, [1])
  assert.deepEqual(net.peer(3).applied, net.peer(1).applied)
})

test('§7 a follower ignores a snapshot older than its commit index', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`)
  net.compact(1, 3)
  const old = net.peer(1).storage.snapshot()
  const before = net.status(2)
  net.peer(2).node.step({ type: 'snap', from: 1, to: 2, term: 2, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: old })
  net.stabilize()
  const after = net.status(2)
  assert.equal(after.lastIndex, before.lastIndex)
  assert.equal(after.commit, before.commit)
  assert.ok(net.sent.some((m) => m.type === 'appResp' && m.from === 2 && m.index === before.commit))
})

test('§7 a follower whose log already contains the snapshot point keeps its log and fast-forwards commit', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.filter = (m) => !(m.to === 3 && (m.type === 'heartbeat' || (m.type === 'app' && m.entries.length === 0)))
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`)
  // 3 has every entry, but has not learned they are committed.
  assert.equal(net.status(3).lastIndex, 7)
  assert.ok(net.status(3).commit < 7)
  net.compact(1)
  net.peer(3).node.step({ type: 'snap', from: 1, to: 3, term: 2, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, snapshot: net.peer(1).storage.snapshot() })
  net.stabilize()
  assert.equal(net.status(3).commit, 7)
  assert.deepEqual(net.peer(3).applied, ['e0', 'e1', 'e2', 'e3', 'e4'])
})

test('§7 a restarted node recovers from its snapshot plus the log after it', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  for (let i = 0; i < 6; i++) net.propose(1, `e${i}`)
  net.compact(2, 5)
  net.propose(1, 'tail')
  net.crash(2)
  net.restart(2)
  net.stabilize()
  assert.deepEqual(net.peer(2).applied, ['e0', 'e1', 'e2', 'e3', 'e4', 'e5', 'tail'])
  assert.equal(net.status(2).term, 2)
})

test('§7 compaction on followers does not disturb replication; a new leader with a compacted log still repairs others', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  for (let i = 0; i < 8; i++) net.propose(1, `e${i}`)
  net.compact(2)
  net.heal()
  net.isolate(1)
  net.electLeader(2)
  net.tick(2, [2])
  assert.deepEqual(net.peer(3).applied, net.peer(2).applied)
  assert.equal(net.peer(3).applied.length, 8)
  assert.ok(net.sent.some((m) => m.type === 'snap' && m.from === 2 && m.to === 3))
})
