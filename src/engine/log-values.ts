/**
 * LogValueFiles: reads values that live inside Raft log files (src/raftstore/log-files.ts,
 * `NNNNNN.rlog`), for the BlobEngine's log pointers (see blob-engine.ts): a replica writes a
 * large value once, in its Raft log, and the engine points into that file instead of copying
 * the value into a blob file.
 *
 * A log file may be renamed from the log directory into another directory at any time (the log
 * layer moves files it no longer needs but whose values are still pointed at), so the owner gives
 * the candidate paths of each file number in order. A read opens the first candidate that
 * exists; when none does, it looks once more (a rename may have moved the file from a candidate
 * not yet tried into one already tried). rename(2) keeps an open descriptor valid, so descriptors
 * are cached per file number; the table is bounded (logValueFdsMaxDefault), least recently used
 * out first, and a descriptor a read is still using is closed only when that read ends.
 *
 * Every read is checked against the pointer's length and CRC: a missing file, a short read or a
 * checksum mismatch is KV_ERR_CORRUPTION naming the file and offset, never wrong bytes.
 */
import { close, open } from 'node:fs'
import { crc32 } from '../crc32.js'
import { ErrorCode, KvError } from '../errors.js'
import { preadFully } from './blob-log.js'

/** logValueFdsMaxDefault: most log file descriptors cached at once (reads in progress may hold a few more). */
export const logValueFdsMaxDefault = 64
/** logValueOpenPasses: times the candidate paths are tried before a file is reported missing (the second covers a racing rename). */
export const logValueOpenPasses = 2

/** LogValueRef is where one value lives in a log file: file number, offset of its first byte, its length and CRC. */
export interface LogValueRef {
  file: number
  offset: number
  length: number
  crc: number
}

/** LogValueFilesOptions configure a LogValueFiles beyond its paths. */
export interface LogValueFilesOptions {
  /** fdsMax: cached descriptors (default logValueFdsMaxDefault). */
  fdsMax?: number
}

/** CachedFd is one open log file: its descriptor, the reads using it, and whether it left the table. */
interface CachedFd {
  fd: number
  users: number
  evicted: boolean
}

const openAsync = (path: string) => new Promise<number>((resolve, reject) => open(path, 'r', (error, fd) => (error ? reject(error) : resolve(fd))))
const closeQuietly = (fd: number) => close(fd, () => undefined)

function corruption(message: string, details: Record<string, unknown>): KvError {
  return new KvError(ErrorCode.CORRUPTION, message, details)
}

/** LogValueFiles reads checked values out of Raft log files (see the module comment). */
export class LogValueFiles {
  readonly fdsMax: number
  readonly #paths: (file: number) => string[]
  /** #fds: cached descriptors by file number, least recently used first (Map insertion order). */
  readonly #fds = new Map<number, CachedFd>()
  /** #opening: opens in progress, so concurrent reads of one file share one descriptor. */
  readonly #opening = new Map<number, Promise<CachedFd>>()
  #closed = false

  constructor(paths: (file: number) => string[], options: LogValueFilesOptions = {}) {
    this.#paths = paths
    this.fdsMax = options.fdsMax ?? logValueFdsMaxDefault
    if (!Number.isSafeInteger(this.fdsMax) || this.fdsMax < 1) throw new KvError(ErrorCode.INVALID, 'fdsMax must be a positive integer', { fdsMax: this.fdsMax })
  }

  /** openFds: descriptors cached now (tests). */
  get openFds(): number {
    return this.#fds.size
  }

  /** read returns the value `ref` points at, checked against its length and CRC; KV_ERR_CORRUPTION otherwise. */
  async read(ref: LogValueRef): Promise<Buffer> {
    const cached = await this.acquireFor(ref)
    let value: Buffer
    try {
      value = await preadFully(cached.fd, ref.length, ref.offset)
    } finally {
      this.release(cached)
    }
    if (value.length !== ref.length || crc32(value) !== ref.crc) {
      throw corruption(`log file ${ref.file} @${ref.offset}: value is short or fails its checksum`, { file: ref.file, offset: ref.offset, length: ref.length })
    }
    return value
  }

  /** forget closes the cached descriptor of `file`, if any (its owner deleted the file; a read in progress finishes first). */
  forget(file: number): void {
    const cached = this.#fds.get(file)
    if (cached !== undefined) this.evict(file, cached)
  }

  /** open lets reads run again after close() (an engine may be reopened); a new instance is open. */
  open(): void {
    this.#closed = false
  }

  /** close closes every descriptor (those in use when their read ends); reads until the next open() fail with KV_ERR_CLOSED. */
  async close(): Promise<void> {
    this.#closed = true
    await Promise.allSettled(this.#opening.values())
    for (const [file, cached] of this.#fds) this.evict(file, cached)
  }

  /** acquireFor is acquire, a missing file reported with the offset of the value sought. */
  private async acquireFor(ref: LogValueRef): Promise<CachedFd> {
    try {
      return await this.acquire(ref.file)
    } catch (error) {
      if (!(error instanceof KvError) || error.code !== ErrorCode.CORRUPTION) throw error
      throw corruption(`${error.message} (value @${ref.offset})`, { ...error.details, offset: ref.offset, length: ref.length })
    }
  }

  /** acquire is the descriptor of `file`, marked in use (release it), opened and cached when needed. */
  private async acquire(file: number): Promise<CachedFd> {
    if (this.#closed) throw new KvError(ErrorCode.CLOSED, 'log value files are closed')
    let cached = this.#fds.get(file)
    if (cached !== undefined) {
      // Most recently used: to the end of the table's order.
      this.#fds.delete(file)
      this.#fds.set(file, cached)
    } else {
      let opening = this.#opening.get(file)
      if (opening === undefined) {
        opening = this.openFile(file).finally(() => this.#opening.delete(file))
        this.#opening.set(file, opening)
      }
      cached = await opening
      // Evicted (by other opens) before this read could use it: open it again.
      if (cached.evicted) return this.acquire(file)
    }
    cached.users++
    return cached
  }

  private release(cached: CachedFd): void {
    cached.users--
    if (cached.evicted && cached.users === 0) closeQuietly(cached.fd)
  }

  /** openFile opens the first candidate path of `file` that exists and caches its descriptor. */
  private async openFile(file: number): Promise<CachedFd> {
    const fd = await this.openFirst(file)
    const cached: CachedFd = { fd, users: 0, evicted: false }
    if (this.#closed) {
      closeQuietly(fd)
      throw new KvError(ErrorCode.CLOSED, 'log value files are closed')
    }
    this.#fds.set(file, cached)
    this.evictBeyondLimit()
    return cached
  }

  private async openFirst(file: number): Promise<number> {
    const tried: string[] = []
    for (let pass = 0; pass < logValueOpenPasses; pass++) {
      for (const path of this.#paths(file)) {
        try {
          return await openAsync(path)
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOENT') throw error
          tried.push(path)
        }
      }
    }
    throw corruption(`log file ${file} is missing`, { file, tried })
  }

  /** evictBeyondLimit drops the least recently used descriptors while the table is over fdsMax. */
  private evictBeyondLimit(): void {
    for (const [file, cached] of this.#fds) {
      if (this.#fds.size <= this.fdsMax) return
      this.evict(file, cached)
    }
  }

  /** evict takes `cached` out of the table; it is closed now when idle, else when its last read ends. */
  private evict(file: number, cached: CachedFd): void {
    if (this.#fds.get(file) === cached) this.#fds.delete(file)
    cached.evicted = true
    if (cached.users === 0) closeQuietly(cached.fd)
  }
}
