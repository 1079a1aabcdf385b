/**
 * MemoryRaftStorage: the RaftStorage contract every driver-side store must meet.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryRaftStorage, type Entry } from '../../src/raft/index.js'

function ents(from: number, to: number, term: number, size = 0): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push({ term, index: i, type: 'normal', data: new Uint8Array(size) })
  return out
}

test('a new storage is empty: firstIndex 1, lastIndex 0, term(0) = 0', () => {
  const s = new MemoryRaftStorage()
  assert.equal(s.firstIndex(), 1)
  assert.equal(s.lastIndex(), 0)
  assert.equal(s.term(0), 0)
  assert.deepEqual(s.initialState(), { hardState: { term: 0, vote: 0, commit: 0 }, confState: { voters: [], learners: [], votersOutgoing: [] } })
})

test('withPeers records the founding membership in a snapshot at index 1, term 1', () => {
  const s = MemoryRaftStorage.withPeers([1, 2, 3], [4])
  assert.equal(s.firstIndex(), 2)
  assert.equal(s.lastIndex(), 1)
  assert.equal(s.term(1), 1)
  assert.deepEqual(s.confState, { voters: [1, 2, 3], learners: [4], votersOutgoing: [] })
  assert.deepEqual(s.hardState, { term: 1, vote: 0, commit: 1 })
})

test('append truncates a conflicting suffix and keeps the prefix', () => {
  const s = new MemoryRaftStorage()
  s.append(ents(1, 5, 1))
  s.append(ents(3, 4, 2))
  assert.equal(s.lastIndex(), 4)
  assert.deepEqual([1, 2, 3, 4].map((i) => s.term(i)), [1, 1, 2, 2])
})

test('append refuses a gap and non-contiguous entries', () => {
  const s = new MemoryRaftStorage()
  s.append(ents(1, 2, 1))
  assert.throws(() => s.append(ents(4, 5, 1)), /gap/)
  assert.throws(() => s.append([...ents(3, 3, 1), ...ents(5, 5, 1)]), /contiguous/)
})

test('entries honours maxBytes but returns at least one entry', () => {
  const s = new MemoryRaftStorage()
  s.append(ents(1, 10, 1, 100))
  assert.equal(s.entries(1, 11, 1).length, 1)
  assert.equal(s.entries(1, 11, 2 * 124).length, 2)
  assert.equal(s.entries(1, 11, Infinity).length, 10)
  assert.deepEqual(s.entries(3, 3, Infinity), [])
})

test('compact drops the prefix; term stays readable at the compaction point; append skips compacted entries', () => {
  const s = new MemoryRaftStorage()
  s.append(ents(1, 10, 1))
  s.compact(6)
  assert.equal(s.firstIndex(), 7)
  assert.equal(s.term(6), 1)
  assert.throws(() => s.entries(5, 8, Infinity))
  s.append(ents(4, 12, 1))
  assert.equal(s.lastIndex(), 12)
  assert.throws(() => s.compact(20), /beyond lastIndex/)
})

test('createSnapshot and applySnapshot replace the log prefix and carry the membership', () => {
  const s = new MemoryRaftStorage()
  s.append(ents(1, 5, 1))
  const cs = { voters: [1, 2], learners: [], votersOutgoing: [] }
  const snap = s.createSnapshot(4, cs, new Uint8Array([9]))
  assert.deepEqual(snap.meta, { index: 4, term: 1, confState: cs })
  assert.throws(() => s.createSnapshot(3, cs, new Uint8Array(0)), /not after snapshot/)
  const other = new MemoryRaftStorage()
  other.append(ents(1, 2, 1))
  other.applySnapshot(snap)
  assert.equal(other.firstIndex(), 5)
  assert.equal(other.lastIndex(), 4)
  assert.deepEqual(other.confState, cs)
  assert.throws(() => other.applySnapshot({ ...snap, meta: { ...snap.meta, index: 2 } }), /older/)
})
