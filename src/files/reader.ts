/**
 * Streaming a file (or a byte range of it) out of its chunks, a few chunks ahead of the
 * consumer and never more, checking each chunk's length and, for whole-file reads, the
 * SHA-256 of the content against the manifest.
 */
import { createHash } from 'node:crypto'
import type { DistKV } from '../client/types.js'
import { ErrorCode, KvError } from '../errors.js'
import { chunkKey } from './keys.js'
import type { Manifest } from './manifest.js'

/** ByteRange is an inclusive byte range [start, end]; end = start - 1 means empty. */
export interface ByteRange {
  start: number
  end: number
}

async function fetchChunk(kv: DistKV, manifest: Manifest, index: number): Promise<Buffer> {
  const chunk = await kv.get(chunkKey(manifest.uploadId, index))
  if (chunk === undefined) {
    throw new KvError(ErrorCode.NOT_FOUND, `chunk ${index} of '${manifest.name}' is gone: the file was replaced or deleted while being read`)
  }
  const expected = index === manifest.chunks - 1 ? manifest.size - index * manifest.chunkBytes : manifest.chunkBytes
  if (chunk.length !== expected) {
    throw new KvError(ErrorCode.CORRUPTION, `chunk ${index} of '${manifest.name}' is ${chunk.length} bytes, expected ${expected}`)
  }
  return chunk
}

/** readChunks yields the bytes of `range` of the file, with up to `readsAhead` chunk reads in flight beyond the current one. */
export async function* readChunks(kv: DistKV, manifest: Manifest, range: ByteRange, readsAhead: number): AsyncGenerator<Buffer> {
  if (range.end < range.start) return
  if (manifest.inline !== undefined) {
    yield manifest.inline.subarray(range.start, range.end + 1)
    return
  }
  const first = Math.floor(range.start / manifest.chunkBytes)
  const last = Math.floor(range.end / manifest.chunkBytes)
  const whole = range.start === 0 && range.end === manifest.size - 1
  const hash = whole ? createHash('sha256') : undefined
  const pending: Array<Promise<Buffer>> = []
  let next = first
  const refill = (): void => {
    while (next <= last && pending.length <= readsAhead) {
      const read = fetchChunk(kv, manifest, next++)
      read.catch(() => undefined) // observed when its turn comes; avoid an unhandled rejection meanwhile
      pending.push(read)
    }
  }
  for (let index = first; index <= last; index++) {
    refill()
    const chunk = await pending.shift()!
    hash?.update(chunk)
    const from = index === first ? range.start - index * manifest.chunkBytes : 0
    const to = index === last ? range.end - index * manifest.chunkBytes + 1 : chunk.length
    yield from === 0 && to === chunk.length ? chunk : chunk.subarray(from, to)
  }
  if (hash !== undefined && hash.digest('hex') !== manifest.sha256) {
    throw new KvError(ErrorCode.CORRUPTION, `content of '${manifest.name}' does not match its SHA-256`)
  }
}
