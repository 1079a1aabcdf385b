// The binary `each` command: round trip into views, applied by the shard machine like the
// msgpack form (per-unit refusals, ids once), and every malformed input refused whole:
// truncation at every byte, trailing bytes, lying counts, empty units, bad op types, limits.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { MemoryEngine } from '../../src/engine/memory.js'
import { Limits } from '../../src/limits.js'
import { SLOT_COUNT, slotOf } from '../../src/meta/slots.js'
import type { WireOp } from '../../src/local/validate.js'
import { EACH_TAG, EachRequest, decodeEach, encodeEach, isEachCommand, valueByReferenceBytes } from '../../src/store/each-codec.js'
import { decodeBody } from '../../src/wire/codec.js'
import { ShardMachine, type ShardResult } from '../../src/store/machine.js'

const id = (n: number) => Buffer.from(n.toString(16).padStart(32, '0'), 'hex')
const put = (key: string, value: string): WireOp => ({ type: 'put', key: Buffer.from(key), value: Buffer.from(value) })
const del = (key: string): WireOp => ({ type: 'del', key: Buffer.from(key) })

test('encode then decode gives the same units, as views of the bytes', () => {
  const bytes = encodeEach([{ id: id(1), ops: [put('a', 'one'), del('b')] }, { id: id(2), ops: [put('', '')] }])
  assert.equal(isEachCommand(bytes), true)
  const units = decodeEach(bytes)
  assert.deepEqual(units.map((u) => [u.id.toString('hex'), u.ops.map((op) => op.map((x) => (typeof x === 'number' ? x : x.toString())))]), [
    [id(1).toString('hex'), [[0, 'a', 'one'], [1, 'b']]],
    [id(2).toString('hex'), [[0, '', '']]],
  ])
  assert.equal(units[0]!.ops[0]![1].buffer, bytes.buffer, 'keys are views, not copies')
})

test('an EachRequest body is the msgpack store.write request around the command, large values by reference, rebuilt apart for another shard', () => {
  const large = Buffer.alloc(valueByReferenceBytes, 7)
  const units = [{ id: id(1), ops: [put('a', 'one'.repeat(1000))] }, { id: id(2), ops: [del('b')] }, { id: id(3), ops: [{ type: 'put' as const, key: Buffer.from('big'), value: large }, put('c', 'small')] }]
  const request = new EachRequest(units)
  assert.deepEqual(request.each, encodeEach(units))
  const parts = request.body(70_000)
  assert.equal(request.body(70_000), parts, 'the same shard reuses the parts')
  assert.ok(parts.some((part) => part.buffer === large.buffer && part.length === large.length), 'a large value is a part of its own, not a copy')
  assert.ok(parts.every((part) => part.buffer === large.buffer || part.buffer === parts[0]!.buffer), 'smaller values are copied into the one encoded buffer')
  assert.equal(parts.length, 3)
  const body = Buffer.concat(parts)
  const decoded = decodeBody(body) as { value: [string, { shard: number; each: Buffer }] }
  assert.deepEqual(decoded.value, ['store.write', { shard: 70_000, each: request.each }])
  const moved = request.body(3)
  assert.notEqual(moved[0]!.buffer, parts[0]!.buffer, 'parts possibly still queued are not rewritten')
  assert.deepEqual((decodeBody(Buffer.concat(parts)) as { value: [string, { shard: number }] }).value[1].shard, 70_000)
  assert.deepEqual((decodeBody(Buffer.concat(moved)) as { value: unknown }).value, ['store.write', { shard: 3, each: request.each }])
  assert.throws(() => request.body(-1), { code: 'KV_ERR_INVALID' })
})

test('every truncation, trailing byte and lying length is refused with KV_ERR_INVALID', () => {
  const bytes = encodeEach([{ id: id(1), ops: [put('key', 'value'), del('gone')] }, { id: id(2), ops: [put('k2', 'v2')] }])
  for (let cut = 0; cut < bytes.length; cut++) assert.throws(() => decodeEach(bytes.subarray(0, cut)), { code: 'KV_ERR_INVALID' }, `cut at ${cut}`)
  assert.throws(() => decodeEach(Buffer.concat([bytes, Buffer.from([0])])), { code: 'KV_ERR_INVALID' })
  const lyingCount = Buffer.from(bytes)
  lyingCount.writeUInt32BE(0xffffffff, 1)
  assert.throws(() => decodeEach(lyingCount), { code: 'KV_ERR_INVALID' })
  const badType = Buffer.from(bytes)
  badType[5 + 18] = 7
  assert.throws(() => decodeEach(badType), { code: 'KV_ERR_INVALID' })
  const noOps = Buffer.from(bytes)
  noOps.writeUInt16BE(0, 5 + 16)
  assert.throws(() => decodeEach(noOps), { code: 'KV_ERR_INVALID' })
  assert.throws(() => decodeEach(Buffer.from([EACH_TAG, 0, 0, 0, 0])), { code: 'KV_ERR_INVALID' })
})

test('the key, value and batch limits hold for the whole command', () => {
  assert.throws(() => decodeEach(encodeEach([{ id: id(1), ops: [put('k'.repeat(Limits.keyBytesMax + 1), 'v')] }])), { code: 'KV_ERR_KEY_TOO_LARGE' })
  const big = { type: 'put' as const, key: Buffer.from('k'), value: Buffer.alloc(Limits.valueBytesMax + 1) }
  assert.throws(() => decodeEach(encodeEach([{ id: id(1), ops: [big] }])), { code: 'KV_ERR_VALUE_TOO_LARGE' })
  const many = Array.from({ length: Limits.batchOpsMax + 1 }, (_, i) => ({ id: id(i), ops: [del(`k${i}`)] }))
  assert.throws(() => decodeEach(encodeEach(many)), { code: 'KV_ERR_BATCH_TOO_LARGE' })
})

test('the shard machine applies a binary group like the msgpack one: per-unit refusals, each id once', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  const machine = new ShardMachine(engine, 2)
  await machine.load()
  const b = 'each-bin-b'
  const others = Array.from({ length: SLOT_COUNT }, (_, i) => i).filter((slot) => slot !== slotOf(Buffer.from(b)))
  let index = 0
  const apply = async (data: Uint8Array) => {
    const { ops, results } = await machine.apply([{ term: 1, index: ++index, type: 'normal', data }])
    await engine.batch(ops)
    return results[0] as ShardResult
  }
  const { pack } = await import('msgpackr')
  await apply(pack({ t: 'claim', slots: others }))
  const group = encodeEach([{ id: id(1), ops: [put('each-bin-a', '1')] }, { id: id(2), ops: [put(b, '1')] }, { id: id(1), ops: [put('each-bin-a', 'dup')] }])
  const result = await apply(group)
  assert.deepEqual(result.ok && result.refused?.map(([at, code]) => [at, code]), [[1, 'KV_ERR_WRONG_SHARD']])
  assert.equal((await engine.get(machine.keys.dataKey(Buffer.from('each-bin-a'))))?.toString(), '1')
  assert.deepEqual(await apply(Buffer.from([EACH_TAG, 0, 0])), { ok: false, code: 'KV_ERR_PROTOCOL', message: 'undecodable shard command' })
})
