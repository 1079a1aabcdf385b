// ReadCoalescer: reads of one turn travel as one ReadMany call per kind (at most
// readGroupKeysMax keys each), each caller gets its own key's result, and a failed group
// fails every read in it.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { KvError, ErrorCode } from '../../../src/errors.js'
import { ReadCoalescer, readGroupKeysMax, type ReadKind } from '../../../src/proxy/http/read-coalescer.js'

function recorder(answer: (key: Buffer, kind: ReadKind) => unknown = (key) => Buffer.from(`value of ${key}`)) {
  const calls: Array<{ keys: string[]; kind: ReadKind }> = []
  const coalescer = new ReadCoalescer(async (keys, kind) => {
    calls.push({ keys: keys.map(String), kind })
    return keys.map((key) => answer(key, kind))
  })
  return { calls, coalescer }
}

test('reads of one turn go out as one call per kind, answered per key', async () => {
  const { calls, coalescer } = recorder((key, kind) => (kind === 'get' ? Buffer.from(`value of ${key}`) : key.length))
  const gets = ['a', 'bb', 'ccc'].map((key) => coalescer.read(Buffer.from(key), 'get'))
  const size = coalescer.read(Buffer.from('dddd'), 'size')
  assert.deepEqual((await Promise.all(gets)).map(String), ['value of a', 'value of bb', 'value of ccc'])
  assert.equal(await size, 4)
  assert.deepEqual(calls, [{ keys: ['a', 'bb', 'ccc'], kind: 'get' }, { keys: ['dddd'], kind: 'size' }])
  // A later turn is a new group.
  await coalescer.read(Buffer.from('e'), 'get')
  assert.equal(calls.length, 3)
})

test('a turn with more than readGroupKeysMax reads is split into groups of at most that many', async () => {
  const { calls, coalescer } = recorder()
  const count = readGroupKeysMax * 2 + 3
  const results = await Promise.all(Array.from({ length: count }, (_, i) => coalescer.read(Buffer.from(`k${i}`), 'get')))
  assert.deepEqual(results.map(String), Array.from({ length: count }, (_, i) => `value of k${i}`))
  assert.deepEqual(calls.map((call) => call.keys.length), [readGroupKeysMax, readGroupKeysMax, 3])
})

test('a failed group fails each of its reads with its error, and later reads still work', async () => {
  let fail = true
  const coalescer = new ReadCoalescer(async (keys) => {
    if (fail) throw new KvError(ErrorCode.UNAVAILABLE, 'no leader')
    return keys.map(() => null)
  })
  const reads = [coalescer.read(Buffer.from('a'), 'get'), coalescer.read(Buffer.from('b'), 'get')]
  for (const read of reads) await assert.rejects(read, (error: KvError) => error.code === ErrorCode.UNAVAILABLE)
  fail = false
  assert.equal(await coalescer.read(Buffer.from('a'), 'get'), null)
})
