/**
 * The manifest: the one key that makes a file exist. It is written after every chunk of its
 * upload is durable, so a reader that finds a manifest finds all of its chunks (until the
 * file is replaced or deleted and the collector's grace period has passed).
 */
import { ErrorCode, KvError } from '../errors.js'
import { checkFileName, uploadIdPattern } from './keys.js'

/** manifestVersion is the format version written in every manifest. */
export const manifestVersion = 1

/** contentTypeBytesMax: longest content type accepted. */
export const contentTypeBytesMax = 256

/** FileInfo is what a listing and a HEAD show about a file. */
export interface FileInfo {
  name: string
  size: number
  contentType: string
  /** sha256: hex digest of the whole content. */
  sha256: string
  /** etag: a strong HTTP entity tag (quoted), derived from sha256. */
  etag: string
  /** created: when the upload committed, ISO 8601. */
  created: string
}

/** Manifest is the stored description of one file: its info plus where its chunks are. */
export interface Manifest extends FileInfo {
  v: typeof manifestVersion
  /** uploadId: the upload whose chunks hold the content; chunk i is chunkKey(uploadId, i). */
  uploadId: string
  chunkBytes: number
  /** chunks: how many chunks; every one is chunkBytes long except the last. 0 for an inline file. */
  chunks: number
  /** inline: the whole content of a small file, stored in the manifest itself (no chunks, one write). */
  inline?: Buffer
}

/** inlineTag starts a manifest that carries its file's content: 01, u32 BE JSON length, JSON, content. */
const inlineTag = 0x01

/** etagOf derives the entity tag from the content's SHA-256 (128 bits are plenty to tell versions apart). */
export function etagOf(sha256: string): string {
  return `"${sha256.slice(0, 32)}"`
}

/** checkContentType validates a content type: printable ASCII, at most contentTypeBytesMax. */
export function checkContentType(value: unknown): string {
  if (value === undefined || value === '') return 'application/octet-stream'
  if (typeof value !== 'string') throw new KvError(ErrorCode.INVALID, `contentType must be a string, got ${typeof value}`)
  if (value.length > contentTypeBytesMax) {
    throw new KvError(ErrorCode.INVALID, `contentType is longer than contentTypeBytesMax (${contentTypeBytesMax})`, { contentTypeBytesMax })
  }
  if (!/^[\x20-\x7e]+$/.test(value)) throw new KvError(ErrorCode.INVALID, 'contentType must be printable ASCII')
  return value
}

/** encodeManifest serializes a manifest for storage: JSON, or a framed JSON + content for an inline file. */
export function encodeManifest(manifest: Manifest): Buffer {
  // Every field but the content: a field added to Manifest is stored without touching this.
  const { inline, ...fields } = manifest
  const json = JSON.stringify(fields)
  if (inline === undefined) return Buffer.from(json, 'utf8')
  // Framed in place: one allocation and one copy of the content, not a JSON buffer, a head and a concat.
  const jsonBytes = Buffer.byteLength(json, 'utf8')
  const out = Buffer.allocUnsafe(5 + jsonBytes + inline.length)
  out[0] = inlineTag
  out.writeUInt32BE(jsonBytes, 1)
  out.write(json, 5, 'utf8')
  out.set(inline, 5 + jsonBytes)
  return out
}

function splitManifest(bytes: Buffer): { json: Buffer; inline?: Buffer } {
  if (bytes[0] !== inlineTag) return { json: bytes }
  const length = bytes.length >= 5 ? bytes.readUInt32BE(1) : Infinity
  if (5 + length > bytes.length) throw new KvError(ErrorCode.CORRUPTION, 'file manifest is truncated')
  return { json: bytes.subarray(5, 5 + length), inline: bytes.subarray(5 + length) }
}

/** decodeManifest parses and checks a stored manifest; a malformed one is KV_ERR_CORRUPTION. */
export function decodeManifest(bytes: Buffer): Manifest {
  const { json, inline } = splitManifest(bytes)
  let value: unknown
  try {
    value = JSON.parse(json.toString('utf8'))
  } catch {
    throw new KvError(ErrorCode.CORRUPTION, 'file manifest is not valid JSON')
  }
  const m = value as Partial<Manifest>
  const ok =
    m !== null &&
    typeof m === 'object' &&
    m.v === manifestVersion &&
    typeof m.name === 'string' &&
    Number.isSafeInteger(m.size) &&
    m.size! >= 0 &&
    typeof m.contentType === 'string' &&
    typeof m.sha256 === 'string' &&
    typeof m.etag === 'string' &&
    typeof m.created === 'string' &&
    typeof m.uploadId === 'string' &&
    uploadIdPattern.test(m.uploadId) &&
    Number.isSafeInteger(m.chunkBytes) &&
    m.chunkBytes! > 0 &&
    (inline === undefined ? m.chunks === Math.ceil(m.size! / m.chunkBytes!) : m.chunks === 0 && inline.length === m.size)
  if (!ok) throw new KvError(ErrorCode.CORRUPTION, 'file manifest is malformed')
  checkFileName(m.name)
  return inline === undefined ? (m as Manifest) : { ...(m as Manifest), inline }
}

/** infoOf is the public part of a manifest. */
export function infoOf(m: Manifest): FileInfo {
  return { name: m.name, size: m.size, contentType: m.contentType, sha256: m.sha256, etag: m.etag, created: m.created }
}

/** UploadRecord is the value of an upload record key; see keys.ts and collector.ts. */
export interface UploadRecord {
  state: 'uploading' | 'done' | 'garbage'
  /** deadline: epoch ms after which an upload still 'uploading' will never commit. */
  deadline: number
  /** since: epoch ms when the record entered 'garbage' (its chunks are deleted after a grace period). */
  since?: number
}

/** decodeRecord parses an upload record; an unreadable one counts as expired garbage so it is collected. */
export function decodeRecord(bytes: Buffer | undefined): UploadRecord | undefined {
  if (bytes === undefined) return undefined
  try {
    const r = JSON.parse(bytes.toString('utf8')) as UploadRecord
    if ((r.state === 'uploading' || r.state === 'done' || r.state === 'garbage') && typeof r.deadline === 'number') return r
  } catch {
    // fall through
  }
  return { state: 'garbage', deadline: 0, since: 0 }
}
