/**
 * Progress and Inflights: the leader's per-follower flow control, and the quorum arithmetic.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Inflights, Progress } from '../../src/raft/progress.js'
import { jointCommitted, jointVote, majorityCommitted, majorityVote } from '../../src/raft/quorum.js'

test('Inflights is a bounded window freed by cumulative acknowledgements', () => {
  const inf = new Inflights(3)
  inf.add(5)
  inf.add(7)
  inf.add(9)
  assert.equal(inf.full(), true)
  assert.throws(() => inf.add(10), /inflightMessagesMax=3/)
  inf.freeLE(7)
  assert.equal(inf.count, 1)
  inf.add(11)
  inf.add(12)
  assert.equal(inf.full(), true)
  inf.freeLE(100)
  assert.equal(inf.count, 0)
})

test('a probing peer is paused after one append until it answers', () => {
  const pr = new Progress({ next: 5, inflightMessagesMax: 4, isLearner: false })
  assert.equal(pr.isPaused(), false)
  pr.sentEntries(3, 7)
  assert.equal(pr.isPaused(), true)
  assert.equal(pr.next, 5, 'probe does not advance next optimistically')
  assert.equal(pr.maybeUpdate(7), true)
  assert.equal(pr.isPaused(), false)
})

test('replicate advances next optimistically and pauses when the window is full', () => {
  const pr = new Progress({ next: 1, inflightMessagesMax: 2, isLearner: false })
  pr.becomeReplicate()
  pr.sentEntries(2, 2)
  pr.sentEntries(2, 4)
  assert.equal(pr.next, 5)
  assert.equal(pr.isPaused(), true)
  pr.maybeUpdate(2)
  pr.inflights.freeLE(2)
  assert.equal(pr.isPaused(), false)
})

test('maybeDecrTo ignores stale rejections and uses the hint in probe state', () => {
  const pr = new Progress({ next: 10, inflightMessagesMax: 2, isLearner: false })
  assert.equal(pr.maybeDecrTo(5, 3), false, 'rejection of an index we did not send')
  assert.equal(pr.maybeDecrTo(9, 3), true)
  assert.equal(pr.next, 4)
  pr.maybeUpdate(3)
  pr.becomeReplicate()
  assert.equal(pr.maybeDecrTo(2, 0), false, 'below match: stale')
  pr.sentEntries(3, 8)
  assert.equal(pr.maybeDecrTo(6, 0), true)
  assert.equal(pr.next, 4)
})

test('a peer in snapshot state is paused; becomeProbe resumes after the snapshot', () => {
  const pr = new Progress({ next: 3, inflightMessagesMax: 2, isLearner: false })
  pr.becomeSnapshot(20)
  assert.equal(pr.isPaused(), true)
  pr.becomeProbe()
  assert.equal(pr.next, 21)
  assert.equal(pr.state, 'probe')
})

test('majority commit index is the median match; an empty config does not constrain', () => {
  const match = new Map([[1, 5], [2, 3], [3, 9]])
  assert.equal(majorityCommitted(new Set([1, 2, 3]), (id) => match.get(id)), 5)
  assert.equal(majorityCommitted(new Set([1, 2, 3, 4]), (id) => match.get(id)), 3)
  assert.equal(jointCommitted(new Set([1, 2, 3]), new Set(), (id) => match.get(id)), 5)
  assert.equal(jointCommitted(new Set([1, 2, 3]), new Set([2, 4]), (id) => match.get(id)), 0)
})

test('votes: won, lost or pending, and a joint config needs both halves', () => {
  const votes = new Map([[1, true], [2, false]])
  assert.equal(majorityVote(new Set([1, 2, 3]), votes), 'pending')
  votes.set(3, true)
  assert.equal(majorityVote(new Set([1, 2, 3]), votes), 'won')
  assert.equal(majorityVote(new Set([1, 2, 3, 4, 5]), new Map([[1, false], [2, false], [3, false]])), 'lost')
  assert.equal(jointVote(new Set([1, 2, 3]), new Set([3, 4]), votes), 'pending')
  assert.equal(jointVote(new Set([1, 2, 3]), new Set([3, 4]), new Map([...votes, [4, true]])), 'won')
  assert.equal(jointVote(new Set([1, 2, 3]), new Set([3, 4]), new Map([...votes, [4, false]])), 'lost')
})
