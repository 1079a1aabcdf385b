/**
 * A MessagePack reader for the common bodies (a request's `[method, params]`, a small reply):
 * msgpackr's unpack sets up per call (a DataView attached to each body, native string
 * extraction for the whole body) what costs more than reading `[method, {key, value}]` itself,
 * about a fifth of the server's CPU per request.
 *
 * It gives what msgpackr gives with the codec's options (records off, maps as plain objects
 * with `__proto__` renamed `__proto_`, bin as Buffers sharing the body's memory, fixext1 0/0 as
 * `undefined`) and declines anything else (other extensions, float32, 64-bit integers, maps with
 * keys that are not strings, nesting deeper than unpackDepthMax, truncated or trailing bytes):
 * decodeBody then hands the body to msgpackr, which decodes it or throws its own error. Strings
 * are read as UTF-8 with invalid sequences replaced (Buffer's decoder). Like msgpackr it never
 * allocates more array slots than the body has bytes (allocationBudget), so a hostile length
 * costs nothing.
 */

/** UNPACK_FAILED is returned when the body is not one this reader takes. */
export const UNPACK_FAILED: unique symbol = Symbol('UNPACK_FAILED')

/** unpackDepthMax bounds the reader's recursion; deeper bodies go to msgpackr. */
const unpackDepthMax = 32

// Reader state for the body being read (reads are synchronous and never re-entered).
let src: Buffer = Buffer.alloc(0)
let position = 0
let srcEnd = 0
let allocationBudget = 0
let failed = false

/** unpackFrom reads one value filling `body` exactly, or returns UNPACK_FAILED. */
export function unpackFrom(body: Buffer): unknown {
  src = body
  position = 0
  srcEnd = body.length
  allocationBudget = body.length
  failed = false
  const value = read(0)
  src = emptyBuffer // do not keep the body alive
  if (failed || position !== srcEnd) return UNPACK_FAILED
  return value
}

const emptyBuffer = Buffer.alloc(0)

function fail(): undefined {
  failed = true
  position = srcEnd + 1
  return undefined
}

function read(depth: number): unknown {
  if (position >= srcEnd) return fail()
  const token = src[position++]!
  if (token < 0x80) return token
  if (token < 0x90) return readMap(token - 0x80, depth)
  if (token < 0xa0) return readArray(token - 0x90, depth)
  if (token < 0xc0) return readString(token - 0xa0)
  if (token >= 0xe0) return token - 0x100
  switch (token) {
    case 0xc0:
      return null
    case 0xc2:
      return false
    case 0xc3:
      return true
    case 0xc4:
      return readBytes(readLength(1))
    case 0xc5:
      return readBytes(readLength(2))
    case 0xc6:
      return readBytes(readLength(4))
    case 0xcb:
      if (position + 8 > srcEnd) return fail()
      position += 8
      return src.readDoubleBE(position - 8)
    case 0xcc:
      return readLength(1)
    case 0xcd:
      return readLength(2)
    case 0xce:
      return readLength(4)
    case 0xd0:
      if (position + 1 > srcEnd) return fail()
      return src.readInt8(position++)
    case 0xd1:
      if (position + 2 > srcEnd) return fail()
      position += 2
      return src.readInt16BE(position - 2)
    case 0xd2:
      if (position + 4 > srcEnd) return fail()
      position += 4
      return src.readInt32BE(position - 4)
    case 0xd4:
      // fixext1 type 0 data 0 is msgpackr's undefined; any other extension is msgpackr's to read.
      if (position + 2 > srcEnd || src[position] !== 0 || src[position + 1] !== 0) return fail()
      position += 2
      return undefined
    case 0xd9:
      return readString(readLength(1))
    case 0xda:
      return readString(readLength(2))
    case 0xdb:
      return readString(readLength(4))
    case 0xdc:
      return readArray(readLength(2), depth)
    case 0xdd:
      return readArray(readLength(4), depth)
    case 0xde:
      return readMap(readLength(2), depth)
    case 0xdf:
      return readMap(readLength(4), depth)
    default:
      return fail()
  }
}

/** readLength reads a big-endian unsigned integer of 1, 2 or 4 bytes (-1 past the end, which every caller refuses). */
function readLength(bytes: 1 | 2 | 4): number {
  if (position + bytes > srcEnd) {
    fail()
    return -1
  }
  const at = position
  position += bytes
  return bytes === 1 ? src[at]! : bytes === 2 ? src.readUInt16BE(at) : src.readUInt32BE(at)
}

function readBytes(length: number): Buffer | undefined {
  if (length < 0 || position + length > srcEnd) return fail()
  position += length
  return src.subarray(position - length, position)
}

function readString(length: number): string | undefined {
  if (length < 0 || position + length > srcEnd) return fail()
  const start = position
  position += length
  if (length < 16) {
    // Short ASCII (method names, keys) by hand: cheaper than a call into the decoder. Buffer's
    // own latin1Slice/utf8Slice (not in its typings) skip toString's encoding look-up and checks.
    let ascii = true
    for (let i = start; i < position; i++) if (src[i]! >= 0x80) ascii = false
    if (ascii) {
      switch (length) {
        case 0:
          return ''
        case 1:
          return String.fromCharCode(src[start]!)
        case 2:
          return String.fromCharCode(src[start]!, src[start + 1]!)
        case 3:
          return String.fromCharCode(src[start]!, src[start + 1]!, src[start + 2]!)
        default:
          return (src as Buffer & { latin1Slice(start: number, end: number): string }).latin1Slice(start, position)
      }
    }
  }
  return (src as Buffer & { utf8Slice(start: number, end: number): string }).utf8Slice(start, position)
}

function readArray(length: number, depth: number): unknown[] | undefined {
  if (length < 0 || depth >= unpackDepthMax || length > srcEnd - position || (allocationBudget -= length) < 0) return fail()
  const array = new Array<unknown>(length)
  for (let i = 0; i < length && !failed; i++) array[i] = read(depth + 1)
  return array
}

function readMap(length: number, depth: number): Record<string, unknown> | undefined {
  if (length < 0 || depth >= unpackDepthMax || length > (srcEnd - position) / 2) return fail()
  const object: Record<string, unknown> = {}
  for (let i = 0; i < length && !failed; i++) {
    const key = read(depth + 1)
    if (typeof key !== 'string') return fail()
    object[key === '__proto__' ? '__proto_' : key] = read(depth + 1)
  }
  return object
}
