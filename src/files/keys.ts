/**
 * The reserved key namespace that holds files, and the rules for file names.
 *
 * Every file key starts with the byte 0xFF, which never begins a UTF-8 string, so no key
 * written as a string can collide with a file key, and a key listing bounded below 0xFF
 * (what the HTTP API and the web UI show by default) never shows them:
 *
 *   FF 'F' 'm' <name>                        manifest of the file <name> (JSON), the commit point
 *   FF 'F' 'c' <upload id, 32 hex> <index, 8 hex>   chunk <index> of one upload
 *   FF 'F' 'r' <name> 00 <upload id, 32 hex> upload record: lets a collector find the chunks
 *                                            of failed and replaced uploads of <name>
 *
 * Chunk keys contain no '{', so a cluster spreads one file's chunks over every shard.
 */
import { ErrorCode, KvError } from '../errors.js'

/** fileNamespace is the first byte of every key that belongs to the file store. */
export const fileNamespace = 0xff

/** fileNameBytesMax: longest file name, in UTF-8 bytes. */
export const fileNameBytesMax = 1024

const manifestTag = Buffer.from([fileNamespace, 0x46, 0x6d]) // FF 'F' 'm'
const chunkTag = Buffer.from([fileNamespace, 0x46, 0x63]) // FF 'F' 'c'
const recordTag = Buffer.from([fileNamespace, 0x46, 0x72]) // FF 'F' 'r'

/** uploadIdPattern: an upload id is 16 random bytes in lower-case hex. */
export const uploadIdPattern = /^[0-9a-f]{32}$/

/** checkFileName validates a file name: 1..fileNameBytesMax UTF-8 bytes, no control characters. */
export function checkFileName(name: unknown): string {
  if (typeof name !== 'string') throw new KvError(ErrorCode.INVALID, `file name must be a string, got ${typeof name}`)
  const bytes = Buffer.byteLength(name, 'utf8')
  if (bytes === 0) throw new KvError(ErrorCode.INVALID, 'file name must not be empty')
  if (bytes > fileNameBytesMax) {
    throw new KvError(ErrorCode.INVALID, `file name is ${bytes} bytes, more than fileNameBytesMax (${fileNameBytesMax})`, {
      bytes,
      fileNameBytesMax,
    })
  }
  // A NUL would break the record key's name terminator; other controls break headers and terminals.
  if (/[\u0000-\u001f\u007f]/.test(name)) throw new KvError(ErrorCode.INVALID, 'file name must not contain control characters')
  // Lone surrogates do not survive UTF-8, so the stored name would differ from the given one.
  if (Buffer.from(name, 'utf8').toString('utf8') !== name) throw new KvError(ErrorCode.INVALID, 'file name must be well-formed Unicode')
  return name
}

/** manifestKey is the key of the manifest of file `name`. */
export function manifestKey(name: string): Buffer {
  return Buffer.concat([manifestTag, Buffer.from(name, 'utf8')])
}

/** manifestPrefix is the key prefix of the manifests of every file whose name starts with `prefix`. */
export function manifestPrefix(prefix: string): Buffer {
  return manifestKey(prefix)
}

/** nameOfManifestKey recovers the file name from a manifest key. */
export function nameOfManifestKey(key: Buffer): string {
  return key.subarray(manifestTag.length).toString('utf8')
}

/** chunkKey is the key of chunk `index` of upload `uploadId`. */
export function chunkKey(uploadId: string, index: number): Buffer {
  return Buffer.concat([chunkTag, Buffer.from(uploadId + index.toString(16).padStart(8, '0'), 'latin1')])
}

/** chunkPrefix is the key prefix of every chunk of upload `uploadId`. */
export function chunkPrefix(uploadId: string): Buffer {
  return Buffer.concat([chunkTag, Buffer.from(uploadId, 'latin1')])
}

/** recordKey is the key of the upload record of upload `uploadId` of file `name`. */
export function recordKey(name: string, uploadId: string): Buffer {
  return Buffer.concat([recordPrefix(name), Buffer.from(uploadId, 'latin1')])
}

/** recordPrefix is the key prefix of every upload record of file `name` (the NUL ends the name). */
export function recordPrefix(name: string): Buffer {
  return Buffer.concat([recordTag, Buffer.from(name, 'utf8'), Buffer.from([0])])
}

/** allRecordsPrefix is the key prefix of every upload record of every file. */
export const allRecordsPrefix: Buffer = recordTag

/** parseRecordKey splits a record key into its file name and upload id. */
export function parseRecordKey(key: Buffer): { name: string; uploadId: string } | undefined {
  const nul = key.lastIndexOf(0)
  if (nul < recordTag.length || key.length - nul - 1 !== 32) return undefined
  const uploadId = key.subarray(nul + 1).toString('latin1')
  if (!uploadIdPattern.test(uploadId)) return undefined
  return { name: key.subarray(recordTag.length, nul).toString('utf8'), uploadId }
}

/** userKeysEnd is the first key of the reserved namespace: a listing with `lt: userKeysEnd` shows user keys only. */
export const userKeysEnd: Buffer = Buffer.from([fileNamespace])
