/**
 * In-place MessagePack encoding of the common bodies (a request's `[method, params]`, a reply's
 * result) straight into a connection's outgoing buffer, after the frame header: one write of the
 * bytes instead of msgpackr encoding into its own buffer, a Buffer view of that, and a second
 * copy when the frame is flushed (together about a quarter of the client's CPU per request).
 *
 * The bytes are exactly msgpackr's for the same value with the codec's options (records off,
 * plain objects as map16, integers in their smallest form, other numbers as float64, strings
 * as UTF-8 with msgpackr's own handling of lone surrogates, bytes as bin, `undefined` as
 * fixext1 0/0); test/wire/pack-into.test.ts compares them. Anything else (Maps, Dates, class
 * instances, typed arrays other than bytes, bigints, nesting deeper than packDepthMax, byte
 * strings of bytesByReferenceMin or more, which a reply sends by reference) is left
 * to msgpackr: the encoder reports it cannot, and the caller falls back to encodeBody.
 */

import { bytesByReferenceMin } from './codec.js'

/** PACK_FAILED is what the encoders return when the value does not fit or is not one they write. */
export const PACK_FAILED = -1

/** packDepthMax bounds the encoder's recursion; deeper values go through msgpackr. */
const packDepthMax = 32

/** InPlaceEncoder writes a body into `target` from `at`, never past `end`; returns the end or PACK_FAILED. */
export type InPlaceEncoder = (target: Buffer, at: number, end: number, a: unknown, b: unknown) => number

/** packRequestInto writes the request body `[method, params]` (`a` is the method, `b` the params). */
export function packRequestInto(target: Buffer, at: number, end: number, method: unknown, params: unknown): number {
  if (at >= end) return PACK_FAILED
  target[at] = 0x92
  at = packInto(target, at + 1, end, method, 0)
  return at === PACK_FAILED ? at : packInto(target, at, end, params, 0)
}

/** packValueInto writes one value (`a`; `b` is unused). */
export function packValueInto(target: Buffer, at: number, end: number, value: unknown, _unused: unknown): number {
  return packInto(target, at, end, value, 0)
}

function packInto(target: Buffer, at: number, end: number, value: unknown, depth: number): number {
  switch (typeof value) {
    case 'string':
      return packString(target, at, end, value)
    case 'number':
      return packNumber(target, at, end, value)
    case 'boolean':
      if (at >= end) return PACK_FAILED
      target[at] = value ? 0xc3 : 0xc2
      return at + 1
    case 'undefined':
      if (at + 3 > end) return PACK_FAILED
      target[at] = 0xd4
      target[at + 1] = 0
      target[at + 2] = 0
      return at + 3
    case 'object':
      if (value === null) {
        if (at >= end) return PACK_FAILED
        target[at] = 0xc0
        return at + 1
      }
      if (depth >= packDepthMax) return PACK_FAILED
      if (value.constructor === Object) return packObject(target, at, end, value as Record<string, unknown>, depth + 1)
      if (value.constructor === Array) return packArray(target, at, end, value as unknown[], depth + 1)
      if (value instanceof Uint8Array && (value.constructor === Buffer || value.constructor === Uint8Array)) return packBytes(target, at, end, value)
      return PACK_FAILED
    default:
      return PACK_FAILED
  }
}

function packNumber(target: Buffer, at: number, end: number, value: number): number {
  if (at + 9 > end) return PACK_FAILED
  if (value >>> 0 === value) {
    if (value < 0x80) {
      target[at] = value
      return at + 1
    }
    if (value < 0x100) {
      target[at] = 0xcc
      target[at + 1] = value
      return at + 2
    }
    if (value < 0x10000) {
      target[at] = 0xcd
      target[at + 1] = value >> 8
      target[at + 2] = value & 0xff
      return at + 3
    }
    target[at] = 0xce
    target.writeUInt32BE(value, at + 1)
    return at + 5
  }
  if (value >> 0 === value) {
    if (value >= -0x20) {
      target[at] = 0x100 + value
      return at + 1
    }
    if (value >= -0x80) {
      target[at] = 0xd0
      target[at + 1] = value + 0x100
      return at + 2
    }
    if (value >= -0x8000) {
      target[at] = 0xd1
      target.writeInt16BE(value, at + 1)
      return at + 3
    }
    target[at] = 0xd2
    target.writeInt32BE(value, at + 1)
    return at + 5
  }
  target[at] = 0xcb
  target.writeDoubleBE(value, at + 1)
  return at + 9
}

/** packString mirrors msgpackr: short strings by hand (lone surrogates as 3 bytes), longer ones with utf8Write. */
function packString(target: Buffer, at: number, end: number, value: string): number {
  const length = value.length
  const headerBytes = length < 0x20 ? 1 : length < 0x100 ? 2 : length < 0x10000 ? 3 : 5
  if (at + headerBytes + length * 3 > end) return PACK_FAILED
  let bytes: number
  let position = at + headerBytes
  if (length < 0x40) {
    for (let i = 0; i < length; i++) {
      let c1 = value.charCodeAt(i)
      let c2: number
      if (c1 < 0x80) {
        target[position++] = c1
      } else if (c1 < 0x800) {
        target[position++] = (c1 >> 6) | 0xc0
        target[position++] = (c1 & 0x3f) | 0x80
      } else if ((c1 & 0xfc00) === 0xd800 && ((c2 = value.charCodeAt(i + 1)) & 0xfc00) === 0xdc00) {
        c1 = 0x10000 + ((c1 & 0x03ff) << 10) + (c2 & 0x03ff)
        i++
        target[position++] = (c1 >> 18) | 0xf0
        target[position++] = ((c1 >> 12) & 0x3f) | 0x80
        target[position++] = ((c1 >> 6) & 0x3f) | 0x80
        target[position++] = (c1 & 0x3f) | 0x80
      } else {
        target[position++] = (c1 >> 12) | 0xe0
        target[position++] = ((c1 >> 6) & 0x3f) | 0x80
        target[position++] = (c1 & 0x3f) | 0x80
      }
    }
    bytes = position - at - headerBytes
  } else {
    bytes = target.write(value, position, end - position, 'utf8')
  }
  // The header's size follows the byte length; move the bytes when the guess was short (as msgpackr does).
  if (bytes < 0x20) {
    target[at] = 0xa0 | bytes
    return at + 1 + bytes
  }
  if (bytes < 0x100) {
    if (headerBytes < 2) target.copyWithin(at + 2, at + 1, at + 1 + bytes)
    target[at] = 0xd9
    target[at + 1] = bytes
    return at + 2 + bytes
  }
  if (bytes < 0x10000) {
    if (headerBytes < 3) target.copyWithin(at + 3, at + headerBytes, at + headerBytes + bytes)
    target[at] = 0xda
    target[at + 1] = bytes >> 8
    target[at + 2] = bytes & 0xff
    return at + 3 + bytes
  }
  if (headerBytes < 5) target.copyWithin(at + 5, at + headerBytes, at + headerBytes + bytes)
  target[at] = 0xdb
  target.writeUInt32BE(bytes, at + 1)
  return at + 5 + bytes
}

function packBytes(target: Buffer, at: number, end: number, value: Uint8Array): number {
  const length = value.byteLength
  // Large byte strings stay msgpackr's and encodeBodyParts' (a reply's go out by reference).
  if (length >= bytesByReferenceMin) return PACK_FAILED
  const headerBytes = length < 0x100 ? 2 : length < 0x10000 ? 3 : 5
  if (at + headerBytes + length > end) return PACK_FAILED
  if (length < 0x100) {
    target[at] = 0xc4
    target[at + 1] = length
  } else if (length < 0x10000) {
    target[at] = 0xc5
    target[at + 1] = length >> 8
    target[at + 2] = length & 0xff
  } else {
    target[at] = 0xc6
    target.writeUInt32BE(length, at + 1)
  }
  target.set(value, at + headerBytes)
  return at + headerBytes + length
}

function packArray(target: Buffer, at: number, end: number, value: unknown[], depth: number): number {
  const length = value.length
  if (at + 5 > end) return PACK_FAILED
  if (length < 0x10) {
    target[at++] = 0x90 | length
  } else if (length < 0x10000) {
    target[at] = 0xdc
    target[at + 1] = length >> 8
    target[at + 2] = length & 0xff
    at += 3
  } else {
    target[at] = 0xdd
    target.writeUInt32BE(length, at + 1)
    at += 5
  }
  for (let i = 0; i < length && at !== PACK_FAILED; i++) at = packInto(target, at, end, value[i], depth)
  return at
}

/** packObject writes a plain object as msgpackr does with records off: map16, own enumerable keys in for-in order. */
function packObject(target: Buffer, at: number, end: number, value: Record<string, unknown>, depth: number): number {
  if (at + 3 > end) return PACK_FAILED
  const start = at
  target[at] = 0xde
  at += 3
  let size = 0
  for (const key in value) {
    if (!Object.hasOwn(value, key)) continue
    at = packString(target, at, end, key)
    if (at === PACK_FAILED) return at
    at = packInto(target, at, end, value[key], depth)
    if (at === PACK_FAILED) return at
    size++
  }
  if (size > 0xffff) return PACK_FAILED // msgpackr refuses it too, with its own message
  target[start + 1] = size >> 8
  target[start + 2] = size & 0xff
  return at
}
