// The jepsen checkers on hand-written histories: a stale read is a violation (and is shrunk to
// the ops that prove it), an unknown write may take effect late or never, a batch is a write on
// each key it touches, a failed write must never be read, and a lost acknowledged write is found;
// a getMany is a read of each key and must not see half of a batch.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { checkCorruption, checkFracturedReads, checkLinearizable, checkLostWrites, checkPhantomReads } from './checker.js'
import type { HistoryOp } from './workload.js'

let nextId = 0
function op(type: HistoryOp['type'], steps: Array<[string, string | undefined]>, call: number, ret: number, outcome: HistoryOp['outcome'] = 'ok', read?: string): HistoryOp {
  const o: HistoryOp = { id: nextId++, client: nextId % 3, type, steps: steps.map(([key, value]) => ({ key, value })), call, ret, outcome }
  if (type === 'get') o.read = read
  return o
}

test('a read of an overwritten value is a violation, shrunk to the ops that prove it', () => {
  const history = [
    op('put', [['a', 'v1']], 0, 10),
    op('get', [['b', undefined]], 1, 2, 'ok', undefined),
    op('put', [['a', 'v2']], 20, 30),
    op('get', [['a', undefined]], 31, 40, 'ok', 'v2'),
    op('get', [['a', undefined]], 41, 50, 'ok', 'v1'),
    op('put', [['a', 'v3']], 60, 70),
  ]
  const { violations } = checkLinearizable(history, ['a', 'b'])
  assert.equal(violations.length, 1)
  assert.equal(violations[0]!.key, 'a')
  assert.deepEqual(violations[0]!.ops.map((o) => o.id), [history[0]!.id, history[2]!.id, history[4]!.id])
})

test('an unknown write may take effect long after its call, or never', () => {
  const late = [op('put', [['a', 'v1']], 0, 10), op('put', [['a', 'v2']], 5, Infinity, 'unknown'), op('get', [['a', undefined]], 100, 110, 'ok', 'v1'), op('get', [['a', undefined]], 200, 210, 'ok', 'v2')]
  assert.equal(checkLinearizable(late, ['a']).violations.length, 0)
  const never = [op('put', [['a', 'v1']], 0, 10), op('put', [['a', 'v2']], 5, Infinity, 'unknown'), op('get', [['a', undefined]], 100, 110, 'ok', 'v1')]
  assert.equal(checkLinearizable(never, ['a']).violations.length, 0)
  // ...but once seen, it cannot un-happen.
  const flip = [...late, op('get', [['a', undefined]], 300, 310, 'ok', 'v1')]
  assert.equal(checkLinearizable(flip, ['a']).violations.length, 1)
})

test('a batch is a write on every key it touches (its last step per key), at the batch time', () => {
  const history = [
    op('batch', [['a', 'x1'], ['b', 'y1'], ['a', undefined]], 0, 10),
    op('get', [['a', undefined]], 20, 30, 'ok', undefined),
    op('get', [['b', undefined]], 20, 30, 'ok', 'y1'),
  ]
  assert.equal(checkLinearizable(history, ['a', 'b']).violations.length, 0)
  const wrong = [...history, op('get', [['a', undefined]], 40, 50, 'ok', 'x1')]
  assert.equal(checkLinearizable(wrong, ['a', 'b']).violations.length, 1)
})

test('a value written by a write reported failed must never be read', () => {
  const history = [op('put', [['a', 'v1']], 0, 10, 'fail'), op('get', [['a', undefined]], 20, 30, 'ok', 'v1')]
  assert.equal(checkPhantomReads(history).length, 1)
  assert.equal(checkLinearizable(history, ['a']).violations.length, 1)
  history[0]!.outcome = 'unknown'
  history[0]!.ret = Infinity
  assert.equal(checkPhantomReads(history).length, 0)
  assert.equal(checkLinearizable(history, ['a']).violations.length, 0)
})

test('an acknowledged write missing from the final read is lost unless something could have overwritten it', () => {
  const w1 = op('put', [['a', 'v1']], 0, 10)
  const w2 = op('put', [['a', 'v2']], 20, 30)
  const final = op('get', [['a', undefined]], 100, 110, 'ok', 'v1')
  assert.equal(checkLostWrites([w1, w2, final], new Map([['a', final]])).length, 1)
  // Concurrent writes: either order is fine.
  const c1 = op('put', [['a', 'v1']], 0, 30)
  const c2 = op('put', [['a', 'v2']], 10, 20)
  assert.equal(checkLostWrites([c1, c2, final], new Map([['a', final]])).length, 0)
  // Absent at the end: only a delete that may follow the write explains it.
  const gone = op('get', [['a', undefined]], 100, 110, 'ok', undefined)
  assert.equal(checkLostWrites([w1, gone], new Map([['a', gone]])).length, 1)
  const d = op('del', [['a', undefined]], 40, Infinity, 'unknown')
  assert.equal(checkLostWrites([w1, d, gone], new Map([['a', gone]])).length, 0)
})

function getMany(reads: Array<[string, string | undefined]>, call: number, ret: number): HistoryOp {
  const o = op('getMany', reads.map(([key]) => [key, undefined]), call, ret)
  o.reads = reads.map(([, value]) => value)
  return o
}

test('a getMany is a read of every key it names: a stale value in it is a violation, a phantom in it is found', () => {
  const history = [op('put', [['a', 'v1']], 0, 10), op('put', [['a', 'v2']], 20, 30), getMany([['b', undefined], ['a', 'v1']], 40, 50)]
  const { violations } = checkLinearizable(history, ['a', 'b'])
  assert.deepEqual(violations.map((v) => v.key), ['a'])
  assert.equal(checkPhantomReads([getMany([['a', 'nobody']], 0, 1)]).length, 1)
})

test('a getMany that saw half of a batch is a fractured read; whole batches and later writes are not', () => {
  const old = op('put', [['b', 'b0']], 0, 10)
  const batch = op('batch', [['a', 'a1'], ['b', 'b1']], 20, 30)
  const later = op('put', [['b', 'b2']], 40, 50)
  assert.equal(checkFracturedReads([old, batch, later, getMany([['a', 'a1'], ['b', 'b1']], 60, 70)]).length, 0)
  assert.equal(checkFracturedReads([old, batch, later, getMany([['a', 'a1'], ['b', 'b2']], 60, 70)]).length, 0)
  const fractured = checkFracturedReads([old, batch, getMany([['a', 'a1'], ['b', 'b0']], 60, 70)])
  assert.equal(fractured.length, 1)
  assert.equal(fractured[0]!.kind, 'fractured-read')
  // b absent although the batch wrote it and no delete of b followed: also half a batch.
  assert.equal(checkFracturedReads([batch, getMany([['a', 'a1'], ['b', undefined]], 60, 70)]).length, 1)
  // ...unless a delete of b may have come after the batch.
  assert.equal(checkFracturedReads([batch, op('del', [['b', undefined]], 25, Infinity, 'unknown'), getMany([['a', 'a1'], ['b', undefined]], 60, 70)]).length, 0)
})

test('an operation answered KV_ERR_CORRUPTION is a violation (it would otherwise be an unknown read the register check skips); other errors are not', () => {
  const corrupt = { ...op('get', [['k', undefined]], 10, Infinity, 'unknown'), error: 'KV_ERR_CORRUPTION: blob 000001.blob@19: value is short or fails its checksum' }
  const timeout = { ...op('get', [['k', undefined]], 20, Infinity, 'unknown'), error: 'KV_ERR_TIMEOUT: no answer' }
  const found = checkCorruption([op('put', [['k', 'v1']], 0, 5), corrupt, timeout])
  assert.deepEqual(found.map((v) => [v.kind, v.key, v.ops[0]]), [['corruption', 'k', corrupt]])
  assert.match(found[0]!.message, /KV_ERR_CORRUPTION/)
})
