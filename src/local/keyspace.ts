/**
 * The local server's key layout inside its engine. User data and the server's own records
 * live in separate keyspaces, told apart by the first byte, so no user key can collide with
 * or reveal an internal one:
 *
 *   0x01 <user key>                 user data
 *   0x00 'g' <8-byte BE sequence>   the request ids applied by one engine batch (value: 8-byte BE
 *                                   ms timestamp, then the 16-byte ids)
 *   0x00 'r' <16-byte request id>   one applied request id (value: 8-byte BE ms timestamp); only
 *                                   read, in directories written before group records
 *
 * Queries are translated into ranges that never leave the 0x01 keyspace.
 */
import type { RangeOptions } from '../engine/engine.js'
import { ErrorCode, KvError } from '../errors.js'
import type { WireRange } from './validate.js'

const userTag = 0x01
const internalTag = 0x00
const requestTag = 0x72 // 'r'
const requestGroupTag = 0x67 // 'g'

/** userStart is the smallest key of the user keyspace (inclusive). */
const userStart = Buffer.from([userTag])
/** userEnd is the first key after the user keyspace (exclusive). */
const userEnd = Buffer.from([userTag + 1])

/** userKey maps a user key into the engine's user keyspace. */
export function userKey(key: Buffer): Buffer {
  const out = Buffer.allocUnsafe(key.length + 1)
  out[0] = userTag
  key.copy(out, 1)
  return out
}

/** stripUserKey maps an engine key of the user keyspace back to the user's key. */
export function stripUserKey(engineKey: Buffer): Buffer {
  return engineKey.subarray(1)
}

/** requestIdBytes parses a UUID string into its 16 bytes; anything else is KV_ERR_INVALID. */
export function requestIdBytes(requestId: string): Buffer {
  const hex = typeof requestId === 'string' ? requestId.replace(/-/g, '') : ''
  if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new KvError(ErrorCode.INVALID, `request id must be a UUID, got ${String(requestId)}`)
  return Buffer.from(hex, 'hex')
}

/** requestKey is the legacy per-id record key (directories written before group records; see RecentRequests). */
export function requestKey(id: Buffer): Buffer {
  const key = Buffer.allocUnsafe(2 + id.length)
  key[0] = internalTag
  key[1] = requestTag
  id.copy(key, 2)
  return key
}

/** requestKeyRange covers every request-id record. */
export const requestKeyRange: RangeOptions = {
  gte: Buffer.from([internalTag, requestTag]),
  lt: Buffer.from([internalTag, requestTag + 1]),
}

/** requestGroupKey is the internal key of the request-id record of the engine batch numbered `seq`. */
export function requestGroupKey(seq: number): Buffer {
  const key = Buffer.allocUnsafe(10)
  key[0] = internalTag
  key[1] = requestGroupTag
  // Two 32-bit halves: exact for every seq below 2^53, and no BigInt on the write path.
  key.writeUInt32BE(Math.floor(seq / 2 ** 32), 2)
  key.writeUInt32BE(seq >>> 0, 6)
  return key
}

/** requestGroupSeq reads the sequence number back from a request-id group key. */
export function requestGroupSeq(key: Buffer): number {
  return key.length === 10 ? key.readUInt32BE(2) * 2 ** 32 + key.readUInt32BE(6) : 0
}

/** requestGroupKeyRange covers every request-id group record. */
export const requestGroupKeyRange: RangeOptions = {
  gte: Buffer.from([internalTag, requestGroupTag]),
  lt: Buffer.from([internalTag, requestGroupTag + 1]),
}

/** timestampBytes writes a ms timestamp as 8 bytes BE into `out` (a new buffer when omitted). */
export function timestampBytes(ms: number, out: Buffer = Buffer.alloc(8)): Buffer {
  const value = Math.max(0, Math.floor(ms))
  out.writeUInt32BE(Math.floor(value / 2 ** 32), 0)
  out.writeUInt32BE(value >>> 0, 4)
  return out
}

/** encodeTimestamp stores a ms timestamp as the value of a request-id record. */
export function encodeTimestamp(ms: number): Buffer {
  return timestampBytes(ms)
}

/** decodeTimestamp reads a request-id record's value; a malformed one counts as oldest. */
export function decodeTimestamp(value: Buffer): number {
  return value.length === 8 ? Number(value.readBigUInt64BE()) : 0
}

/**
 * prefixEnd is the smallest key greater than every key starting with `prefix`, or undefined
 * when there is none (the prefix is all 0xff bytes).
 */
export function prefixEnd(prefix: Buffer): Buffer | undefined {
  for (let i = prefix.length - 1; i >= 0; i--) {
    if (prefix[i] !== 0xff) {
      const out = Buffer.from(prefix.subarray(0, i + 1))
      out[i] = out[i]! + 1
      return out
    }
  }
  return undefined
}

type Bound = { key: Buffer; inclusive: boolean }

function tighterLower(a: Bound, b: Bound): Bound {
  const order = Buffer.compare(a.key, b.key)
  if (order !== 0) return order > 0 ? a : b
  return a.inclusive ? b : a
}

function tighterUpper(a: Bound, b: Bound): Bound {
  const order = Buffer.compare(a.key, b.key)
  if (order !== 0) return order < 0 ? a : b
  return a.inclusive ? b : a
}

/**
 * engineRange turns a user query range into an engine range inside the user keyspace: `prefix`
 * becomes a [prefix, prefixEnd) pair intersected with the other bounds, and missing bounds
 * become the keyspace's edges so internal keys are never visited.
 */
export function engineRange(range: WireRange): RangeOptions {
  let lower: Bound = { key: userStart, inclusive: true }
  let upper: Bound = { key: userEnd, inclusive: false }
  if (range.gte) lower = tighterLower(lower, { key: userKey(range.gte), inclusive: true })
  if (range.gt) lower = tighterLower(lower, { key: userKey(range.gt), inclusive: false })
  if (range.lte) upper = tighterUpper(upper, { key: userKey(range.lte), inclusive: true })
  if (range.lt) upper = tighterUpper(upper, { key: userKey(range.lt), inclusive: false })
  if (range.prefix) {
    const start = userKey(range.prefix)
    lower = tighterLower(lower, { key: start, inclusive: true })
    upper = tighterUpper(upper, { key: prefixEnd(start) ?? userEnd, inclusive: false })
  }
  const out: RangeOptions = {
    reverse: range.reverse === true,
    keys: true,
    values: range.values !== false,
  }
  if (lower.inclusive) out.gte = lower.key
  else out.gt = lower.key
  if (upper.inclusive) out.lte = upper.key
  else out.lt = upper.key
  if (range.limit !== undefined) out.limit = range.limit
  return out
}
