/**
 * Body codec of the wire protocol: MessagePack (msgpackr) for params, results and pages,
 * plus request-id and error conversions shared by server and client.
 *
 * Bytes (Buffer or Uint8Array) travel as MessagePack bin and arrive as Node Buffers that
 * share memory with the received frame; `undefined` survives inside arrays and objects.
 * Record extensions are off: every body decodes on its own, with no per-connection state
 * a hostile peer could grow.
 */
import { randomFillSync, randomUUID } from 'node:crypto'
import { Packr } from 'msgpackr'
import { ErrorCode, KvError, isKvError, kvErrorFrom } from '../errors.js'
import { UNPACK_FAILED, unpackFrom } from './unpack-from.js'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** encodeBody serialises one value to MessagePack. */
export function encodeBody(value: unknown): Buffer {
  return packr.pack(value)
}

/**
 * EncodedBody is a body already in MessagePack form: a handler returns one to have its bytes
 * sent as the reply body as they are (a binary payload built with its own bin header, not
 * copied again by the encoder).
 */
export class EncodedBody {
  /** EncodedBody wraps `bytes`, exactly one MessagePack value. */
  constructor(readonly bytes: Buffer) {}
}

/**
 * bytesByReferenceMin: in a reply that is an array of byte strings (store.read's values), each one
 * at least this large is sent by reference, as a part of the frame's writev, instead of being
 * copied into the encoded body: a 1 MiB file chunk read for a download was otherwise copied into
 * a fresh buffer by the encoder on the replica's thread.
 */
export const bytesByReferenceMin = 16 * 1024

/**
 * encodeBodyParts is encodeBody, except that an array of byte strings and nulls holding at least
 * one large string comes back as parts (encoded headers, small strings, and the large strings
 * themselves) whose concatenation is exactly what encodeBody would give.
 */
export function encodeBodyParts(value: unknown): Buffer | Buffer[] {
  if (!Array.isArray(value) || value.length === 0 || value.length > 0xffff) return encodeBody(value)
  let copied = value.length < 16 ? 1 : 3
  let large = false
  for (const item of value) {
    if (item === null) {
      copied += 1
      continue
    }
    if (!(item instanceof Uint8Array)) return encodeBody(value)
    const length = item.byteLength
    copied += length < 0x100 ? 2 : length < 0x10000 ? 3 : 5
    if (length >= bytesByReferenceMin) large = true
    else copied += length
  }
  if (!large) return encodeBody(value)
  const head = Buffer.allocUnsafe(copied)
  const parts: Buffer[] = []
  let start = 0
  let at = 0
  if (value.length < 16) {
    head[at++] = 0x90 | value.length
  } else {
    head[at] = 0xdc
    head.writeUInt16BE(value.length, at + 1)
    at += 3
  }
  for (const item of value as Array<Uint8Array | null>) {
    if (item === null) {
      head[at++] = 0xc0
      continue
    }
    const length = item.byteLength
    if (length < 0x100) {
      head[at] = 0xc4
      head[at + 1] = length
      at += 2
    } else if (length < 0x10000) {
      head[at] = 0xc5
      head.writeUInt16BE(length, at + 1)
      at += 3
    } else {
      head[at] = 0xc6
      head.writeUInt32BE(length, at + 1)
      at += 5
    }
    if (length >= bytesByReferenceMin) {
      parts.push(head.subarray(start, at), Buffer.from(item.buffer, item.byteOffset, length))
      start = at
    } else {
      head.set(item, at)
      at += length
    }
  }
  if (start < at) parts.push(head.subarray(start, at))
  return parts
}

/** decodeBody parses a MessagePack body; malformed input becomes KV_ERR_PROTOCOL, never a throw. */
export function decodeBody(body: Buffer): { value: unknown } | { error: KvError } {
  if (body.length === 0) return { value: undefined }
  // The common bodies are read by unpackFrom; msgpackr reads (or refuses) the rest.
  const value = unpackFrom(body)
  if (value !== UNPACK_FAILED) return { value }
  try {
    return { value: packr.unpack(body) }
  } catch (error) {
    return { error: new KvError(ErrorCode.PROTOCOL, `malformed frame body: ${(error as Error).message}`) }
  }
}

/** newRequestId returns a random (v4) UUID string. */
export function newRequestId(): string {
  return randomUUID()
}

/** ID_POOL_IDS: how many ids one random slab serves (one randomFillSync per this many requests). */
const ID_POOL_IDS = 256
let idPool = Buffer.alloc(0)
let idPoolAt = 0

/**
 * newRequestIdBytes returns a fresh random id in the v4 UUID layout as its 16 raw bytes, what
 * requestIdToBytes(newRequestId()) gives without formatting a string and parsing it back (~1 µs
 * of every request a client sends without an id of its own). Each id is a view of a slab of
 * random bytes that is never refilled (a spent slab is replaced by a new one, so an id held
 * by a pending request is never overwritten): no allocation or copy per id, only the view.
 */
export function newRequestIdBytes(): Buffer {
  if (idPoolAt === idPool.length) {
    idPool = randomFillSync(Buffer.allocUnsafeSlow(16 * ID_POOL_IDS))
    idPoolAt = 0
  }
  const bytes = idPool.subarray(idPoolAt, idPoolAt + 16)
  idPoolAt += 16
  bytes[6] = (bytes[6]! & 0x0f) | 0x40 // version 4
  bytes[8] = (bytes[8]! & 0x3f) | 0x80 // RFC 4122 variant
  return bytes
}

// hexValue maps a character code to its hex digit value, or 255 when it is not a hex digit.
const hexValue = new Uint8Array(256).fill(255)
for (let digit = 0; digit < 16; digit++) {
  const lower = digit.toString(16)
  hexValue[lower.charCodeAt(0)] = digit
  hexValue[lower.toUpperCase().charCodeAt(0)] = digit
}

/** requestIdToBytes packs a UUID string into its 16 raw bytes; a malformed id is KV_ERR_INVALID. */
export function requestIdToBytes(id: string): Buffer {
  // Hand-rolled: this runs once per request, and regex + slices + hex decoding cost more than the rest of the send.
  if (typeof id !== 'string' || id.length !== 36 || id.charCodeAt(8) !== 45 || id.charCodeAt(13) !== 45 || id.charCodeAt(18) !== 45 || id.charCodeAt(23) !== 45) {
    throw invalidRequestId(id)
  }
  const bytes = Buffer.allocUnsafe(16)
  let at = 0
  for (let i = 0; i < 16; i++) {
    if (at === 8 || at === 13 || at === 18 || at === 23) at++
    const high = hexValue[id.charCodeAt(at)]!
    const low = hexValue[id.charCodeAt(at + 1)]!
    if ((high | low) === 255) throw invalidRequestId(id)
    bytes[i] = (high << 4) | low
    at += 2
  }
  return bytes
}

function invalidRequestId(id: unknown): KvError {
  return new KvError(ErrorCode.INVALID, `requestId must be a UUID string, got ${JSON.stringify(id)}`)
}

/**
 * Latin1Buffer names Buffer's own latin1 methods (on every Buffer in Node, not in its typings):
 * toString/write with an encoding first look the encoding up and check their arguments, which
 * for a 16-byte id was more than the copy itself.
 */
type Latin1Buffer = Buffer & { latin1Slice(start: number, end: number): string; latin1Write(text: string, offset: number, length: number): number }

/** requestIdKey is the cheapest string form of a raw id (16 latin1 characters), for looking calls up in a Map. */
export function requestIdKey(bytes: Buffer): string {
  return (bytes as Latin1Buffer).latin1Slice(0, 16)
}

/** writeRequestId writes an id given as its bytes or as its requestIdKey into `target` at `offset`. */
export function writeRequestId(target: Buffer, offset: number, id: Uint8Array | string): void {
  if (typeof id === 'string') (target as Latin1Buffer).latin1Write(id, offset, 16)
  else target.set(id, offset)
}

/** requestIdFromBytes formats 16 raw bytes as a lowercase UUID string. */
export function requestIdFromBytes(bytes: Buffer): string {
  const hex = bytes.toString('hex', 0, 16)
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`
}

/** errorToWire turns a thrown value into the body of an ERROR frame; non-KvErrors become INTERNAL. */
export function errorToWire(error: unknown): { code: string; message: string; details?: Record<string, unknown> } {
  if (isKvError(error)) return error.toJSON()
  return { code: ErrorCode.INTERNAL, message: `internal error: ${error instanceof Error ? error.message : String(error)}` }
}

/** errorFromWire rebuilds the KvError carried by an ERROR frame body. */
export function errorFromWire(body: Buffer): KvError {
  const decoded = decodeBody(body)
  if ('error' in decoded) return decoded.error
  const value = decoded.value
  if (value === null || typeof value !== 'object') return new KvError(ErrorCode.PROTOCOL, 'malformed error frame')
  return kvErrorFrom(value as Record<string, unknown>)
}
