/**
 * unpackFrom (src/wire/unpack-from.ts) reads what msgpackr reads, the same way, and declines
 * whatever it does not take; on arbitrary bytes it never throws and never returns a value
 * msgpackr would not (msgpackr then decodes or refuses the body for decodeBody).
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { Packr } from 'msgpackr'
import { decodeBody, encodeBody } from '../../src/wire/codec.js'
import { UNPACK_FAILED, unpackFrom } from '../../src/wire/unpack-from.js'

// The codec's own options, used here to decode with msgpackr alone.
const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

function msgpackr(body: Buffer): { value: unknown } | { threw: true } {
  try {
    return { value: packr.unpack(body) }
  } catch {
    return { threw: true }
  }
}

const value = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, undefined, true, false, 0, 127, 128, 65_536, 2 ** 32 - 1, 2 ** 32, 2 ** 53, -1, -33, -129, -32_769, -(2 ** 31), -(2 ** 40), 0.5, Number.NaN, -Infinity, '__proto__'),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.string({ minLength: 200, maxLength: 300 }),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 10 }), fc.constant('__proto__')), tie('value'), { maxKeys: 10, noNullPrototype: true }),
    fc.constant(new Map<unknown, unknown>([[1, 'one']])),
    fc.constant(new Date(1)),
  ),
})).value

test('unpackFrom reads what msgpackr reads, or declines', () => {
  let read = 0
  fc.assert(
    fc.property(value, (input) => {
      const body = encodeBody(input)
      const expected = msgpackr(body)
      const got = unpackFrom(body)
      if (got === UNPACK_FAILED) return
      read++
      assert.ok('value' in expected)
      assert.deepStrictEqual(got, expected.value)
      assert.deepStrictEqual(decodeBody(body), { value: expected.value })
    }),
    { numRuns: 3000 },
  )
  assert.ok(read > 2000, `most bodies are read by unpackFrom (${read})`)
  // Buffers share the body's memory, as msgpackr's do.
  const body = encodeBody(['kv.put', { key: 'k', value: Buffer.from('abc') }])
  const got = unpackFrom(body) as [string, { value: Buffer }]
  assert.equal(got[1].value.buffer, body.buffer)
  // __proto__ is renamed as msgpackr renames it; the object's prototype is untouched.
  const renamed = unpackFrom(Buffer.from([0x81, 0xa9, ...Buffer.from('__proto__'), 0x81, 0xa1, 0x78, 0x01])) as Record<string, unknown>
  assert.equal(Object.getPrototypeOf(renamed), Object.prototype)
  assert.deepEqual(Object.keys(renamed), ['__proto_'])
})

test('unpackFrom on arbitrary and corrupted bytes: never throws, never a value msgpackr would not give', () => {
  const check = (body: Buffer) => {
    const got = unpackFrom(body)
    if (got === UNPACK_FAILED) return
    const expected = msgpackr(body)
    assert.ok('value' in expected, `unpackFrom read ${body.toString('hex')}, which msgpackr refuses`)
    assert.deepStrictEqual(got, expected.value)
  }
  fc.assert(fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => check(Buffer.from(bytes))), { numRuns: 5000 })
  fc.assert(
    fc.property(value, fc.nat(), fc.nat(255), (input, at, byte) => {
      const body = Buffer.from(encodeBody(input))
      body[at % body.length] = byte
      check(body)
      check(body.subarray(0, at % body.length)) // truncated
      check(Buffer.concat([body, Buffer.from([0])])) // trailing byte
    }),
    { numRuns: 3000 },
  )
  // Hostile array lengths: longer than the body, or nested arrays each claiming the rest of it
  // (refused once their slots together pass the body's length, not after allocating them all).
  const nested = Buffer.alloc(3000)
  for (let at = 0; at + 3 <= nested.length; at += 3) nested.set([0xdc, (nested.length - at - 3) >> 8, (nested.length - at - 3) & 0xff], at)
  assert.equal(unpackFrom(nested), UNPACK_FAILED)
  assert.equal(unpackFrom(Buffer.from([0xdd, 0xff, 0xff, 0xff, 0xff])), UNPACK_FAILED)
})
