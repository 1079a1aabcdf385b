/**
 * Membership changes, one server at a time (Raft paper §6; dissertation §4.1-§4.3), and learners.
 * A confChange entry takes effect on a node as soon as it is in its log.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network, bytes } from './network.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import { decodeConfChange, encodeConfChange, type ConfChange } from '../../src/raft/index.js'

const plain = { preVote: false, checkQuorum: false }

function change(net: Network, id: number, c: ConfChange): ReturnType<Network['propose']> {
  const r = net.peer(id).node.proposeConfChange(c)
  net.stabilize()
  return r
}

test('§6 a new voter joins from empty storage, catches up, and counts in the quorum', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  net.addPeer(4)
  assert.equal(change(net, 1, { type: 'addVoter', nodeId: 4 }).ok, true)
  net.tick(2, [1])
  assert.deepEqual(net.status(4).confState.voters, [1, 2, 3, 4])
  assert.deepEqual(net.peer(4).applied, ['a'])
  assert.deepEqual(net.peer(1).confState.voters, [1, 2, 3, 4], 'applyConfChange returns the configuration for the driver')
  // With four voters a quorum is three: two followers down stop commits.
  net.isolate(3)
  net.isolate(4)
  net.propose(1, 'b')
  assert.equal(net.peer(1).applied.length, 1)
  net.heal()
  net.tick(1, [1])
  assert.deepEqual(net.peer(1).applied, ['a', 'b'])
})

test('§6 at most one membership change may be pending at a time', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(2)
  net.isolate(3)
  assert.equal(change(net, 1, { type: 'addVoter', nodeId: 4 }).ok, true)
  const second = change(net, 1, { type: 'addVoter', nodeId: 5 })
  assert.equal(second.ok, false)
  assert.ok(!second.ok && second.reason === 'dropped' && second.message.includes('pending'))
  net.heal()
  net.tick(1, [1])
  assert.equal(change(net, 1, { type: 'addVoter', nodeId: 5 }).ok, true, 'allowed once the first committed')
})

test('§6 (dissertation §4.1) a new leader proposes no membership change before committing an entry of its term', () => {
  const net = new Network([1, 2, 3], plain)
  net.filter = (m) => m.type !== 'app' // the leader cannot replicate its empty entry
  net.electLeader(1)
  const r = net.peer(1).node.proposeConfChange({ type: 'addVoter', nodeId: 4 })
  assert.ok(!r.ok && r.reason === 'dropped' && r.message.includes('committed an entry in its term'))
})

test('§6 a removed follower leaves the quorum and the rest keep committing', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  assert.equal(change(net, 1, { type: 'removeNode', nodeId: 3 }).ok, true)
  net.tick(1, [1])
  assert.deepEqual(net.status(1).confState.voters, [1, 2])
  assert.equal(net.status(1).progress![3], undefined)
  net.crash(3)
  net.propose(1, 'x')
  assert.deepEqual(net.peer(2).applied, ['x'])
})

test('§6 (dissertation §4.2.2) a removed leader keeps leading until the change commits, then steps down; the rest elect a leader', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  assert.equal(change(net, 1, { type: 'removeNode', nodeId: 1 }).ok, true)
  net.tick(1, [1])
  assert.equal(net.status(1).role, 'follower')
  assert.deepEqual(net.status(2).confState.voters, [2, 3])
  // The stepping-down leader hands over with timeoutNow: no election timeout without a leader.
  assert.ok(net.sent.some((m) => m.type === 'timeoutNow' && m.from === 1))
  assert.equal(net.leaders().length, 1)
  net.tick(40)
  const leader = net.leader()
  assert.ok(leader === 2 || leader === 3)
  assert.equal(net.status(1).role, 'follower', 'a non-voter never campaigns')
  net.propose(leader, 'b')
  assert.deepEqual(net.peer(leader === 2 ? 3 : 2).applied, ['a', 'b'])
})

test('§6 (dissertation §4.2.2) a leader being removed does not count itself toward commit', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(3)
  assert.equal(change(net, 1, { type: 'removeNode', nodeId: 1 }).ok, true)
  // 1 and 2 hold the entry: a majority of {1, 2, 3}, but not of the new configuration {2, 3}.
  assert.equal(net.status(1).role, 'leader')
  assert.equal(net.status(2).lastIndex, net.status(1).lastIndex)
  assert.ok(net.status(1).commit < net.status(1).lastIndex)
  const proposal = net.peer(1).node.propose(bytes('x'))
  assert.ok(!proposal.ok && proposal.reason === 'dropped', 'a leader being removed accepts no proposals')
  net.heal()
  net.tick(1, [1])
  assert.equal(net.status(1).commit, net.status(1).lastIndex)
  assert.equal(net.status(1).role, 'follower')
})

test('§6 (dissertation §4.1) a configuration from an uncommitted entry that is overwritten is rolled back', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.isolate(1)
  net.peer(1).node.proposeConfChange({ type: 'removeNode', nodeId: 3 })
  net.stabilize()
  assert.deepEqual(net.status(1).confState.voters, [1, 2], 'the configuration takes effect when appended')
  net.electLeader(2)
  net.propose(2, 'x')
  net.heal()
  net.tick(1, [2])
  assert.deepEqual(net.status(1).confState.voters, [1, 2, 3], 'the entry was overwritten, so is the configuration')
  assert.deepEqual(net.peer(1).applied, ['x'])
})

test('§6 learners receive the log but neither vote nor count toward commit', () => {
  const net = new Network([1, 2], plain, [3])
  net.electLeader(1)
  net.propose(1, 'a')
  assert.deepEqual(net.peer(3).applied, ['a'], 'a learner is replicated to')
  assert.equal(net.status(1).progress![3]!.match, 3)
  net.isolate(2)
  net.propose(1, 'b')
  assert.deepEqual(net.peer(1).applied, ['a'], 'the learner does not make a quorum with the leader')
  assert.equal(net.status(3).lastIndex, 4, 'although it stores the entry')
  // A learner asked to vote still answers, but its vote is not counted by the candidate.
  net.heal()
  net.tick(1, [1])
  assert.deepEqual(net.peer(1).applied, ['a', 'b'])
})

test('§6 a learner is added, catches up, and is promoted with addVoter', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.propose(1, 'a')
  net.addPeer(4)
  assert.equal(change(net, 1, { type: 'addLearner', nodeId: 4 }).ok, true)
  net.tick(2, [1])
  assert.deepEqual(net.status(4).confState, { voters: [1, 2, 3], learners: [4], votersOutgoing: [] })
  assert.deepEqual(net.peer(4).applied, ['a'])
  net.isolate(4)
  net.tick(50, [4])
  assert.equal(net.status(4).role, 'follower', 'a learner never campaigns')
  net.heal()
  net.tick(1, [1])
  assert.equal(change(net, 1, { type: 'addVoter', nodeId: 4 }).ok, true)
  net.tick(1, [1])
  assert.deepEqual(net.status(4).confState, { voters: [1, 2, 3, 4], learners: [], votersOutgoing: [] })
  net.isolate(1)
  net.electLeader(4)
})

test('§6 invalid membership changes are refused: removing the last voter, re-adding a voter, bad ids', () => {
  const single = new Network([1], plain)
  single.electLeader(1)
  const last = change(single, 1, { type: 'removeNode', nodeId: 1 })
  assert.ok(!last.ok && last.reason === 'dropped' && last.message.includes('last voter'))
  const again = change(single, 1, { type: 'addVoter', nodeId: 1 })
  assert.ok(!again.ok && again.reason === 'dropped' && again.message.includes('already a voter'))
  const absent = change(single, 1, { type: 'removeNode', nodeId: 9 })
  assert.ok(!absent.ok && absent.reason === 'dropped' && absent.message.includes('not a member'))
  assert.throws(() => single.peer(1).node.proposeConfChange({ type: 'addVoter', nodeId: 0 }), (e: unknown) => e instanceof KvError && e.code === ErrorCode.INVALID)
  assert.throws(() => single.peer(1).node.proposeConfChange({ type: 'bogus' as 'addVoter', nodeId: 2 }), (e: unknown) => e instanceof KvError && e.code === ErrorCode.INVALID)
})

test('§6 confChange payloads round-trip and malformed ones are a KV_ERR_PROTOCOL error', () => {
  const c: ConfChange = { type: 'addLearner', nodeId: 42, context: bytes('10.0.0.4:7000') }
  assert.deepEqual(decodeConfChange(encodeConfChange(c)), c)
  assert.deepEqual(decodeConfChange(encodeConfChange({ type: 'removeNode', nodeId: 7 })), { type: 'removeNode', nodeId: 7 })
  assert.throws(() => decodeConfChange(new Uint8Array(3)), (e: unknown) => e instanceof KvError && e.code === ErrorCode.PROTOCOL)
})

test('§6 a restarted node rebuilds its configuration from its log', () => {
  const net = new Network([1, 2, 3], plain)
  net.electLeader(1)
  net.addPeer(4)
  change(net, 1, { type: 'addVoter', nodeId: 4 })
  net.tick(2, [1])
  net.crash(2)
  net.restart(2)
  net.stabilize()
  assert.deepEqual(net.status(2).confState.voters, [1, 2, 3, 4])
})
