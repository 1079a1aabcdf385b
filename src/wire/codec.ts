/**
 * Body codec of the wire protocol: MessagePack (msgpackr) for params, results and pages,
 * plus request-id and error conversions shared by server and client.
 *
 * Bytes (Buffer or Uint8Array) travel as MessagePack bin and arrive as Node Buffers that
 * share memory with the received frame; `undefined` survives inside arrays and objects.
 * Record extensions are off: every body decodes on its own, with no per-connection state
 * a hostile peer could grow.
 */
import { randomUUID } from 'node:crypto'
import { Packr } from 'msgpackr'
import { ErrorCode, KvError, isKvError, kvErrorFrom } from '../errors.js'

const packr = new Packr({ useRecords: false, moreTypes: false, mapsAsObjects: true })

/** encodeBody serialises one value to MessagePack. */
export function encodeBody(value: unknown): Buffer {
  return packr.pack(value)
}

/** decodeBody parses a MessagePack body; malformed input becomes KV_ERR_PROTOCOL, never a throw. */
export function decodeBody(body: Buffer): { value: unknown } | { error: KvError } {
  if (body.length === 0) return { value: undefined }
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

// Offsets of the five hex groups of a UUID string, and the byte each group starts at.
const uuidGroups: ReadonlyArray<readonly [start: number, end: number, byte: number]> = [
  [0, 8, 0],
  [9, 13, 4],
  [14, 18, 6],
  [19, 23, 8],
  [24, 36, 10],
]

/** requestIdToBytes packs a UUID string into its 16 raw bytes; a malformed id is KV_ERR_INVALID. */
export function requestIdToBytes(id: string): Buffer {
  const bytes = Buffer.allocUnsafe(16)
  // Buffer.write stops at the first non-hex pair, so a short count means a malformed id.
  let ok = typeof id === 'string' && id.length === 36 && id[8] === '-' && id[13] === '-' && id[18] === '-' && id[23] === '-'
  for (let i = 0; ok && i < uuidGroups.length; i++) {
    const [start, end, byte] = uuidGroups[i]!
    ok = bytes.write(id.slice(start, end), byte, 'hex') === (end - start) / 2
  }
  if (!ok) throw new KvError(ErrorCode.INVALID, `requestId must be a UUID string, got ${JSON.stringify(id)}`)
  return bytes
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
