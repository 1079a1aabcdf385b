/**
 * The in-place encoder (src/wire/pack-into.ts) writes exactly msgpackr's bytes for the values it
 * takes and declines the rest; over real sockets, requests and replies encoded in place go out
 * in order with frames sent the usual way, across slab boundaries, in one coalesced write, and
 * a request refused mid-batch leaves the others intact.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ErrorCode } from '../../src/errors.js'
import { WireClient } from '../../src/wire/index.js'
import { bytesByReferenceMin, encodeBody } from '../../src/wire/codec.js'
import { PACK_FAILED, packRequestInto, packValueInto } from '../../src/wire/pack-into.js'
import { hello, rejectsWith, startServer } from './helpers.js'

// Values the in-place encoder takes: what the wire's callers send (no Maps, Dates, bigints).
const packable = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.constantFrom(null, undefined, true, false, 0, -0, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, -1, -32, -33, -128, -129, -32_768, -32_769, 2 ** 31 - 1, -(2 ** 31), 0.5, Number.NaN, Number.POSITIVE_INFINITY, 1e300),
    fc.integer(),
    fc.double(),
    fc.string({ maxLength: 80 }),
    fc.string({ unit: 'binary', maxLength: 80 }),
    fc.string({ minLength: 250, maxLength: 300 }),
    fc.constantFrom('\ud800', 'a\udc00b', 'x'.repeat(70) + '\ud800', 'é'.repeat(40), '😀'.repeat(20)),
    fc.uint8Array({ maxLength: 300 }).map((bytes) => Buffer.from(bytes)),
    fc.uint8Array({ maxLength: 40 }),
    fc.array(tie('value'), { maxLength: 20 }),
    fc.dictionary(fc.string({ maxLength: 10 }), tie('value'), { maxKeys: 20, noNullPrototype: true }),
  ),
})).value

function packed(encode: typeof packValueInto, a: unknown, b: unknown, room = 1 << 20): Buffer | undefined {
  const target = Buffer.alloc(room + 8, 0xee)
  const end = encode(target, 8, 8 + room, a, b)
  if (end === PACK_FAILED) return undefined
  assert.ok(target.subarray(8 + room).every((byte) => byte === 0xee), 'nothing written past end')
  return target.subarray(8, end)
}

test('packValueInto and packRequestInto write the bytes msgpackr writes', () => {
  fc.assert(
    fc.property(packable, (value) => {
      assert.deepEqual(packed(packValueInto, value, undefined), encodeBody(value))
      assert.deepEqual(packed(packRequestInto, 'kv.put', value), encodeBody(['kv.put', value]))
    }),
    { numRuns: 2000 },
  )
  // Sizes at each header boundary: str8/16/32, bin8/16, array16/32, map16.
  for (const value of ['a'.repeat(31), 'a'.repeat(32), 'a'.repeat(255), 'a'.repeat(256), 'é'.repeat(20), 'é'.repeat(200), 'a'.repeat(65_536), Buffer.alloc(255), Buffer.alloc(256), Buffer.alloc(bytesByReferenceMin - 1), new Array(16).fill(1), new Array(70_000).fill(0), Object.fromEntries(Array.from({ length: 300 }, (_, i) => [`k${i}`, i]))]) {
    assert.deepEqual(packed(packValueInto, value, undefined), encodeBody(value))
  }
})

test('the in-place encoder declines what it does not write, and never writes past its end', () => {
  class Point {
    x = 1
  }
  let deep: unknown = 1
  for (let i = 0; i < 40; i++) deep = [deep]
  for (const value of [new Map([[1, 2]]), new Date(0), 10n, new Point(), new Uint16Array(2), Object.create(null), Buffer.alloc(bytesByReferenceMin), [Symbol('s')], { f: () => 1 }, deep]) {
    assert.equal(packed(packValueInto, value, undefined), undefined, typeof value)
  }
  // Too little room: declined at every size short of the encoding, never a partial write past end.
  const value = { key: 'k'.repeat(70), value: Buffer.alloc(300, 1), list: [1, 'two', null, 3.5], nested: { a: 'é' } }
  const whole = encodeBody(value)
  for (let room = 0; room < whole.length; room++) assert.equal(packed(packValueInto, value, undefined, room), undefined, `room ${room}`)
  // It asks for a string's worst case (3 bytes a character) and 9 bytes a number before writing, so it may decline with the exact room.
  assert.deepEqual(packed(packValueInto, value, undefined, whole.length + 3 * 70), whole)
})

test('requests encoded in place cross slab boundaries, coalesce into one write and keep order with fallbacks and refusals', async () => {
  const s = await startServer({ frameBytesMax: 64 * 1024 })
  try {
    const client = await WireClient.connect(s.tcp, hello(), { frameBytesMax: 64 * 1024 })
    // Sizes chosen so that requests straddle the 64 KiB slabs; a Map (msgpackr's path), a value
    // too large for the frame and one too large for a slab (by reference) fall among them, all in one turn.
    const values: unknown[] = []
    for (let i = 0; i < 600; i++) {
      if (i % 97 === 5) values.push(new Map([['i', i]]))
      else if (i % 131 === 7) values.push(Buffer.alloc(70 * 1024, i & 0xff))
      else if (i % 89 === 3) values.push(Buffer.alloc(bytesByReferenceMin + i, i & 0xff))
      else values.push({ i, key: `key-${i}`, value: Buffer.alloc(1000 + ((i * 37) % 12_000), i & 0xff) })
    }
    const results = await Promise.allSettled(values.map((value) => client.request('echo', value)))
    results.forEach((result, i) => {
      const value = values[i]
      if (Buffer.isBuffer(value) && value.length > 64 * 1024) {
        assert.equal(result.status, 'rejected')
        assert.equal((result as PromiseRejectedResult).reason.code, ErrorCode.FRAME_TOO_LARGE)
        return
      }
      assert.equal(result.status, 'fulfilled', `request ${i}: ${String((result as PromiseRejectedResult).reason)}`)
      const got = (result as PromiseFulfilledResult<unknown>).value
      if (value instanceof Map) assert.deepEqual(got, { i })
      else assert.deepEqual(got, value)
    })
    // A reply too large for the server's frameBytesMax is refused alone; the connection goes on.
    await rejectsWith(client.request('blob', 70 * 1024), ErrorCode.FRAME_TOO_LARGE)
    assert.deepEqual(await client.request('echo', { after: true }), { after: true })
    await client.close()
  } finally {
    await s.stop()
  }
})

test('a throwing getter rejects its own request or reply; a request sent from inside a getter is refused, the outer one goes out', async () => {
  const s = await startServer()
  s.server.handle('getter', async () => ({
    get broken(): number {
      throw new Error('getter failed')
    },
  }))
  try {
    const client = await WireClient.connect(s.unix, hello())
    const throwing = {
      get value(): number {
        throw new Error('getter failed')
      },
    }
    const rejected = client.request('echo', throwing)
    await assert.rejects(rejected, /getter failed/)
    let inner: Promise<unknown> | undefined
    const sneaky = {
      a: 1,
      get b(): string {
        inner ??= client.request('echo', 'inner').catch((error: unknown) => error)
        return 'b'
      },
    }
    assert.deepEqual(await client.request('echo', sneaky), { a: 1, b: 'b' })
    assert.match(String(await inner), /from inside the encoding of another/)
    await rejectsWith(client.request('getter', null), ErrorCode.INTERNAL)
    assert.equal(await client.request('echo', 'still here'), 'still here')
    await client.close()
  } finally {
    await s.stop()
  }
})
