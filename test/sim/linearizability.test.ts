// Unit tests of the linearizability checker: hand-made histories, linearizable and not,
// including never-returned writes, touching intervals, per-key partitioning and the bounds.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { checkKv, checkPartition, registerModel, type KvOperation, type Operation, type RegisterInput } from './linearizability.js'

type RegOp = Operation<RegisterInput, string | undefined>
const put = (value: string, call: number, ret: number): RegOp => ({ call, ret, input: { type: 'put', value }, output: undefined })
const get = (output: string | undefined, call: number, ret: number): RegOp => ({ call, ret, input: { type: 'get' }, output })

test('sequential history: reads see the latest write', () => {
  const ops = [put('a', 0, 1), get('a', 2, 3), put('b', 4, 5), get('b', 6, 7)]
  assert.equal(checkPartition(registerModel, ops).outcome, 'ok')
})

test('stale read after a completed write is a violation', () => {
  const ops = [put('a', 0, 1), put('b', 2, 3), get('a', 4, 5)]
  assert.equal(checkPartition(registerModel, ops).outcome, 'violation')
})

test('read of the initial value after a completed write is a violation', () => {
  assert.equal(checkPartition(registerModel, [put('a', 0, 1), get(undefined, 2, 3)]).outcome, 'violation')
})

test('concurrent write may or may not be seen', () => {
  const ops = [put('a', 0, 1), put('b', 2, 10), get('a', 3, 4), get('b', 5, 6)]
  assert.equal(checkPartition(registerModel, ops).outcome, 'ok')
})

test('once a read saw the new value, a later read may not see the old one', () => {
  const ops = [put('a', 0, 1), put('b', 2, 10), get('b', 3, 4), get('a', 5, 6)]
  assert.equal(checkPartition(registerModel, ops).outcome, 'violation')
})

test('a write that never returned may take effect late or never', () => {
  const late = [put('a', 0, 1), put('b', 2, Infinity), get('a', 3, 4), get('b', 5, 6)]
  assert.equal(checkPartition(registerModel, late).outcome, 'ok')
  const never = [put('a', 0, 1), put('b', 2, Infinity), get('a', 3, 4), get('a', 50, 60)]
  assert.equal(checkPartition(registerModel, never).outcome, 'ok')
})

test('a read of a value nobody wrote is a violation', () => {
  assert.equal(checkPartition(registerModel, [put('a', 0, 5), get('z', 1, 2)]).outcome, 'violation')
})

test('touching intervals count as concurrent', () => {
  assert.equal(checkPartition(registerModel, [put('a', 0, 5), get(undefined, 5, 6)]).outcome, 'ok')
})

test('checkKv partitions by key and names the offending key', () => {
  const ops: KvOperation[] = [
    { call: 0, ret: 1, input: { key: 'x', type: 'put', value: '1' }, output: undefined },
    { call: 0, ret: 1, input: { key: 'y', type: 'put', value: '2' }, output: undefined },
    { call: 2, ret: 3, input: { key: 'x', type: 'get' }, output: '1' },
    { call: 2, ret: 3, input: { key: 'y', type: 'get' }, output: undefined },
  ]
  const result = checkKv(ops)
  assert.equal(result.outcome, 'violation')
  assert.equal(result.key, 'y')
  assert.equal(checkKv(ops.slice(0, 3)).outcome, 'ok')
})

test('many concurrent writes stay tractable thanks to memoization', () => {
  const ops: RegOp[] = []
  for (let i = 0; i < 14; i++) ops.push(put(`v${i}`, 0, 100))
  ops.push(get('v7', 101, 102), get('v7', 103, 104))
  const result = checkPartition(registerModel, ops, { stepsMax: 2_000_000 })
  assert.equal(result.outcome, 'ok')
  const few = ops.slice(0, 10)
  const bad = [...few, get('v7', 101, 102), get('v8', 105, 106)]
  assert.equal(checkPartition(registerModel, bad, { stepsMax: 5_000_000 }).outcome, 'violation')
})

test('the step budget yields unknown rather than a wrong verdict', () => {
  const ops: RegOp[] = []
  for (let i = 0; i < 12; i++) ops.push(put(`v${i}`, 0, 100))
  ops.push(get('nobody', 101, 102))
  assert.equal(checkPartition(registerModel, ops, { stepsMax: 50 }).outcome, 'unknown')
})

test('operationsMax bounds the partition size', () => {
  assert.throws(() => checkPartition(registerModel, [put('a', 0, 1), put('b', 0, 1)], { operationsMax: 1 }), { code: 'KV_ERR_INVALID' })
})
