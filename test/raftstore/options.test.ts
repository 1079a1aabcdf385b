// The log compaction policy as a pure function: entry-count and byte triggers, and retention
// bounded by bytes so a log of large entries (file chunks) cannot pin gigabytes of memory.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { compactionIndex, DRIVER_DEFAULTS, resolveDriverOptions } from '../../src/raftstore/options.js'

const MiB = 1024 * 1024
const policy = DRIVER_DEFAULTS.compaction

test('compactionIndex: a small log of small entries is left alone', () => {
  assert.equal(compactionIndex(policy, { firstIndex: 1, lastIndex: 5_000, applied: 5_000, logBytes: 5 * MiB }), undefined)
})

test('compactionIndex: past compactLogEntriesMax it keeps logRetainEntries small entries', () => {
  const index = compactionIndex(policy, { firstIndex: 1, lastIndex: 10_001, applied: 10_001, logBytes: 10 * MiB })
  assert.equal(index, 10_001 - policy.logRetainEntries)
})

test('compactionIndex: large entries are compacted by bytes even when fewer than logRetainEntries are applied', () => {
  // 100 entries of 4 MiB: far below the entry trigger and the retain count, far above the byte trigger.
  const log = { firstIndex: 1, lastIndex: 100, applied: 100, logBytes: 400 * MiB }
  const index = compactionIndex(policy, log)
  assert.ok(index !== undefined, 'a 400 MiB log is compacted')
  const retainedBytes = (log.applied - index) * 4 * MiB
  assert.ok(retainedBytes <= policy.logRetainBytes, `retains ${retainedBytes} bytes, at most logRetainBytes`)
})

test('compactionIndex: nothing applied, nothing compacted, whatever the size', () => {
  assert.equal(compactionIndex(policy, { firstIndex: 10, lastIndex: 200, applied: 9, logBytes: 800 * MiB }), undefined)
})

test('resolveDriverOptions: logRetainBytes is validated like every policy field', () => {
  const base = { nodeId: 1, engine: { batch() {} }, transport: { send() {} }, ticker: { start() {} } } as never
  assert.throws(() => resolveDriverOptions({ ...(base as object), compaction: { logRetainBytes: -1 } } as never), { code: 'KV_ERR_INVALID', message: /logRetainBytes/ })
  assert.equal(resolveDriverOptions(base).compaction.logRetainBytes, 8 * MiB)
})
