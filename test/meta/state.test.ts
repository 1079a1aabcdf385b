// The meta state machine as a pure function: init once, placement round-robin, every slot
// assigned, slot moves stage by stage with the flip bumping the routing version, replica
// replacement, raft id allocation and node re-registration remembering former raft ids.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { applyCommand, emptyState, RAFT_ID_BASE, type NodeRecord } from '../../src/meta/state.js'
import { SLOT_COUNT, hashTag, slotOf, slotRanges } from '../../src/meta/slots.js'

const nodes: NodeRecord[] = [1, 2, 3].map((id) => ({ id, raftId: id, rpc: `127.0.0.1:${7700 + id}`, http: undefined, roles: ['meta', 'store', 'proxy'] }))

test('init places shards round-robin, assigns every slot once, and only once', () => {
  const state = emptyState()
  assert.deepEqual(applyCommand(state, { type: 'init', clusterId: 'c1', nodes, metaVoters: [1, 2, 3], shards: 4, replicas: 3 }), { ok: true })
  assert.equal(state.shards.length, 4)
  assert.ok(state.shards.every((s) => s.replicas.length === 3 && !s.claimed && s.epoch === 1))
  assert.equal(state.slots.length, SLOT_COUNT)
  assert.deepEqual(slotRanges(state.slots).map((r) => r.to - r.from + 1), [1024, 1024, 1024, 1024])
  assert.equal(applyCommand(state, { type: 'init', clusterId: 'c2', nodes, metaVoters: [1], shards: 1, replicas: 1 }).ok, false)
  assert.equal(state.clusterId, 'c1')
})

test('a slot move goes stage by stage; the flip moves the slots and bumps the version', () => {
  const state = emptyState()
  applyCommand(state, { type: 'init', clusterId: 'c', nodes, metaVoters: [1, 2, 3], shards: 2, replicas: 3 })
  const shard = applyCommand(state, { type: 'addShard', replicas: [1, 2, 3] })
  assert.ok(shard.ok)
  const to = shard.value as number
  const move = applyCommand(state, { type: 'moveStart', slots: [0, 1], from: state.slots[0]!, to })
  assert.ok(move.ok)
  const id = move.value as number
  assert.equal(applyCommand(state, { type: 'moveStart', slots: [1], from: state.slots[1]!, to }).ok, false, 'a moving slot cannot move twice')
  assert.equal(applyCommand(state, { type: 'moveStage', id, stage: 'claim' }).ok, false, 'stages cannot be skipped')
  for (const stage of ['copy', 'claim', 'release', 'flip'] as const) assert.ok(applyCommand(state, { type: 'moveStage', id, stage }).ok)
  assert.notEqual(state.slots[0], to)
  const version = state.version
  assert.ok(applyCommand(state, { type: 'moveStage', id, stage: 'cleanup' }).ok)
  assert.equal(state.slots[0], to)
  assert.equal(state.slots[1], to)
  assert.ok(state.version > version)
  applyCommand(state, { type: 'moveDone', id })
  assert.equal(state.moves.length, 0)
})

test('replacing a replica swaps raft ids and bumps the epoch; re-registration keeps former ids', () => {
  const state = emptyState()
  applyCommand(state, { type: 'init', clusterId: 'c', nodes, metaVoters: [1, 2, 3], shards: 1, replicas: 3 })
  const raftId = applyCommand(state, { type: 'allocateRaftId', nodeId: 3 })
  assert.deepEqual(raftId, { ok: true, value: RAFT_ID_BASE })
  applyCommand(state, { type: 'register', node: { ...nodes[2]!, raftId: RAFT_ID_BASE } })
  assert.deepEqual(state.nodes.find((n) => n.id === 3)?.former, [3])
  const shard = state.shards[0]!
  assert.ok(applyCommand(state, { type: 'replaceStart', shard: shard.id, old: 3, new: RAFT_ID_BASE }).ok)
  assert.deepEqual(shard.learners, [RAFT_ID_BASE])
  assert.ok(applyCommand(state, { type: 'replaceDone', shard: shard.id, old: 3, new: RAFT_ID_BASE }).ok)
  assert.deepEqual(shard.replicas, [1, 2, RAFT_ID_BASE])
  assert.deepEqual(shard.learners, [])
  assert.equal(shard.epoch, 3)
})

test('keys sharing a {tag} share a slot; an empty tag hashes the whole key', () => {
  assert.equal(slotOf(Buffer.from('{user:7}name')), slotOf(Buffer.from('{user:7}mail')))
  assert.deepEqual(Buffer.from(hashTag(Buffer.from('a{}b'))).toString(), 'a{}b')
  assert.deepEqual(Buffer.from(hashTag(Buffer.from('x{t}y{u}'))).toString(), 't')
  for (let i = 0; i < 100; i++) assert.ok(slotOf(Buffer.from(`k${i}`)) < SLOT_COUNT)
})
