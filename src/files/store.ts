/**
 * FileStore: files of any size (up to `fileBytesMax`) on top of any DistKV, as fixed-size
 * chunks plus a manifest written last (docs/files.md).
 *
 * Fault model: the uploading process may die at any point, and a stream may end early or
 * fail. Before the manifest write nothing is visible; the upload record written first lets
 * the collector find and delete the chunks later. Two uploads to one name each write their
 * own chunks under their own upload id, so the manifest that lands last names a complete
 * set of chunks, never a mix. Memory per upload is at most (chunkWritesInflight + 1)
 * chunks; per download (chunkReadsAhead + 1) chunks.
 */
import { createHash, randomUUID } from 'node:crypto'
import { Readable } from 'node:stream'
import type { DistKV } from '../client/types.js'
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import { fixedChunks, sourceIterable, type FileSource } from './chunker.js'
import { clockSkewMarginMs, collectAll, collectName, currentUploadId, deleteChunks, type SweepResult } from './collector.js'
import { checkFileName, chunkKey, manifestKey, manifestPrefix, nameOfManifestKey, recordKey } from './keys.js'
import { checkContentType, decodeManifest, encodeManifest, etagOf, infoOf, manifestVersion, type FileInfo, type Manifest } from './manifest.js'
import { readChunks, type ByteRange } from './reader.js'
import { Slots } from './slots.js'

/** FileStoreOptions configures a FileStore; every field has a default. */
export interface FileStoreOptions {
  /** chunkBytes: size of each chunk, 4 KiB .. valueBytesMax (default 1 MiB). */
  chunkBytes?: number
  /** fileBytesMax: largest file accepted (default 256 MiB); larger uploads fail with KV_ERR_FILE_TOO_LARGE. */
  fileBytesMax?: number
  /** uploadTimeoutMs: an upload must commit within this long, or it fails and its chunks are collected (default 30 min). */
  uploadTimeoutMs?: number
  /** garbageGraceMs: how long a replaced or deleted file stays readable by readers that already began (default 60 s). */
  garbageGraceMs?: number
  /** chunkWritesInflight: chunk writes in flight per upload (default 4). */
  chunkWritesInflight?: number
  /** storeChunkWritesInflight: chunk writes in flight across all uploads of this store (default 8); the rest wait, unsent. */
  storeChunkWritesInflight?: number
  /** inlineBytesMax: files up to this size live inside their manifest: one write, no chunks (default 32 KiB). */
  inlineBytesMax?: number
  /** chunkReadsAhead: chunks fetched ahead of the reader per download (default 2). */
  chunkReadsAhead?: number
  /** now: the clock (injected by tests). */
  now?: () => number
}

/** fileStoreDefaults are the defaults of FileStoreOptions. */
export const fileStoreDefaults = Object.freeze({
  chunkBytes: 1024 * 1024,
  fileBytesMax: 256 * 1024 * 1024,
  uploadTimeoutMs: 30 * 60_000,
  garbageGraceMs: 60_000,
  chunkWritesInflight: 4,
  storeChunkWritesInflight: 8,
  chunkReadsAhead: 2,
  inlineBytesMax: 32 * 1024,
})

/** manifestChunksMax: most chunks one file may have (fileBytesMax / chunkBytes must stay under it). */
export const manifestChunksMax = 1 << 20

/** listFilesLimitMax: most files one listFiles page returns. */
export const listFilesLimitMax = 1000

/** PutFileOptions: the content type stored with the file (default application/octet-stream). */
export interface PutFileOptions {
  contentType?: string
}

/** GetFileOptions: an optional byte range, inclusive at both ends, already checked against the size. */
export interface GetFileOptions {
  range?: ByteRange
}

/** FileRead is an open file: its info and a stream of its bytes (or of the range asked for). */
export interface FileRead {
  info: FileInfo
  stream: Readable
}

/** OpenFile is a file whose manifest was read: `read` streams its bytes as of that manifest. */
export interface OpenFile {
  info: FileInfo
  read(range?: ByteRange): Readable
  /** inline: the whole content when the manifest carries it (a small file), so it can be sent without a stream. */
  inline?: Buffer
}

/** ListFilesOptions: name prefix, a cursor (the last name of the previous page) and a page size. */
export interface ListFilesOptions {
  prefix?: string
  after?: string
  limit?: number
}

/** FileList is one page of a listing; `next` is set when there may be more. */
export interface FileList {
  items: FileInfo[]
  next?: string
}

function integerOption(options: Record<string, unknown>, field: string, min: number, max: number, fallback: number): number {
  const value = options[field]
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new KvError(ErrorCode.INVALID, `${field} must be an integer from ${min} to ${max}, got ${String(value)}`, { field })
  }
  return value
}

type Config = Required<Omit<FileStoreOptions, 'now'>> & { now: () => number }

function checkOptions(options: FileStoreOptions): Config {
  const o = options as Record<string, unknown>
  const chunkBytes = integerOption(o, 'chunkBytes', 4096, Limits.valueBytesMax, fileStoreDefaults.chunkBytes)
  const fileBytesMax = integerOption(o, 'fileBytesMax', 0, chunkBytes * manifestChunksMax, fileStoreDefaults.fileBytesMax)
  return Object.freeze({
    chunkBytes,
    fileBytesMax,
    uploadTimeoutMs: integerOption(o, 'uploadTimeoutMs', 1000, 24 * 3600_000, fileStoreDefaults.uploadTimeoutMs),
    garbageGraceMs: integerOption(o, 'garbageGraceMs', 0, 3600_000, fileStoreDefaults.garbageGraceMs),
    chunkWritesInflight: integerOption(o, 'chunkWritesInflight', 1, 64, fileStoreDefaults.chunkWritesInflight),
    storeChunkWritesInflight: integerOption(o, 'storeChunkWritesInflight', 1, 1024, fileStoreDefaults.storeChunkWritesInflight),
    chunkReadsAhead: integerOption(o, 'chunkReadsAhead', 0, 64, fileStoreDefaults.chunkReadsAhead),
    inlineBytesMax: integerOption(o, 'inlineBytesMax', 0, Math.min(chunkBytes, 256 * 1024), Math.min(chunkBytes, fileStoreDefaults.inlineBytesMax)),
    now: options.now ?? Date.now,
  })
}

/** FileStore stores and serves files through one DistKV. */
export class FileStore {
  /** config is the validated, frozen configuration. */
  readonly config: Readonly<Config>
  /** writeSlots bounds the chunk writes in flight across every upload of this store. */
  readonly writeSlots: Slots

  constructor(
    private readonly kv: DistKV,
    options: FileStoreOptions = {},
  ) {
    this.config = checkOptions(options)
    this.writeSlots = new Slots(this.config.storeChunkWritesInflight)
  }

  /** putFile stores `source` as file `name`, replacing any file of that name once it is complete. */
  async putFile(name: string, source: FileSource, options: PutFileOptions = {}): Promise<FileInfo> {
    checkFileName(name)
    const contentType = checkContentType(options.contentType)
    if (source instanceof Uint8Array && source.length <= this.config.inlineBytesMax && source.length <= this.config.fileBytesMax) {
      // Whole small content in hand (an HTTP body read at once): no generators, no chunk copy.
      return this.putInline(name, Buffer.isBuffer(source) ? source : Buffer.from(source.buffer, source.byteOffset, source.byteLength), contentType)
    }
    const chunks = fixedChunks(sourceIterable(source), this.config.chunkBytes, this.config.fileBytesMax)[Symbol.asyncIterator]()
    // Look at most two chunks ahead: a small file is stored inline, in one write.
    const first = await chunks.next()
    const second = first.done === true ? first : await chunks.next()
    if (second.done === true && (first.done === true || first.value.length <= this.config.inlineBytesMax)) {
      return this.putInline(name, first.done === true ? Buffer.alloc(0) : first.value, contentType)
    }
    return this.putChunked(name, resume([first, second], chunks), contentType)
  }

  private manifestOf(name: string, contentType: string, uploadId: string, size: number, sha256: string, chunks: number): Manifest {
    return {
      v: manifestVersion,
      name,
      size,
      contentType,
      sha256,
      etag: etagOf(sha256),
      created: new Date(this.config.now()).toISOString(),
      uploadId,
      chunkBytes: this.config.chunkBytes,
      chunks,
    }
  }

  private async putInline(name: string, content: Buffer, contentType: string): Promise<FileInfo> {
    const sha256 = createHash('sha256').update(content).digest('hex')
    const manifest = this.manifestOf(name, contentType, newUploadId(), content.length, sha256, 0)
    manifest.inline = content
    // One write and nothing else. What this replaces is not read first: that linearizable read
    // was a fifth of a small upload's CPU through a cluster. An inline predecessor leaves
    // nothing behind; a chunked one leaves its 'done' record, through which the sweep (or the
    // next collect of this name) finds and removes its chunks.
    await this.kv.put(manifestKey(name), encodeManifest(manifest))
    return infoOf(manifest)
  }

  private async putChunked(name: string, chunks: AsyncIterable<Buffer>, contentType: string): Promise<FileInfo> {
    const uploadId = newUploadId()
    const deadline = this.config.now() + this.config.uploadTimeoutMs
    // Whether a file of this name existed before our commit decides whether committing leaves
    // garbage to collect; read alongside the record write, so it costs no round trip of its own.
    const replacing = this.kv.get(manifestKey(name)).then((previous) => previous !== undefined, () => true)
    // The record goes first, durably: from now on the collector can find whatever we write.
    await this.kv.put(recordKey(name, uploadId), JSON.stringify({ state: 'uploading', deadline }))
    let manifest: Manifest
    try {
      const { size, sha256, chunks: count } = await this.writeChunks(uploadId, chunks)
      if (this.config.now() > deadline - clockSkewMarginMs) {
        throw new KvError(ErrorCode.TIMEOUT, `upload did not finish within uploadTimeoutMs (${this.config.uploadTimeoutMs})`)
      }
      manifest = this.manifestOf(name, contentType, uploadId, size, sha256, count)
      // Chunks were written with sync: false; make them durable before the manifest points at them.
      await this.kv.sync()
      await this.kv.put(manifestKey(name), encodeManifest(manifest))
    } catch (error) {
      await this.abandon(name, uploadId)
      throw error
    }
    await this.kv.put(recordKey(name, uploadId), JSON.stringify({ state: 'done', deadline }), { sync: false })
    // A first upload of a name supersedes nothing, so the collection (a prefix query, which a
    // cluster gathers from every shard) is skipped. NB: an upload to the same name committed
    // concurrently (after our read, before our manifest) is then left to the periodic sweep.
    if (await replacing) await this.collect(name)
    return infoOf(manifest)
  }

  private async writeChunks(uploadId: string, chunks: AsyncIterable<Buffer>): Promise<{ size: number; sha256: string; chunks: number }> {
    const hash = createHash('sha256')
    const inflight = new Set<Promise<void>>()
    let failure: unknown
    let size = 0
    let index = 0
    try {
      for await (const chunk of chunks) {
        hash.update(chunk)
        size += chunk.length
        await this.writeSlots.acquire()
        const write: Promise<void> = this.kv
          .put(chunkKey(uploadId, index++), chunk, { sync: false })
          .catch((error: unknown) => {
            failure ??= error
          })
          .finally(() => {
            this.writeSlots.release()
            inflight.delete(write)
          })
        inflight.add(write)
        // Waiting here is the back-pressure that keeps an upload's memory flat.
        while (inflight.size >= this.config.chunkWritesInflight) await Promise.race(inflight)
        if (failure !== undefined) break
      }
    } finally {
      // Even when the source failed: abandon() must not race chunk writes still in flight.
      await Promise.all(inflight)
    }
    if (failure !== undefined) throw failure
    return { size, sha256: hash.digest('hex'), chunks: index }
  }

  /** abandon removes what a failed upload wrote, best effort: the collector retries what this misses. */
  private async abandon(name: string, uploadId: string): Promise<void> {
    try {
      // A manifest write that failed on our side may still have landed: then the chunks are live.
      if ((await currentUploadId(this.kv, name)) === uploadId) return
      await deleteChunks(this.kv, uploadId)
      await this.kv.del(recordKey(name, uploadId))
    } catch {
      // The record stays; the collector removes the rest after the upload's deadline.
    }
  }

  /** statFile returns a file's info, or undefined when there is no such file. */
  async statFile(name: string): Promise<FileInfo | undefined> {
    const manifest = await this.manifest(name)
    return manifest === undefined ? undefined : infoOf(manifest)
  }

  /** openFile reads a file's manifest once: its info now, its bytes (or a range) when `read` is called. */
  async openFile(name: string): Promise<OpenFile | undefined> {
    const manifest = await this.manifest(name)
    if (manifest === undefined) return undefined
    const file: OpenFile = { info: infoOf(manifest), read: (range?: ByteRange) => this.stream(manifest, range) }
    if (manifest.inline !== undefined) file.inline = manifest.inline
    return file
  }

  /** getFile opens file `name` (or a byte range of it) for streaming; undefined when there is no such file. */
  async getFile(name: string, options: GetFileOptions = {}): Promise<FileRead | undefined> {
    const manifest = await this.manifest(name)
    if (manifest === undefined) return undefined
    return { info: infoOf(manifest), stream: this.stream(manifest, options.range) }
  }

  private stream(manifest: Manifest, given: ByteRange | undefined): Readable {
    const range = given ?? { start: 0, end: manifest.size - 1 }
    if (!(Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end) && range.start >= 0 && range.end < manifest.size && range.start <= range.end + 1)) {
      throw new KvError(ErrorCode.INVALID, `range ${range.start}-${range.end} is outside the file (size ${manifest.size})`, { size: manifest.size })
    }
    const chunks = readChunks(this.kv, manifest, range, this.config.chunkReadsAhead)
    return Readable.from(chunks, { objectMode: false, highWaterMark: 64 * 1024 })
  }

  /** readFile returns a whole file as one Buffer: for small files only (the stream is the way for big ones). */
  async readFile(name: string): Promise<Buffer | undefined> {
    const file = await this.getFile(name)
    if (file === undefined) return undefined
    const parts: Buffer[] = []
    for await (const part of file.stream) parts.push(part as Buffer)
    return Buffer.concat(parts)
  }

  /** deleteFile removes file `name`; false when there was none. */
  async deleteFile(name: string): Promise<boolean> {
    checkFileName(name)
    if ((await this.kv.get(manifestKey(name))) === undefined) return false
    await this.kv.del(manifestKey(name))
    await this.collect(name)
    return true
  }

  /** listFiles returns one page of files in name order. */
  async listFiles(options: ListFilesOptions = {}): Promise<FileList> {
    const prefix = options.prefix ?? ''
    if (typeof prefix !== 'string') throw new KvError(ErrorCode.INVALID, 'prefix must be a string')
    const limit = integerOption(options as Record<string, unknown>, 'limit', 1, listFilesLimitMax, 100)
    const range = { prefix: manifestPrefix(prefix), limit: limit + 1, ...(options.after !== undefined ? { gt: manifestKey(checkFileName(options.after)) } : {}) }
    const items: FileInfo[] = []
    let more = false
    for await (const [key, value] of this.kv.query(range)) {
      if (items.length === limit) {
        more = true
        break
      }
      const manifest = decodeManifest(value)
      if (manifest.name !== nameOfManifestKey(key)) throw new KvError(ErrorCode.CORRUPTION, 'file manifest names another file')
      items.push(infoOf(manifest))
    }
    return more ? { items, next: items[items.length - 1]!.name } : { items }
  }

  /** collect removes the garbage uploads of one file now (putFile and deleteFile call it themselves). */
  async collect(name: string): Promise<number> {
    return collectName(this.kv, name, this.config)
  }

  /** sweep collects garbage across files, `namesMax` names per call; pass `next` back as `after` to go on. */
  async sweep(options: { namesMax?: number; after?: string } = {}): Promise<SweepResult> {
    return collectAll(this.kv, { ...this.config, namesMax: options.namesMax ?? 256, after: options.after })
  }

  private async manifest(name: string): Promise<Manifest | undefined> {
    checkFileName(name)
    const bytes = await this.kv.get(manifestKey(name))
    return bytes === undefined ? undefined : decodeManifest(bytes)
  }
}

/**
 * newUploadId is 32 random hex digits (a v4 UUID without its dashes: 122 random bits). Why a
 * UUID: Node draws UUIDs from a cached pool of entropy, where randomBytes(16) asks OpenSSL
 * (and the kernel, for its fork check) on every call, once per upload.
 */
function newUploadId(): string {
  return randomUUID().replace(/-/g, '')
}

async function* resume(
  seen: Array<IteratorResult<Buffer>>,
  rest: AsyncIterator<Buffer>,
): AsyncGenerator<Buffer> {
  for (const item of seen) if (item.done !== true) yield item.value
  for (let next = await rest.next(); next.done !== true; next = await rest.next()) yield next.value
}

/** files returns a FileStore over `kv`: `files(kv).putFile(name, stream, { contentType })`. */
export function files(kv: DistKV, options?: FileStoreOptions): FileStore {
  return new FileStore(kv, options)
}
