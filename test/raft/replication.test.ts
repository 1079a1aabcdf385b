/**
 * Log replication (Raft paper §5.3), commitment (§5.4.2), log repair of divergent followers,
 * and the leader's flow control: probe/replicate states, pipelining within inflightMessagesMax,
 * byte-bounded appends, uncommittedBytesMax, proposals on followers.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network, bytes } from './network.js'
import type { Message } from '../../src/raft/index.js'

const plain = { preVote: false, checkQuorum: false }

test('§5.3 a leader appends an empty entry at the start of its term and replicates proposals to every follower', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  assert.equal(net.status(1).commit, 2) // index 1 is the founding snapshot, 2 the term's empty entry
  const r = net.propose(1, 'a')
  assert.deepEqual(r, { ok: true, index: 3, term: 2 })
  for (const id of [1, 2, 3]) {
    assert.deepEqual(net.peer(id).applied, ['a'])
    assert.equal(net.status(id).commit, 3)
  }
})

test('§5.3 an entry is committed once a majority stores it, even if a minority is unreachable', () => {
  const net = new Network([1, 2, 3, 4, 5], plain)
  net.electLeader(1)
  net.isolate(4)
  net.isolate(5)
  net.propose(1, 'a')
  assert.equal(net.status(1).commit, 3)
  net.isolate(3)
  net.propose(1, 'b')
  assert.equal(net.status(1).commit, 3, 'two of five is not a majority')
  net.heal()
  net.tick(2, [1])
  for (const id of [1, 2, 3, 4, 5]) assert.deepEqual(net.peer(id).applied, ['a', 'b'])
})

test('§5.3 a follower rejects an append whose previous entry does not match, and the leader backs up until logs agree', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  for (let i = 0; i < 20; i++) net.propose(1, `e${i}`)
  net.heal()
  net.tick(2, [1])
  assert.equal(net.peer(3).applied.length, 20)
  assert.ok(net.sent.some((m) => m.type === 'appResp' && m.from === 3 && m.reject) || net.sent.some((m) => m.type === 'heartbeatResp' && m.from === 3))
})

test('§5.3 a divergent follower has its conflicting uncommitted suffix overwritten by the leader', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'common')
  // 1 appends entries no one else receives (uncommitted, term 1).
  net.isolate(1)
  for (let i = 0; i < 5; i++) net.peer(1).node.propose(bytes(`lost${i}`))
  net.stabilize()
  net.electLeader(2)
  net.propose(2, 'kept')
  net.heal()
  net.tick(2, [2])
  for (const id of [1, 2, 3]) assert.deepEqual(net.peer(id).applied, ['common', 'kept'], `node ${id}`)
  assert.equal(net.status(1).lastIndex, net.status(2).lastIndex)
})

test('§5.3 a rejection carries a (index, term) hint so the leader skips a whole divergent term per round trip', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  for (let i = 0; i < 50; i++) net.peer(1).node.propose(bytes(`lost${i}`)) // term 2, indexes 3..52
  net.stabilize()
  net.electLeader(2)
  for (let i = 0; i < 10; i++) net.propose(2, `new${i}`) // term 3, indexes 3..13
  net.electLeader(3) // term 4: its progress for 1 starts optimistic at next = 14
  net.heal()
  const before = net.sent.length
  net.tick(2, [3])
  const rejects = net.sent.slice(before).filter((m) => m.type === 'appResp' && m.from === 1 && m.reject)
  // Without the hint, the leader would walk back one entry per rejection (11 round trips).
  assert.equal(rejects.length, 1)
  assert.deepEqual(net.peer(1).applied, net.peer(3).applied)
  assert.equal(net.peer(1).applied.length, 10)
})

test('§5.4.2 a leader never commits an entry from a previous term by counting replicas', () => {
  // Figure 8, in three nodes. One entry per append so replicas of old entries can be counted alone.
  const net = new Network([1, 2, 3], { ...plain, entryBytesMaxPerMessage: 1 })
  net.electLeader(1)
  net.cutLink(1, 3)
  net.filter = (m) => !(m.type === 'appResp' && m.to === 1) // 1 never learns 2 stored 'old'
  net.peer(1).node.propose(bytes('old')) // index 3, term 2: on 1 and 2, uncommitted
  net.stabilize()
  assert.equal(net.status(2).lastIndex, 3)
  assert.equal(net.status(1).commit, 2)
  net.heal()
  net.crash(2)
  net.crash(1)
  net.restart(1)
  // 1 wins term 3 with 3's vote; 3's acknowledgement of the term-3 empty entry (index 4) is lost.
  net.filter = (m) => !(m.type === 'appResp' && m.from === 3 && m.index >= 4)
  net.electLeader(1)
  assert.equal(net.status(1).term, 3)
  assert.equal(net.status(3).lastIndex, 4, '3 stores index 3 (term 2) and 4 (term 3)')
  assert.equal(net.status(1).progress![3]!.match, 3)
  // A majority (1, 3) stores index 3 of term 2, yet it must not be committed by counting replicas.
  assert.equal(net.status(1).commit, 2)
  net.filter = () => true
  net.tick(1, [1])
  // Once the term-3 entry replicates, both commit together.
  assert.equal(net.status(1).commit, 4)
  assert.deepEqual(net.peer(1).applied, ['old'])
})

test('§5.3 a follower learns the commit index from heartbeats and appends', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.filter = (m) => !(m.type === 'app' && m.to === 3 && m.entries.length === 0)
  net.propose(1, 'a')
  net.heal()
  net.tick(1, [1])
  assert.equal(net.status(3).commit, 3)
  assert.deepEqual(net.peer(3).applied, ['a'])
})

test('flow control: a probing follower gets one append per heartbeat, then pipelining once it matches', () => {
  const net = new Network([1, 2], { ...plain, inflightMessagesMax: 4 })
  net.electLeader(1)
  assert.equal(net.status(1).progress![2]!.state, 'replicate')
  net.peer(1).node.reportUnreachable(2)
  assert.equal(net.status(1).progress![2]!.state, 'probe')
  net.isolate(2)
  for (let i = 0; i < 5; i++) net.peer(1).node.propose(bytes(`p${i}`))
  const probes = net.collect().filter((m) => m.type === 'app' && m.to === 2)
  assert.equal(probes.length, 1, 'a probing follower is sent one append and then paused')
  net.heal()
  net.tick(1, [1])
  assert.equal(net.status(1).progress![2]!.state, 'replicate')
  assert.equal(net.peer(2).applied.length, 5)
})

test('flow control: in replicate state at most inflightMessagesMax appends are unacknowledged', () => {
  const net = new Network([1, 2], { ...plain, inflightMessagesMax: 3 })
  net.electLeader(1)
  const held: Message[] = []
  net.filter = (m) => {
    if (m.type === 'appResp' && m.to === 1) {
      held.push(m)
      return false
    }
    return true
  }
  const mark = net.sent.length
  for (let i = 0; i < 10; i++) net.propose(1, `p${i}`)
  const apps = net.sent.slice(mark).filter((m) => m.type === 'app' && m.to === 2 && m.entries.length > 0)
  assert.equal(apps.length, 3, 'the window of 3 is full; the rest wait')
  net.heal()
  for (const m of held) net.deliver(m)
  net.stabilize()
  net.tick(1, [1])
  assert.equal(net.peer(2).applied.length, 10)
})

test('flow control: an append message carries at most entryBytesMaxPerMessage bytes of entries', () => {
  const net = new Network([1, 2], { ...plain, entryBytesMaxPerMessage: 300 })
  net.electLeader(1)
  net.isolate(2)
  for (let i = 0; i < 10; i++) net.peer(1).node.propose(new Uint8Array(100))
  net.stabilize()
  net.heal()
  net.tick(2, [1])
  const apps = net.sent.filter((m) => m.type === 'app' && m.to === 2 && m.entries.length > 0)
  for (const m of apps) assert.ok(m.entries.length === 1 || m.entries.reduce((s, e) => s + e.data.byteLength + 24, 0) <= 300)
  assert.ok(apps.length >= 4)
  assert.equal(net.status(2).commit, 12)
})

test('flow control: proposals beyond uncommittedBytesMax are dropped with the bound named', () => {
  const net = new Network([1, 2, 3], { ...plain, uncommittedBytesMax: 1000 })
  net.electLeader(1)
  net.isolate(1)
  const node = net.peer(1).node
  assert.equal(node.propose(new Uint8Array(600)).ok, true)
  const refused = node.propose(new Uint8Array(600))
  assert.equal(refused.ok, false)
  assert.ok(!refused.ok && refused.reason === 'dropped' && refused.message.includes('uncommittedBytesMax'))
  net.heal()
  net.tick(1, [1])
  assert.equal(node.propose(new Uint8Array(600)).ok, true, 'committing frees the budget')
})

test('a proposal on a follower is refused with the leader to redirect to, unless proposalForwarding is on', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  assert.deepEqual(net.peer(2).node.propose(bytes('x')), { ok: false, reason: 'notLeader', leader: 1 })
  const fwd = new Network([1, 2, 3], { ...plain, proposalForwarding: true })
  fwd.electLeader(1)
  const r = fwd.peer(2).node.propose(bytes('x'))
  assert.deepEqual(r, { ok: true, index: 0, term: 0, forwardedTo: 1 })
  fwd.stabilize()
  for (const id of [1, 2, 3]) assert.deepEqual(fwd.peer(id).applied, ['x'])
})

test('a proposal with no known leader is refused with leader 0', () => {
  const net = new Network([1, 2, 3], plain)
  assert.deepEqual(net.peer(1).node.propose(bytes('x')), { ok: false, reason: 'notLeader', leader: 0 })
})

test('§5.3 duplicated and reordered appends leave the log unchanged (appends are idempotent)', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`)
  const apps = net.sent.filter((m) => m.type === 'app' && m.to === 2)
  for (const m of [...apps].reverse()) net.deliver(m)
  net.stabilize()
  net.tick(1, [1])
  assert.deepEqual(net.peer(2).applied, ['e0', 'e1', 'e2', 'e3', 'e4'])
  assert.equal(net.status(2).lastIndex, 7)
})

test('a restarted follower catches up from its persisted log', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  net.crash(3)
  net.propose(1, 'b')
  net.restart(3)
  net.stabilize()
  assert.deepEqual(net.peer(3).applied, ['a'])
  net.tick(2, [1])
  assert.deepEqual(net.peer(3).applied, ['a', 'b'])
})

test('flow control: a replicating follower recovers when the appends filling its window are lost', () => {
  const net = new Network([1, 2, 3], { ...plain, inflightMessagesMax: 1 })
  net.electLeader(1)
  let dropped = 0
  net.filter = (m) => {
    if (m.type === 'app' && m.to === 3 && m.entries.length > 0 && dropped === 0) {
      dropped++
      return false
    }
    return true
  }
  net.propose(1, 'a') // the append to 3 is lost; its window of one is now full
  net.propose(1, 'b')
  assert.equal(dropped, 1)
  assert.deepEqual(net.peer(3).applied, [])
  net.tick(1, [1]) // a heartbeat response frees the slot; the next append is rejected, then repaired
  assert.deepEqual(net.peer(3).applied, ['a', 'b'])
})
