// Balancing decisions as tables: node down past downAfterMs, replica counts after a node is
// added, leaders per node, and "busy" states in which nothing is planned.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { planBalance, type BalanceInput } from '../../src/meta/balance.js'
import type { Liveness } from '../../src/meta/routing.js'
import { applyCommand, emptyState, type MetaState, type NodeRecord } from '../../src/meta/state.js'

function cluster(nodes: number, shards: number, replicas = 3): MetaState {
  const state = emptyState()
  const records: NodeRecord[] = Array.from({ length: nodes }, (_, i) => ({ id: i + 1, raftId: i + 1, rpc: `127.0.0.1:${7701 + 10 * i}`, http: undefined, roles: ['meta', 'store', 'proxy'] }))
  assert.deepEqual(applyCommand(state, { type: 'init', clusterId: 'c', nodes: records, metaVoters: [1, 2, 3], shards, replicas }), { ok: true })
  for (const shard of state.shards) applyCommand(state, { type: 'shardClaimed', shard: shard.id })
  return state
}

function input(state: MetaState, seen: Record<number, number>, leaders: Record<number, number> = {}, nowMs = 100_000): BalanceInput {
  const liveness: Liveness = { lastSeenMs: new Map(Object.entries(seen).map(([k, v]) => [Number(k), v])), leaders: new Map(Object.entries(leaders).map(([k, v]) => [Number(k), v])) }
  return { state, liveness, nowMs, leaderSinceMs: 0, downAfterMs: 30_000 }
}

test('a balanced cluster with spread leaders needs nothing', () => {
  const state = cluster(3, 3)
  assert.equal(planBalance(input(state, { 1: 99_000, 2: 99_000, 3: 99_000 }, { 2: 1, 3: 2, 4: 3 })), undefined)
})

test('a replica on a node down past downAfterMs moves to a live node without that shard', () => {
  const state = cluster(4, 4)
  const down = input(state, { 1: 99_000, 2: 99_000, 3: 99_000, 4: 10_000 })
  const action = planBalance(down)
  assert.equal(action?.type, 'replace')
  assert.equal(action?.type === 'replace' && action.old, 4)
  assert.equal(action?.type === 'replace' && action.why, 'node down')
  const shard = state.shards.find((s) => action?.type === 'replace' && s.id === action.shard)!
  assert.ok(action?.type === 'replace' && !shard.replicas.includes(action.new))
})

test('with no spare node a dead replica stays (no replica is doubled up)', () => {
  const state = cluster(3, 4)
  const action = planBalance(input(state, { 1: 99_000, 2: 99_000, 3: 10_000 }))
  assert.notEqual(action?.type, 'replace')
})

test('an added node receives replicas from the fullest node', () => {
  const state = cluster(3, 4)
  applyCommand(state, { type: 'register', node: { id: 4, raftId: 4, rpc: '127.0.0.1:7731', http: undefined, roles: ['store'] } })
  const action = planBalance(input(state, { 1: 99_000, 2: 99_000, 3: 99_000, 4: 99_000 }))
  assert.deepEqual(action && { type: action.type, new: action.type === 'replace' ? action.new : 0 }, { type: 'replace', new: 4 })
})

test('a node leading more than its share hands one shard to a replica below its share', () => {
  const state = cluster(3, 4)
  const action = planBalance(input(state, { 1: 99_000, 2: 99_000, 3: 99_000 }, { 2: 1, 3: 1, 4: 1, 5: 1 }))
  assert.equal(action?.type, 'transfer')
  assert.notEqual(action?.type === 'transfer' && action.to, 1)
})

test('leaders 2/2/0 over three nodes become 2/1/1; 2/1/1 is left alone', () => {
  const state = cluster(3, 4)
  const seen = { 1: 99_000, 2: 99_000, 3: 99_000 }
  const shardIds = state.shards.map((s) => s.id)
  const uneven = planBalance(input(state, seen, { [shardIds[0]!]: 1, [shardIds[1]!]: 1, [shardIds[2]!]: 2, [shardIds[3]!]: 2 }))
  assert.equal(uneven?.type, 'transfer')
  assert.equal(uneven?.type === 'transfer' && uneven.to, 3)
  assert.equal(planBalance(input(state, seen, { [shardIds[0]!]: 1, [shardIds[1]!]: 1, [shardIds[2]!]: 2, [shardIds[3]!]: 3 })), undefined)
})

test('nothing is planned while a move or a replacement is in progress', () => {
  const state = cluster(4, 4)
  applyCommand(state, { type: 'moveStart', slots: [0], from: state.slots[0]!, to: state.shards[1]!.id })
  assert.equal(planBalance(input(state, { 1: 99_000, 2: 99_000, 3: 99_000, 4: 10_000 })), undefined)
})
