// Frame and body codec: round trips, and property tests of the decoder on hostile input.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { ErrorCode, KvError } from '../../src/errors.js'
import { FrameDecoder, FrameType, HEADER_BYTES, encodeFrame, type Frame } from '../../src/wire/frame.js'
import { decodeBody, encodeBody, errorFromWire, errorToWire, requestIdFromBytes, requestIdToBytes, newRequestId } from '../../src/wire/codec.js'

function drain(decoder: FrameDecoder): { frames: Frame[]; error?: KvError } {
  const frames: Frame[] = []
  for (;;) {
    const result = decoder.next()
    if (result === null) return { frames }
    if ('error' in result) return { frames, error: result.error }
    frames.push(result.frame)
  }
}

const frameArbitrary = fc.record({
  type: fc.integer({ min: FrameType.HELLO, max: FrameType.CANCEL }),
  id: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  body: fc.uint8Array({ maxLength: 300 }),
})

test('request ids round trip between UUID strings and 16 bytes', () => {
  const id = newRequestId()
  const bytes = requestIdToBytes(id)
  assert.equal(bytes.length, 16)
  assert.equal(requestIdFromBytes(bytes), id)
  for (const bad of ['not-a-uuid', id.replace(/[0-9a-f]$/, 'g'), id.replaceAll('-', ''), ` ${id.slice(1)}`, 'x'.repeat(36)]) {
    assert.throws(() => requestIdToBytes(bad), (e: KvError) => e.code === ErrorCode.INVALID, bad)
  }
  fc.assert(fc.property(fc.uuid(), (uuid) => requestIdFromBytes(requestIdToBytes(uuid)) === uuid.toLowerCase()))
})

test('bodies round trip: Buffers arrive as Buffers, undefined survives in arrays', () => {
  const value = ['put', { key: Buffer.from('k'), value: new Uint8Array([1, 2, 3]), list: [undefined, null, 1, 'x'] }]
  const decoded = decodeBody(encodeBody(value))
  assert.ok('value' in decoded)
  const [method, params] = decoded.value as [string, any]
  assert.equal(method, 'put')
  assert.ok(Buffer.isBuffer(params.key) && Buffer.isBuffer(params.value))
  assert.deepEqual([...params.value], [1, 2, 3])
  assert.equal(params.list.length, 4)
  assert.equal(params.list[0], undefined)
  assert.equal(params.list[1], null)
})

test('errors round trip with code, message and details; other errors become INTERNAL', () => {
  const error = new KvError(ErrorCode.VALUE_TOO_LARGE, 'too big', { valueBytesMax: 10 })
  const back = errorFromWire(encodeBody(errorToWire(error)))
  assert.equal(back.code, ErrorCode.VALUE_TOO_LARGE)
  assert.equal(back.message, 'too big')
  assert.deepEqual(back.details, { valueBytesMax: 10 })
  assert.equal(errorFromWire(encodeBody(errorToWire(new TypeError('x')))).code, ErrorCode.INTERNAL)
})

test('frames split at every possible chunk boundary decode to the same frames', () => {
  fc.assert(
    fc.property(fc.array(frameArbitrary, { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 20 }), (frames, cuts) => {
      const wire = Buffer.concat(frames.map((f) => encodeFrame(f.type as never, f.id, f.body)))
      const decoder = new FrameDecoder(1024)
      const points = [...new Set(cuts.map((c) => c % (wire.length + 1)))].sort((a, b) => a - b)
      let start = 0
      const out: Frame[] = []
      for (const point of [...points, wire.length]) {
        decoder.push(wire.subarray(start, point))
        start = point
        const result = drain(decoder)
        assert.equal(result.error, undefined)
        out.push(...result.frames)
      }
      assert.equal(out.length, frames.length)
      out.forEach((frame, i) => {
        assert.equal(frame.type, frames[i]!.type)
        assert.deepEqual([...frame.requestId], [...frames[i]!.id])
        assert.deepEqual([...frame.body], [...frames[i]!.body])
      })
      assert.equal(decoder.buffered, 0)
    }),
  )
})

test('random bytes never make the decoder throw; the result is frames, a typed error, or a wait', (t) => {
  // Every allocation the decoder makes goes through Buffer.allocUnsafe: record the largest.
  let allocatedMax = 0
  const allocUnsafe = Buffer.allocUnsafe
  t.mock.method(Buffer, 'allocUnsafe', (size: number) => {
    allocatedMax = Math.max(allocatedMax, size)
    return allocUnsafe(size)
  })
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 200 }), { maxLength: 10 }), (chunks) => {
      const decoder = new FrameDecoder(256)
      for (const chunk of chunks) {
        decoder.push(Buffer.from(chunk))
        const result = drain(decoder)
        if (result.error !== undefined) assert.ok([ErrorCode.FRAME_TOO_LARGE, ErrorCode.PROTOCOL].includes(result.error.code as never))
        // Never holds more than one frame's worth plus the chunk being parsed.
        assert.ok(decoder.buffered <= HEADER_BYTES + 256 + 200)
      }
    }),
  )
  assert.ok(allocatedMax <= HEADER_BYTES + 256, `decoder allocated ${allocatedMax} bytes`)
})

test('an oversized declared length is refused from the header alone, before the body arrives', () => {
  fc.assert(
    fc.property(fc.integer({ min: 1025, max: 0xffffffff }), fc.integer({ min: 1, max: 10 }), (length, type) => {
      const header = encodeFrame(type as never, Buffer.alloc(16), Buffer.alloc(0))
      header.writeUInt32LE(length, 0)
      const decoder = new FrameDecoder(1024)
      decoder.push(header)
      const result = decoder.next()
      assert.ok(result !== null && 'error' in result)
      assert.equal(result.error.code, ErrorCode.FRAME_TOO_LARGE)
      assert.equal(result.error.details?.frameBytesMax, 1024)
      assert.equal(decoder.buffered, 0)
      // The decoder stays failed: nothing pushed later is buffered.
      decoder.push(Buffer.alloc(100))
      assert.equal(decoder.buffered, 0)
    }),
  )
})

test('truncated frames wait for more bytes and never yield a partial frame', () => {
  fc.assert(
    fc.property(frameArbitrary, fc.nat(), (f, cut) => {
      const wire = encodeFrame(f.type as never, f.id, f.body)
      const decoder = new FrameDecoder(1024)
      decoder.push(wire.subarray(0, cut % wire.length))
      assert.equal(decoder.next(), null)
    }),
  )
})

test('unknown frame types and non-zero reserved bits are protocol errors', () => {
  for (const patch of [(b: Buffer) => (b[4] = 0), (b: Buffer) => (b[4] = 200), (b: Buffer) => (b[5] = 1), (b: Buffer) => b.writeUInt16LE(7, 6)]) {
    const wire = encodeFrame(FrameType.REQUEST, Buffer.alloc(16), Buffer.from([0x90]))
    patch(wire)
    const decoder = new FrameDecoder(1024)
    decoder.push(wire)
    const result = decoder.next()
    assert.ok(result !== null && 'error' in result && result.error.code === ErrorCode.PROTOCOL)
  }
})

test('malformed bodies decode to KV_ERR_PROTOCOL, never a throw', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 1, maxLength: 64 }), (bytes) => {
      const result = decodeBody(Buffer.from(bytes))
      if ('error' in result) assert.equal(result.error.code, ErrorCode.PROTOCOL)
    }),
  )
  const hugeArray = Buffer.from([0xdd, 0x7f, 0xff, 0xff, 0xff])
  const result = decodeBody(hugeArray)
  assert.ok('error' in result && result.error.code === ErrorCode.PROTOCOL)
})
