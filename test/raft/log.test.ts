/**
 * RaftLog and Unstable: the log the core sees, stitched from storage and the unpersisted tail.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { MemoryRaftStorage, type Entry } from '../../src/raft/index.js'
import { RaftLog } from '../../src/raft/log.js'

function ents(from: number, terms: number[]): Entry[] {
  return terms.map((term, i) => ({ term, index: from + i, type: 'normal' as const, data: new Uint8Array(0) }))
}

function logWith(terms: number[]): RaftLog {
  const storage = new MemoryRaftStorage()
  storage.append(ents(1, terms))
  return new RaftLog(storage)
}

test('§5.3 maybeAppend rejects when the previous entry does not match', () => {
  const log = logWith([1, 1, 2])
  assert.equal(log.maybeAppend(3, 1, 0, ents(4, [3])), undefined)
  assert.equal(log.maybeAppend(5, 2, 0, []), undefined)
})

test('§5.3 maybeAppend truncates a conflicting suffix and appends the rest', () => {
  const log = logWith([1, 1, 2, 2])
  const result = log.maybeAppend(2, 1, 3, ents(3, [3, 3, 3]))
  assert.deepEqual(result?.lastNewIndex, 5)
  assert.deepEqual([1, 2, 3, 4, 5].map((i) => log.term(i)), [1, 1, 3, 3, 3])
  assert.equal(log.committed, 3)
})

test('§5.3 maybeAppend of entries already present changes nothing (a duplicate)', () => {
  const log = logWith([1, 1, 2])
  const result = log.maybeAppend(1, 1, 0, ents(2, [1, 2]))
  assert.deepEqual(result, { lastNewIndex: 3, appended: [] })
  assert.equal(log.unstableEntries().length, 0)
})

test('§5.3 commit follows the leader but never beyond the last matching entry', () => {
  const log = logWith([1, 1, 1, 1])
  log.maybeAppend(1, 1, 10, ents(2, [1]))
  assert.equal(log.committed, 2)
})

test('a conflict with a committed entry is a broken invariant', () => {
  const log = logWith([1, 1, 1])
  log.commitTo(3)
  assert.throws(() => log.maybeAppend(1, 1, 3, ents(2, [2])), /conflicts with committed/)
})

test('findConflictByTerm finds the last index whose term is <= the given term', () => {
  const log = logWith([1, 1, 3, 3, 5, 5])
  assert.deepEqual(log.findConflictByTerm(6, 4), { index: 4, term: 3 })
  assert.deepEqual(log.findConflictByTerm(6, 2), { index: 2, term: 1 })
  assert.deepEqual(log.findConflictByTerm(6, 0), { index: 0, term: 0 })
  assert.deepEqual(log.findConflictByTerm(20, 9), { index: 6, term: 5 })
})

test('§5.4.1 isUpToDate compares last term first, then length', () => {
  const log = logWith([1, 2, 2])
  assert.equal(log.isUpToDate(1, 3), true)
  assert.equal(log.isUpToDate(3, 2), true)
  assert.equal(log.isUpToDate(2, 2), false)
  assert.equal(log.isUpToDate(10, 1), false)
})

test('slice stitches storage and unstable entries and respects maxBytes', () => {
  const log = logWith([1, 1, 1])
  log.append(ents(4, [2, 2]))
  assert.deepEqual(log.slice(2, 6, Infinity)!.map((e) => e.index), [2, 3, 4, 5])
  assert.deepEqual(log.slice(2, 6, 30)!.map((e) => e.index), [2])
  assert.deepEqual(log.entriesFrom(6, Infinity), [])
})

test('slice after a truncation below the storage tail reads the replacing unstable entries', () => {
  const log = logWith([1, 1, 1, 1])
  log.append(ents(3, [2]))
  assert.equal(log.lastIndex(), 3)
  assert.deepEqual(log.slice(1, 4, Infinity)!.map((e) => e.term), [1, 1, 2])
})

test('stableTo ignores an acknowledgement for entries that were since replaced', () => {
  const log = logWith([])
  log.append(ents(1, [1, 1, 1]))
  log.append(ents(2, [2]))
  log.stableTo(3, 1) // acknowledges the old term-1 entries
  assert.equal(log.unstableEntries().length, 2)
  log.stableTo(2, 2)
  assert.equal(log.unstableEntries().length, 0)
})

test('a compacted index has no term and slice reports it as unavailable', () => {
  const storage = new MemoryRaftStorage()
  storage.append(ents(1, [1, 1, 1, 1, 1]))
  storage.compact(3)
  const log = new RaftLog(storage)
  assert.equal(log.term(2), undefined)
  assert.equal(log.term(3), 1)
  assert.equal(log.slice(2, 4, Infinity), undefined)
})

test('restore replaces the log with a snapshot and sets commit to its index', () => {
  const log = logWith([1, 1])
  log.restore({ meta: { index: 10, term: 4, confState: { voters: [1], learners: [], votersOutgoing: [] } }, data: new Uint8Array(0) })
  assert.equal(log.firstIndex(), 11)
  assert.equal(log.lastIndex(), 10)
  assert.equal(log.term(10), 4)
  assert.equal(log.committed, 10)
  assert.equal(log.hasNextCommittedEntries(), false)
})
