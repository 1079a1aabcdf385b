/**
 * Binary layout of `kv.multiBinary`, the form of `kv.multi` (src/local/multi.ts) that skips
 * MessagePack for the ops and their results. The client writes a frame's ops into one buffer
 * (one allocation, keys and values copied once); the server reads them as views of the received
 * frame (no copy per key or value) and writes every result into one reply buffer, which the
 * client reads as views again. MessagePack walks each op as an array of typed items at both
 * ends; at 30-60 ops per frame that per-item work was most of the protocol's CPU per op.
 *
 * Both payloads travel as one MessagePack `bin` (params of the request, result of the reply),
 * so the frame layer and every proxy see an ordinary request; the builders below emit the bin
 * header themselves, so the payload is never copied into a second buffer.
 *
 * Request payload (little endian): u32 count, then per op
 *   u8 kind, u8 sync (0|1), 16 B request id, u32 keyBytes, u32 valueBytes (0xffffffff: none),
 *   key, value.
 * Reply payload: u32 count, then per result a u8 tag and
 *   0 null | 1 bytes: u32 length, bytes | 2 false | 3 true | 4 number: u32 |
 *   5 error: u32 length, MessagePack { code, message, details? }.
 *
 * Fault model: either end may be any program. Every length is checked against the bytes that
 * remain before it is used, counts against `multiOpsMax`, and trailing bytes are refused: a
 * payload that lies is KV_ERR_PROTOCOL as a whole, never a throw of another kind or a read past
 * its end. An op whose fields are well framed but invalid (unknown kind, key too large) fails
 * only itself, as in `kv.multi`.
 */
import { ErrorCode, KvError } from '../errors.js'
import { EncodedBody, decodeBody, encodeBody } from '../wire/codec.js'
import type { LocalStore } from './store.js'
import { executeParsed, multiOpsMax, parseDecodedOp, type MultiOp, type MultiResult } from './multi.js'

/** MULTI_BINARY_METHOD is the method name of the binary form; servers without it answer KV_ERR_UNKNOWN_METHOD. */
export const MULTI_BINARY_METHOD = 'kv.multiBinary'

const opHeaderBytes = 1 + 1 + 16 + 4 + 4
const noValue = 0xffffffff
const binHeaderBytes = 5

const Tag = { null: 0, bytes: 1, false: 2, true: 3, number: 4, error: 5 } as const

// MessagePack prefix of a request body: fixarray(2), fixstr method; then the bin32 header.
const requestPrefix = Buffer.from([0x92, 0xa0 | MULTI_BINARY_METHOD.length, ...Buffer.from(MULTI_BINARY_METHOD, 'latin1')])

function protocol(message: string): KvError {
  return new KvError(ErrorCode.PROTOCOL, `malformed ${MULTI_BINARY_METHOD} payload: ${message}`)
}

function writeBinHeader(out: Buffer, at: number, bytes: number): number {
  out[at] = 0xc6
  out.writeUInt32BE(bytes, at + 1)
  return at + binHeaderBytes
}

/** encodeMultiRequestBody returns the whole MessagePack request body `[kv.multiBinary, payload]` for `ops`. */
export function encodeMultiRequestBody(ops: MultiOp[]): Buffer {
  let payloadBytes = 4
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i]!
    payloadBytes += opHeaderBytes + op[2].length + (op[3] == null ? 0 : op[3].length)
  }
  const out = Buffer.allocUnsafe(requestPrefix.length + binHeaderBytes + payloadBytes)
  requestPrefix.copy(out, 0)
  let at = writeBinHeader(out, requestPrefix.length, payloadBytes)
  at = out.writeUInt32LE(ops.length, at)
  for (let i = 0; i < ops.length; i++) {
    const [kind, id, key, value, sync] = ops[i]!
    out[at] = kind
    out[at + 1] = sync === false ? 0 : 1
    out.set(id.subarray(0, 16), at + 2)
    at = out.writeUInt32LE(key.length, at + 18)
    at = out.writeUInt32LE(value == null ? noValue : value.length, at)
    out.set(key, at)
    at += key.length
    if (value != null) {
      out.set(value, at)
      at += value.length
    }
  }
  return out
}

/** DecodedOp is one op read from a request payload; id, key and value are views of the payload. */
export interface DecodedOp {
  kind: number
  sync: boolean
  id: Buffer
  key: Buffer
  value: Buffer | null
}

/** decodeMultiRequest reads a request payload; throws KV_ERR_PROTOCOL (or KV_ERR_INVALID past multiOpsMax). */
export function decodeMultiRequest(payload: unknown): DecodedOp[] {
  if (!Buffer.isBuffer(payload)) throw protocol('params must be bytes')
  if (payload.length < 4) throw protocol('shorter than its count')
  const count = payload.readUInt32LE(0)
  if (count > multiOpsMax) {
    throw new KvError(ErrorCode.INVALID, `${MULTI_BINARY_METHOD} carries ${count} ops, more than multiOpsMax (${multiOpsMax})`, { ops: count, multiOpsMax })
  }
  const ops = new Array<DecodedOp>(count)
  let at = 4
  for (let i = 0; i < count; i++) {
    if (payload.length - at < opHeaderBytes) throw protocol(`op ${i} header runs past the end`)
    const kind = payload[at]!
    const syncByte = payload[at + 1]!
    if (syncByte > 1) throw protocol(`op ${i} sync byte is ${syncByte}`)
    const id = payload.subarray(at + 2, at + 18)
    const keyBytes = payload.readUInt32LE(at + 18)
    const valueBytes = payload.readUInt32LE(at + 22)
    at += opHeaderBytes
    const bodyBytes = keyBytes + (valueBytes === noValue ? 0 : valueBytes)
    if (payload.length - at < bodyBytes) throw protocol(`op ${i} declares ${bodyBytes} bytes of key and value, ${payload.length - at} remain`)
    const key = payload.subarray(at, at + keyBytes)
    at += keyBytes
    let value: Buffer | null = null
    if (valueBytes !== noValue) {
      value = payload.subarray(at, at + valueBytes)
      at += valueBytes
    }
    ops[i] = { kind, sync: syncByte === 1, id, key, value }
  }
  if (at !== payload.length) throw protocol(`${payload.length - at} bytes after the last op`)
  return ops
}

/** encodeMultiReply writes results (in op order) as one MessagePack bin; errors are the only plain objects. */
export function encodeMultiReply(results: MultiResult[]): EncodedBody {
  const errors = new Map<number, Buffer>()
  let payloadBytes = 4
  for (let i = 0; i < results.length; i++) {
    const result = results[i]
    if (Buffer.isBuffer(result)) payloadBytes += 5 + result.length
    else if (typeof result === 'number') payloadBytes += 5
    else if (result !== null && typeof result === 'object') {
      const encoded = encodeBody(result)
      errors.set(i, encoded)
      payloadBytes += 5 + encoded.length
    } else payloadBytes += 1
  }
  const out = Buffer.allocUnsafe(binHeaderBytes + payloadBytes)
  let at = out.writeUInt32LE(results.length, writeBinHeader(out, 0, payloadBytes))
  for (let i = 0; i < results.length; i++) {
    const result = results[i]
    if (result === null || result === undefined) out[at++] = Tag.null
    else if (result === true) out[at++] = Tag.true
    else if (result === false) out[at++] = Tag.false
    else if (typeof result === 'number') {
      out[at] = Tag.number
      at = out.writeUInt32LE(result, at + 1)
    } else {
      const bytes = Buffer.isBuffer(result) ? result : errors.get(i)!
      out[at] = Buffer.isBuffer(result) ? Tag.bytes : Tag.error
      at = out.writeUInt32LE(bytes.length, at + 1)
      out.set(bytes, at)
      at += bytes.length
    }
  }
  return new EncodedBody(out)
}

/** decodeMultiReply reads a reply payload of `expected` results; throws KV_ERR_PROTOCOL when it lies. */
export function decodeMultiReply(payload: unknown, expected: number): unknown[] {
  if (!Buffer.isBuffer(payload)) throw protocol('result must be bytes')
  if (payload.length < 4 || payload.readUInt32LE(0) !== expected) throw protocol(`reply does not carry ${expected} results`)
  const results = new Array<unknown>(expected)
  let at = 4
  for (let i = 0; i < expected; i++) {
    if (at >= payload.length) throw protocol(`result ${i} runs past the end`)
    const tag = payload[at++]!
    if (tag === Tag.null || tag === Tag.true || tag === Tag.false) {
      results[i] = tag === Tag.null ? null : tag === Tag.true
      continue
    }
    if (tag > Tag.error) throw protocol(`result ${i} has tag ${tag}`)
    if (payload.length - at < 4) throw protocol(`result ${i} length runs past the end`)
    const length = payload.readUInt32LE(at)
    at += 4
    if (tag === Tag.number) {
      results[i] = length
      continue
    }
    if (payload.length - at < length) throw protocol(`result ${i} declares ${length} bytes, ${payload.length - at} remain`)
    const bytes = payload.subarray(at, at + length)
    at += length
    results[i] = tag === Tag.bytes ? bytes : decodeError(bytes, i)
  }
  if (at !== payload.length) throw protocol(`${payload.length - at} bytes after the last result`)
  return results
}

function decodeError(bytes: Buffer, index: number): Record<string, unknown> {
  const decoded = decodeBody(bytes)
  const value = 'value' in decoded ? decoded.value : undefined
  if (value === null || typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) throw protocol(`result ${index} is a malformed error`)
  return value as Record<string, unknown>
}

/** executeMultiBinary serves one `kv.multiBinary` request: decode (views), execute as `kv.multi`, encode. */
export async function executeMultiBinary(store: LocalStore, payload: unknown, onUnexpected: (error: unknown) => void): Promise<EncodedBody> {
  const ops = decodeMultiRequest(payload)
  const results = await executeParsed(store, ops.length, (at) => {
    const op = ops[at]!
    return parseDecodedOp(op.kind, op.id, op.key, op.value, op.sync)
  }, onUnexpected)
  return encodeMultiReply(results)
}
