// Request ids made without a string: the v4 UUID layout, distinct across refills of the random pool.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { newRequestIdBytes, requestIdFromBytes, requestIdToBytes, bytesByReferenceMin, encodeBody, encodeBodyParts } from '../../src/wire/codec.js'

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

test('encodeBodyParts gives the bytes of encodeBody, with large byte strings of an array by reference', () => {
  const sizes = [0, 1, 255, 256, 65_535, 65_536, bytesByReferenceMin - 1, bytesByReferenceMin, 1024 * 1024]
  fc.assert(
    fc.property(fc.array(fc.option(fc.constantFrom(...sizes), { nil: null }), { minLength: 1, maxLength: 20 }), (picked) => {
      const value = picked.map((size, i) => (size === null ? null : Buffer.alloc(size, i)))
      const parts = encodeBodyParts(value)
      const whole = Buffer.isBuffer(parts) ? parts : Buffer.concat(parts)
      assert.ok(whole.equals(encodeBody(value)))
      const large = value.flatMap((item) => (item !== null && item.length >= bytesByReferenceMin ? [item] : []))
      if (large.length === 0) return assert.ok(Buffer.isBuffer(parts), 'no large value: one encoded body')
      assert.ok(Array.isArray(parts))
      for (const item of large) assert.ok(parts.some((part) => part.buffer === item.buffer && part.byteOffset === item.byteOffset), 'a large value is its own part')
    }),
    { numRuns: 200 },
  )
  // Anything else is encodeBody's.
  for (const value of [[], [Buffer.alloc(bytesByReferenceMin), 'text'], { a: Buffer.alloc(bytesByReferenceMin) }, 7]) assert.ok(Buffer.isBuffer(encodeBodyParts(value)))
  assert.ok((encodeBodyParts([Buffer.alloc(bytesByReferenceMin), 'text']) as Buffer).equals(encodeBody([Buffer.alloc(bytesByReferenceMin), 'text'])))
})
