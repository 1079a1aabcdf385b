/**
 * Disruption avoidance (dissertation §9.6, §6.2 and §4.2.3): pre-vote keeps a partitioned node
 * from inflating its term; check-quorum makes a leader that lost its quorum step down, and lets
 * followers that hear from a live leader ignore vote requests (the leader lease).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network } from './network.js'

test('§9.6 pre-vote: a partitioned node does not raise its term, and rejoining does not disrupt the leader', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: false })
  net.electLeader(1)
  const term = net.status(1).term
  net.isolate(3)
  net.tick(100, [3])
  assert.equal(net.status(3).term, term, 'pre-elections never change the term')
  assert.equal(net.status(3).role, 'preCandidate')
  net.heal()
  net.tick(2, [1])
  assert.equal(net.status(1).role, 'leader')
  assert.equal(net.status(1).term, term)
  assert.equal(net.status(3).leader, 1)
})

test('§9.6 without pre-vote the same partitioned node disrupts the leader when it rejoins', () => {
  const net = new Network([1, 2, 3], { preVote: false, checkQuorum: false })
  net.electLeader(1)
  const term = net.status(1).term
  net.isolate(3)
  net.tick(100, [3])
  assert.ok(net.status(3).term > term)
  net.heal()
  net.tick(2, [1])
  net.tick(30)
  assert.ok(net.status(net.leader()).term > term, 'the group had to hold a new election')
})

test('§9.6 pre-vote: a pre-candidate wins the pre-vote, then runs a real election in the next term', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: false })
  net.electLeader(2)
  const term = net.status(2).term
  net.isolate(2)
  net.tick(40, [1, 3])
  const leader = net.leader()
  assert.ok(leader === 1 || leader === 3)
  assert.equal(net.status(leader).term, term + 1)
  assert.ok(net.sent.some((m) => m.type === 'preVote' && m.term === term + 1))
})

test('§9.6 pre-vote: a node with a stale log cannot win a pre-vote', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: false })
  net.electLeader(1)
  net.isolate(3)
  net.propose(1, 'a')
  net.heal()
  net.isolate(1)
  net.peer(3).node.campaign() // 3 lacks 'a', which 2 has
  net.stabilize()
  assert.notEqual(net.status(3).role, 'leader')
  assert.ok(net.sent.some((m) => m.type === 'preVoteResp' && m.from === 2 && m.to === 3 && m.reject))
})

test('§6.2 check-quorum: a leader that hears from no quorum within an election timeout steps down', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: true })
  net.electLeader(1)
  net.isolate(1)
  net.tick(10, [1])
  assert.equal(net.status(1).role, 'leader', 'the first check counts the heartbeat responses of the last timeout')
  net.tick(11, [1])
  assert.equal(net.status(1).role, 'follower')
  assert.equal(net.status(1).leader, 0)
})

test('§6.2 check-quorum: a leader that keeps hearing from a quorum stays leader', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: true })
  net.electLeader(1)
  net.isolate(3)
  net.tick(100, [1, 2])
  assert.equal(net.status(1).role, 'leader')
})

test('§4.2.3 leader lease: a follower that hears from a live leader ignores a vote request from a higher term', () => {
  const net = new Network([1, 2, 3], { preVote: false, checkQuorum: true })
  net.electLeader(1)
  const term = net.status(2).term
  net.peer(2).node.step({ type: 'vote', from: 3, to: 2, term: term + 5, logTerm: 99, index: 99, entries: [], commit: 0, reject: false, rejectHint: 0 })
  const out = net.collect()
  assert.equal(out.length, 0, 'no answer at all')
  assert.equal(net.status(2).term, term)
  assert.equal(net.status(2).leader, 1)
})

test('§4.2.3 a removed server cannot disrupt the group once pre-vote and check-quorum are on', () => {
  const net = new Network([1, 2, 3], { preVote: true, checkQuorum: true })
  net.electLeader(1)
  net.cutLink(1, 3, true) // 3 no longer hears from the leader, but can still send
  net.tick(100, [3])
  net.tick(100, [1, 2])
  assert.equal(net.status(1).role, 'leader')
  assert.equal(net.status(1).term, net.status(2).term)
})
