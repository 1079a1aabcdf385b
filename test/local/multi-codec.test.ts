/**
 * The binary `kv.multiBinary` layout (src/local/multi-codec.ts): requests and replies round-trip
 * as views, every lie about a length or count is KV_ERR_PROTOCOL (never another throw, never a
 * read past the end), and the local server answers it like `kv.multi`, op by op.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes, randomUUID } from 'node:crypto'
import fc from 'fast-check'
import { ErrorCode, KvError } from '../../src/errors.js'
import { LocalMethod, startLocalServer } from '../../src/local/index.js'
import { MultiKind, multiOpsMax, type MultiKindValue, type MultiOp, type MultiResult } from '../../src/local/multi.js'
import { decodeMultiReply, decodeMultiRequest, encodeMultiReply, encodeMultiRequestBody } from '../../src/local/multi-codec.js'
import { decodeBody } from '../../src/wire/codec.js'
import { WireClient } from '../../src/wire/index.js'
import { cleanup, makeTempDir } from './helpers.js'

/** payloadOf returns the bin payload inside a MessagePack body built by the codec. */
function payloadOf(body: Buffer, index?: number): Buffer {
  const decoded = decodeBody(body)
  assert.ok('value' in decoded)
  return (index === undefined ? decoded.value : (decoded.value as unknown[])[index]) as Buffer
}

const bytes = (max: number): fc.Arbitrary<Buffer> => fc.uint8Array({ maxLength: max }).map((array) => Buffer.from(array))

const opArbitrary: fc.Arbitrary<MultiOp> = fc.oneof(
  fc.tuple(fc.constantFrom<MultiKindValue>(MultiKind.get, MultiKind.has, MultiKind.getSize), bytes(16), bytes(40)).map(([kind, id, key]): MultiOp => [kind, Buffer.concat([id, Buffer.alloc(16)]).subarray(0, 16), key]),
  fc.tuple(bytes(16), bytes(40), bytes(300), fc.boolean()).map(([id, key, value, sync]): MultiOp => [MultiKind.put, Buffer.concat([id, Buffer.alloc(16)]).subarray(0, 16), key, value, sync]),
  fc.tuple(bytes(16), bytes(40), fc.boolean()).map(([id, key, sync]): MultiOp => [MultiKind.del, Buffer.concat([id, Buffer.alloc(16)]).subarray(0, 16), key, null, sync]),
)

const resultArbitrary: fc.Arbitrary<MultiResult> = fc.oneof(
  fc.constant(null),
  fc.boolean(),
  fc.integer({ min: 0, max: 1 << 20 }),
  bytes(300),
  fc.record({ code: fc.constantFrom(ErrorCode.INVALID, ErrorCode.KEY_TOO_LARGE), message: fc.string() }).map((error) => ({ ...error })),
)

function isProtocolError(error: unknown): boolean {
  return error instanceof KvError && (error.code === ErrorCode.PROTOCOL || error.code === ErrorCode.INVALID)
}

test('requests round-trip: kind, id, key, value and sync of every op, as views of the payload', () => {
  fc.assert(
    fc.property(fc.array(opArbitrary, { maxLength: 40 }), (ops) => {
      const payload = payloadOf(encodeMultiRequestBody(ops), 1)
      const decoded = decodeMultiRequest(payload)
      assert.equal(decoded.length, ops.length)
      decoded.forEach((op, i) => {
        const [kind, id, key, value, sync] = ops[i]!
        assert.deepEqual([op.kind, op.id, op.key, op.value, op.sync], [kind, id, key, value ?? null, sync !== false])
        assert.equal(op.key.buffer, payload.buffer, 'keys are views, not copies')
      })
    }),
  )
})

test('replies round-trip: null, booleans, sizes, values and errors', () => {
  fc.assert(
    fc.property(fc.array(resultArbitrary, { maxLength: 40 }), (results) => {
      const decoded = decodeMultiReply(payloadOf(encodeMultiReply(results).bytes), results.length)
      assert.deepEqual(decoded, results)
    }),
  )
})

test('a truncated, extended or corrupted payload is KV_ERR_PROTOCOL, never another error', () => {
  fc.assert(
    fc.property(fc.array(opArbitrary, { minLength: 1, maxLength: 8 }), fc.nat(), fc.nat(255), (ops, where, byte) => {
      const payload = payloadOf(encodeMultiRequestBody(ops), 1)
      const cut = where % payload.length
      assert.throws(() => decodeMultiRequest(payload.subarray(0, cut)), isProtocolError)
      assert.throws(() => decodeMultiRequest(Buffer.concat([payload, Buffer.of(byte)])), isProtocolError)
      const corrupted = Buffer.from(payload)
      corrupted[cut] = byte
      try {
        decodeMultiRequest(corrupted)
      } catch (error) {
        assert.ok(isProtocolError(error), String(error))
      }
    }),
  )
  fc.assert(
    fc.property(fc.array(resultArbitrary, { minLength: 1, maxLength: 8 }), fc.nat(), fc.nat(255), (results, where, byte) => {
      const payload = payloadOf(encodeMultiReply(results).bytes)
      const cut = where % payload.length
      assert.throws(() => decodeMultiReply(payload.subarray(0, cut), results.length), isProtocolError)
      assert.throws(() => decodeMultiReply(Buffer.concat([payload, Buffer.of(byte)]), results.length), isProtocolError)
      assert.throws(() => decodeMultiReply(payload, results.length + 1), isProtocolError)
      const corrupted = Buffer.from(payload)
      corrupted[cut] = byte
      try {
        decodeMultiReply(corrupted, results.length)
      } catch (error) {
        assert.ok(isProtocolError(error), String(error))
      }
    }),
  )
})

test(`a request counting more than multiOpsMax (${multiOpsMax}) ops is KV_ERR_INVALID naming the bound, before anything is read`, () => {
  const payload = Buffer.alloc(4)
  payload.writeUInt32LE(multiOpsMax + 1)
  assert.throws(() => decodeMultiRequest(payload), (error: KvError) => error.code === ErrorCode.INVALID && /multiOpsMax \(1024\)/.test(error.message))
  assert.throws(() => decodeMultiRequest('not bytes'), isProtocolError)
})

test('the local server answers kv.multiBinary op by op, and a lying payload as a whole with KV_ERR_PROTOCOL', async () => {
  const dir = makeTempDir()
  const server = await startLocalServer({ dir, engine: 'memory', idleTimeoutSeconds: 0, handleSignals: false })
  const client = await WireClient.connect({ path: server.info.socket }, { clientId: randomUUID(), name: 'codec-test', pid: process.pid })
  try {
    const b = (text: string): Buffer => Buffer.from(text)
    const ops: MultiOp[] = [
      [MultiKind.put, randomBytes(16), b('a'), b('12345'), true],
      [MultiKind.put, randomBytes(16), Buffer.alloc(5000), b('x'), false],
      [7 as MultiKindValue, randomBytes(16), b('a')],
      [MultiKind.del, randomBytes(16), b('gone'), null, true],
    ]
    const written = decodeMultiReply(await client.requestBody(LocalMethod.multiBinary, encodeMultiRequestBody(ops)), ops.length)
    assert.equal(written[0], null)
    assert.equal((written[1] as { code: string }).code, ErrorCode.KEY_TOO_LARGE)
    assert.equal((written[2] as { code: string }).code, ErrorCode.INVALID)
    assert.equal(written[3], null)
    const reads: MultiOp[] = [
      [MultiKind.get, randomBytes(16), b('a')],
      [MultiKind.has, randomBytes(16), b('a')],
      [MultiKind.getSize, randomBytes(16), b('a')],
      [MultiKind.get, randomBytes(16), b('gone')],
      [MultiKind.has, randomBytes(16), b('gone')],
    ]
    const read = decodeMultiReply(await client.requestBody(LocalMethod.multiBinary, encodeMultiRequestBody(reads)), reads.length)
    assert.deepEqual(read, [b('12345'), true, 5, null, false])
    const lying = encodeMultiRequestBody(reads)
    // The first op's key length: after [fixarray, fixstr 'kv.multiBinary'] (16 B), the bin header (5), the count (4) and 18 B of op header.
    lying.writeUInt32LE(0x7fffffff, 16 + 5 + 4 + 18)
    await assert.rejects(client.requestBody(LocalMethod.multiBinary, lying), (error: KvError) => error.code === ErrorCode.PROTOCOL)
  } finally {
    await client.close()
    await server.stop()
    await cleanup(dir)
  }
})
