/**
 * Leader election (Raft paper §5.2, §5.4.1) and term handling of stale messages (§5.1).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network } from './network.js'

const plain = { preVote: false, checkQuorum: false }

test('§5.2 a follower that hears no heartbeat starts an election and wins it', () => {
  const net = new Network([1, 2, 3], plain)
  net.tick(30)
  assert.equal(net.leaders().length, 1)
  const leader = net.leader()
  assert.equal(net.status(leader).term, 2) // founding members start at term 1 (see MemoryRaftStorage.withPeers)
  for (const id of [1, 2, 3]) assert.equal(net.status(id).leader, leader)
})

test('§5.2 election timeouts are randomized in [electionTimeoutTicks, 2*electionTimeoutTicks)', () => {
  for (const draw of [0, 0.5, 0.999]) {
    const net = new Network([1], { ...plain, random: () => draw, electionTimeoutTicks: 10 })
    const expected = 10 + Math.floor(draw * 10)
    net.tick(expected - 1)
    assert.equal(net.status(1).role, 'follower', `draw ${draw}`)
    net.tick(1)
    assert.equal(net.status(1).role, 'leader', `draw ${draw}`)
  }
})

test('§5.2 a candidate that wins a majority becomes leader and sends heartbeats', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  assert.equal(net.status(1).term, 2)
  assert.equal(net.status(2).vote, 1)
  net.tick(1, [1])
  assert.ok(net.sent.some((m) => m.type === 'heartbeat' && m.from === 1))
})

test('§5.2 each node votes for at most one candidate per term', () => {
  const net = new Network([1, 2, 3], plain)
  net.isolate(3)
  net.electLeader(1) // 2 votes for 1 in term 2
  const s2 = net.status(2)
  assert.equal(s2.vote, 1)
  // 3 campaigns in the same term 2: 2 must refuse.
  net.heal()
  net.isolate(1)
  net.peer(3).node.campaign()
  net.stabilize()
  assert.notEqual(net.status(3).role, 'leader')
  assert.equal(net.status(2).vote, 1)
})

test('§5.2 a candidate that loses the vote (split vote) times out and retries in a new term', () => {
  const net = new Network([1, 2, 3, 4], plain)
  // 1 and 3 campaign simultaneously; each gets one other vote: no majority of 4.
  net.cutLink(1, 3)
  net.cutLink(1, 4)
  net.cutLink(3, 2)
  net.peer(1).node.campaign()
  net.peer(3).node.campaign()
  net.stabilize()
  assert.equal(net.leaders().length, 0)
  net.heal()
  net.tick(60)
  assert.equal(net.leaders().length, 1)
  assert.ok(net.status(net.leader()).term >= 3)
})

test('§5.4.1 a vote is refused to a candidate with a less up-to-date log', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  net.propose(1, 'a')
  net.heal()
  // 3 missed entry 'a': its log (last index 2) is behind 1 and 2 (last index 3).
  net.isolate(1)
  net.peer(3).node.campaign()
  net.stabilize()
  assert.notEqual(net.status(3).role, 'leader')
  assert.ok(net.sent.some((m) => m.type === 'voteResp' && m.from === 2 && m.to === 3 && m.reject))
  // 2 has the longest log and wins.
  net.peer(2).node.campaign()
  net.stabilize()
  assert.equal(net.status(2).role, 'leader')
})

test('§5.1 a node that sees a higher term reverts to follower and adopts it', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  net.electLeader(2)
  assert.equal(net.status(1).role, 'leader') // stale, isolated
  net.heal()
  net.tick(1, [2])
  assert.equal(net.status(1).role, 'follower')
  assert.equal(net.status(1).term, net.status(2).term)
  assert.equal(net.status(1).leader, 2)
})

test('§5.1 a message from a stale term is ignored', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  net.electLeader(2)
  const before = net.status(3)
  // Deliver an old-term append from 1 directly to 3.
  net.peer(3).node.step({ type: 'app', from: 1, to: 3, term: 2, logTerm: 2, index: 2, entries: [], commit: 2, reject: false, rejectHint: 0 })
  net.stabilize()
  const after = net.status(3)
  assert.equal(after.term, before.term)
  assert.equal(after.leader, 2)
})

test('§5.2 a learner or removed node never campaigns', () => {
  const net = new Network([1, 2], plain, [3])
  net.isolate(3)
  net.tick(100, [3])
  assert.equal(net.status(3).role, 'follower')
  assert.equal(net.status(3).term, 1)
})

test('§5.2 a single-node group elects itself and commits at once', () => {
  const net = new Network([1], plain)
  net.tick(20)
  assert.equal(net.status(1).role, 'leader')
  const r = net.propose(1, 'x')
  assert.equal(r.ok, true)
  assert.deepEqual(net.peer(1).applied, ['x'])
})

test('§5.2 a restarted node keeps its term and vote (hard state is persisted)', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.crash(2)
  net.restart(2)
  assert.equal(net.status(2).term, 2)
  assert.equal(net.status(2).vote, 1)
})

test('§5.2 a candidate that hears from a leader of its own term steps down to follower', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  net.peer(3).node.campaign() // term 3, alone
  net.stabilize()
  assert.equal(net.status(3).role, 'candidate')
  const term = net.status(3).term
  net.peer(3).node.step({ type: 'app', from: 2, to: 3, term, logTerm: 2, index: 2, entries: [], commit: 2, reject: false, rejectHint: 0 })
  assert.equal(net.status(3).role, 'follower')
  assert.equal(net.status(3).leader, 2)
})

test('§5.4.1 a log with a later last term is more up to date than a longer log', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  for (let i = 0; i < 5; i++) net.peer(1).node.propose(new TextEncoder().encode(`long${i}`)) // term 2, longer
  net.stabilize()
  net.electLeader(2) // term 3: 2's log is shorter but ends in term 3
  net.crash(1)
  net.restart(1) // 1 is a follower again, with its longer term-2 log
  net.heal()
  net.isolate(2)
  net.peer(1).node.campaign() // term 3, in which 3 already voted for 2
  net.stabilize()
  net.peer(1).node.campaign() // term 4: 3 is free to vote, and judges the logs
  net.stabilize()
  assert.equal(net.status(1).term, 4)
  assert.notEqual(net.status(1).role, 'leader', '3 prefers the term-3 log over the longer term-2 log')
  assert.ok(net.sent.some((m) => m.type === 'voteResp' && m.from === 3 && m.to === 1 && m.reject && m.term === 4))
})
