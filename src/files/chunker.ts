/**
 * Cutting a byte stream into fixed-size chunks without holding more than one chunk, and
 * counting bytes so that a too-large upload fails as soon as it passes the limit (before
 * anything past the limit is read).
 */
import { ErrorCode, KvError } from '../errors.js'

/** FileSource is what putFile accepts: bytes, a string (UTF-8) or any stream of bytes (a Readable is one). */
export type FileSource = Uint8Array | string | AsyncIterable<Uint8Array>

/** tooLarge is the error for a file over `fileBytesMax`. */
export function tooLarge(bytes: number, fileBytesMax: number): KvError {
  return new KvError(ErrorCode.FILE_TOO_LARGE, `file is larger than fileBytesMax (${fileBytesMax} bytes)`, { bytes, fileBytesMax })
}

function asBytes(piece: unknown): Buffer {
  if (Buffer.isBuffer(piece)) return piece
  if (piece instanceof Uint8Array) return Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength)
  throw new KvError(ErrorCode.INVALID, `a file stream must yield Uint8Arrays, got ${typeof piece} (is an encoding set on the stream?)`)
}

async function* once(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes
}

/** sourceIterable turns any FileSource into an iterable of byte pieces. */
export function sourceIterable(source: FileSource): AsyncIterable<Uint8Array> {
  if (typeof source === 'string') return once(Buffer.from(source, 'utf8'))
  if (source instanceof Uint8Array) return once(asBytes(source))
  if (source !== null && typeof source === 'object' && Symbol.asyncIterator in source) return source
  throw new KvError(ErrorCode.INVALID, 'file content must be a Uint8Array, a string or an async iterable of Uint8Arrays')
}

/** fixedChunks yields `chunkBytes`-long Buffers (the last may be shorter); each is a fresh Buffer the caller may keep. */
export async function* fixedChunks(source: AsyncIterable<Uint8Array>, chunkBytes: number, fileBytesMax: number): AsyncGenerator<Buffer> {
  // Pieces are gathered and joined once per chunk, so a small file costs its own size, not a chunk.
  let pieces: Buffer[] = []
  let pending = 0
  let total = 0
  for await (const piece of source) {
    let bytes = asBytes(piece)
    total += bytes.length
    if (total > fileBytesMax) throw tooLarge(total, fileBytesMax)
    while (pending + bytes.length >= chunkBytes) {
      const take = chunkBytes - pending
      pieces.push(bytes.subarray(0, take))
      yield Buffer.concat(pieces, chunkBytes)
      bytes = bytes.subarray(take)
      pieces = []
      pending = 0
    }
    if (bytes.length > 0) {
      pieces.push(bytes)
      pending += bytes.length
    }
  }
  if (pending > 0) yield Buffer.concat(pieces, pending)
}
