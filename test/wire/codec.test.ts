// Request ids made without a string: the v4 UUID layout, distinct across refills of the random pool.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { newRequestIdBytes, requestIdFromBytes, requestIdToBytes } from '../../src/wire/codec.js'

test('newRequestIdBytes: 16 bytes in the v4 UUID layout, distinct across several pool refills', () => {
  const seen = new Set<string>()
  for (let i = 0; i < 1_000; i++) {
    const bytes = newRequestIdBytes()
    assert.equal(bytes.length, 16)
    const uuid = requestIdFromBytes(bytes)
    assert.match(uuid, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/)
    assert.deepEqual(requestIdToBytes(uuid), bytes)
    seen.add(uuid)
  }
  assert.equal(seen.size, 1_000)
})

test('newRequestIdBytes: each id is its own buffer, not a view a later id overwrites', () => {
  const first = newRequestIdBytes()
  const copy = Buffer.from(first)
  for (let i = 0; i < 600; i++) newRequestIdBytes()
  assert.deepEqual(first, copy)
})
