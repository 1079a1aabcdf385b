// The log compaction policy as a pure function: entry-count and byte triggers, and retention
// bounded by bytes so a log of large entries (file chunks) cannot pin gigabytes of memory.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compactionIndex, DRIVER_DEFAULTS, resolveDriverOptions } from '../../src/raftstore/options.js'

const MiB = 1024 * 1024
const policy = DRIVER_DEFAULTS.compaction

test('compactionIndex: a small log of small entries is left alone', () => {
  assert.equal(compactionIndex(policy, { firstIndex: 1, lastIndex: 1_500, applied: 1_500, logBytes: 1.5 * MiB }), undefined)
})

test('compactionIndex: past compactLogEntriesMax it keeps logRetainEntries small entries', () => {
  const index = compactionIndex(policy, { firstIndex: 1, lastIndex: 10_001, applied: 10_001, logBytes: 10 * MiB }, 0)
  assert.equal(index, 10_001 - policy.logRetainEntries, 'even with a peer at 0 (past the soft threshold one could hold it back)')
})

test('compactionIndex: large entries are compacted by bytes even when fewer than logRetainEntries are applied', () => {
  // 100 entries of 4 MiB: far below the entry trigger and the retain count, far above the byte trigger.
  const log = { firstIndex: 1, lastIndex: 100, applied: 100, logBytes: 400 * MiB }
  const index = compactionIndex(policy, log)
  assert.ok(index !== undefined, 'a 400 MiB log is compacted')
  const retainedBytes = (log.applied - index) * 4 * MiB
  assert.ok(retainedBytes <= policy.logRetainBytes, `retains ${retainedBytes} bytes, at most logRetainBytes`)
})

test('compactionIndex: past compactLogEntriesSoft it compacts only what the slowest peer has, keeping logRetainEntries', () => {
  const log = { firstIndex: 1, lastIndex: 3_000, applied: 3_000, logBytes: 3 * MiB }
  assert.ok(log.applied > policy.compactLogEntriesSoft && log.applied <= policy.compactLogEntriesMax)
  assert.equal(compactionIndex(policy, log), 3_000 - policy.logRetainEntries, 'a follower (no peer match): up to applied')
  assert.equal(compactionIndex(policy, log, 1_500), 1_500 - policy.logRetainEntries, 'a leader: up to its slowest peer')
  assert.equal(compactionIndex(policy, log, 900), undefined, 'a peer too far behind holds the soft compaction back')
  assert.equal(compactionIndex(policy, { ...log, lastIndex: 1_900, applied: 1_900 }), undefined, 'below the soft threshold nothing happens')
  // Past compactLogEntriesMax the peer no longer holds it back (it will need a snapshot).
  assert.equal(compactionIndex(policy, { firstIndex: 1, lastIndex: 10_001, applied: 10_001, logBytes: 10 * MiB }, 5), 10_001 - policy.logRetainEntries)
})

test('compactionIndex: nothing applied, nothing compacted, whatever the size', () => {
  assert.equal(compactionIndex(policy, { firstIndex: 10, lastIndex: 200, applied: 9, logBytes: 800 * MiB }), undefined)
})

test('resolveDriverOptions: logRetainBytes is validated like every policy field', () => {
  const base = { nodeId: 1, engine: { batch() {} }, logFiles: { write() {} }, transport: { send() {} }, ticker: { start() {} } } as never
  assert.throws(() => resolveDriverOptions({ ...(base as object), compaction: { logRetainBytes: -1 } } as never), { code: 'KV_ERR_INVALID', message: /logRetainBytes/ })
  assert.equal(resolveDriverOptions(base).compaction.logRetainBytes, 8 * MiB)
})
