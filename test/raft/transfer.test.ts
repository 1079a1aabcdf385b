/**
 * Leadership transfer (dissertation §3.10): the leader stops accepting proposals, brings the
 * transferee up to date, and sends it timeoutNow so it campaigns at once; a transfer that does
 * not finish within an election timeout is abandoned.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network, bytes } from './network.js'

const opts = { preVote: true, checkQuorum: true }

test('§3.10 leadership moves to an up-to-date follower at once, in the next term', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  const term = net.status(1).term
  net.peer(1).node.transferLeadership(2)
  net.stabilize()
  assert.equal(net.status(2).role, 'leader')
  assert.equal(net.status(2).term, term + 1)
  assert.equal(net.status(1).leader, 2)
  assert.ok(net.sent.some((m) => m.type === 'timeoutNow' && m.to === 2))
})

test('§3.10 the leader first catches a lagging transferee up, then hands over', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  net.isolate(3)
  for (let i = 0; i < 5; i++) net.propose(1, `e${i}`)
  net.filter = (m) => !(m.to === 3 && m.type === 'app') // 3 stays behind while the transfer starts
  net.heal()
  net.filter = (m) => !(m.to === 3 && m.type === 'app')
  net.peer(1).node.transferLeadership(3)
  net.stabilize()
  assert.equal(net.status(1).leadTransferee, 3)
  assert.ok(!net.sent.some((m) => m.type === 'timeoutNow'), 'no timeoutNow before 3 has the whole log')
  net.filter = () => true
  net.tick(1, [1])
  assert.equal(net.status(3).role, 'leader')
  assert.equal(net.peer(3).applied.length, 5)
})

test('§3.10 proposals are refused while a transfer is in progress', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  net.isolate(2)
  net.peer(1).node.transferLeadership(2)
  net.stabilize()
  const r = net.peer(1).node.propose(bytes('x'))
  assert.ok(!r.ok && r.reason === 'dropped' && r.message.includes('transfer'))
})

test('§3.10 a transfer that does not finish within an election timeout is abandoned', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  net.cutLink(1, 2)
  net.peer(1).node.transferLeadership(2)
  net.stabilize()
  assert.equal(net.status(1).leadTransferee, 2)
  net.tick(10, [1, 3])
  assert.equal(net.status(1).leadTransferee, 0)
  assert.equal(net.status(1).role, 'leader')
  assert.equal(net.peer(1).node.propose(bytes('x')).ok, true)
})

test('§3.10 transfer to a learner, to itself, or to a stranger is ignored', () => {
  const net = new Network([1, 2], opts, [3])
  net.electLeader(1)
  for (const to of [3, 1, 9]) {
    net.peer(1).node.transferLeadership(to)
    net.stabilize()
    assert.equal(net.status(1).leadTransferee, 0, `to ${to}`)
    assert.equal(net.status(1).role, 'leader')
  }
})

test('§3.10 a transfer asked of a follower is forwarded to the leader', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  net.peer(3).node.transferLeadership(3)
  net.stabilize()
  assert.equal(net.status(3).role, 'leader')
})

test('§3.10 the transferee campaigns past the leader lease of check-quorum', () => {
  const net = new Network([1, 2, 3], opts)
  net.electLeader(1)
  net.tick(2)
  net.peer(1).node.transferLeadership(3)
  net.stabilize()
  assert.equal(net.status(3).role, 'leader')
  assert.equal(net.status(2).leader, 3)
})
