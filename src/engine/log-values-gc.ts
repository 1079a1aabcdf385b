/**
 * GC of kept Raft log files (BlobEngineOptions.logValues.keptDir): KeptLogGc, which a BlobEngine
 * runs in each of its GC rounds after its blob files (blob-engine.ts, module comment, "GC"), and
 * the file and index side it goes by: which files the kept directory holds, how large one is, the
 * index keys `indexPrefix | file u32 | offset u48 -> data key` and the walk over one file's.
 *
 * The log layer moves a Raft log file it is done with into keptDir instead of deleting it while
 * logFileReferenced says so, and never points into it again. Each round lists keptDir and looks
 * at up to logGcFilesPerRun of its files, in turn. A kept file has no record framing the engine
 * could walk, so its index keys are the walk: an index key is live when its data key still holds
 * a log pointer to that file and offset. The three outcomes mirror blob GC's: no live record, the
 * file's index keys are deleted in a synced batch and the file unlinked; live bytes below
 * `gcLiveFraction` of the file, the live values are copied into the active blob file and
 * re-pointed by the same compare-and-set commit (a key is re-pointed only while it holds exactly
 * the log pointer GC read) in the batch that deletes the index keys, then the file is unlinked;
 * otherwise only the stale index keys go (so logFileReferenced gets exact again). The unlink waits
 * for every read and iterator that began before, by the blob log's reader tokens
 * (BlobLog.afterReaders), and closes the file's cached descriptor. A file with prepared, unwritten
 * log pointers is left alone, as with blob files. Any failure leaves the file for a later run
 * (stats.logGcErrors): the file goes only after nothing durable points into it.
 *
 * The pointers, the write queue, the copy into a blob file and the commit stay BlobEngine's (blob
 * GC uses the same copy and commit); KeptLogGc reaches them through KeptLogGcHost.
 */
import { readdir, stat, unlink } from 'node:fs/promises'
import { join } from 'node:path'
import type { BlobStats } from './blob-engine.js'
import type { Engine, EngineOp } from './engine.js'
import type { LogValueFiles, LogValueRef } from './log-values.js'

/** logGcFilesPerRunDefault: kept log files one GC run examines. */
export const logGcFilesPerRunDefault = 2
/** KEPT_FILE_NAME: a Raft log file's name (src/raftstore/log-files.ts keeps the name when it moves a file). */
const KEPT_FILE_NAME = /^(\d{6,10})\.rlog$/
/** fileNumberMax: log pointers and index keys hold a u32 file number; a larger one names no file they can point into. */
const fileNumberMax = 0xffffffff
/** OFFSET_BYTES: the offset at the end of an index key (u48 BE). */
const OFFSET_BYTES = 6
/** indexOffsetMax: the largest offset an index key holds (a log pointer's offset is u48 too). */
const indexOffsetMax = 2 ** (8 * OFFSET_BYTES) - 1

/** keptFileName is the name of log file `file` in the kept directory. */
export function keptFileName(file: number): string {
  return `${String(file).padStart(6, '0')}.rlog`
}

/** keptFiles lists the numbers of the log files in `dir`, ascending; none when `dir` does not exist. */
export async function keptFiles(dir: string): Promise<number[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  return names
    .map((name) => KEPT_FILE_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]))
    .filter((file) => file <= fileNumberMax)
    .sort((a, b) => a - b)
}

/** keptFileSize is the size of kept file `file` in `dir`. */
export async function keptFileSize(dir: string, file: number): Promise<number> {
  return (await stat(join(dir, keptFileName(file)))).size
}

/** logIndexKey is the index key of a log pointer into `file` at `offset` (logValues.indexPrefix); without `offset`, the prefix of every index key into `file`. */
export function logIndexKey(indexPrefix: Buffer, file: number, offset?: number): Buffer {
  const out = Buffer.allocUnsafe(indexPrefix.length + 4 + (offset === undefined ? 0 : OFFSET_BYTES))
  indexPrefix.copy(out, 0)
  out.writeUInt32BE(file, indexPrefix.length)
  if (offset !== undefined) out.writeUIntBE(offset, indexPrefix.length + 4, OFFSET_BYTES)
  return out
}

/** logIndexBounds are the first and the last index key into `file` there can be (offsets 0 to 2^48-1). */
export function logIndexBounds(indexPrefix: Buffer, file: number): { gte: Buffer; lte: Buffer } {
  return { gte: logIndexKey(indexPrefix, file), lte: logIndexKey(indexPrefix, file, indexOffsetMax) }
}

/** LogIndexEntry is one index key of a log file: the key itself, the offset it names and the data key it maps to. */
export interface LogIndexEntry {
  indexKey: Buffer
  offset: number
  key: Buffer
}

/**
 * walkLogIndex yields the index keys in [gte, lte] (one file's: logIndexBounds) in batches of up
 * to `batch`, read from one snapshot of the inner engine.
 */
export async function* walkLogIndex(inner: Engine, gte: Buffer, lte: Buffer, batch: number): AsyncGenerator<LogIndexEntry[]> {
  const iterator = inner.iterator({ gte, lte })
  try {
    for (;;) {
      const rows = await iterator.nextBatch(batch)
      if (rows.length === 0) return
      yield rows.map(([indexKey, key]) => ({ indexKey, offset: indexKey.readUIntBE(indexKey.length - OFFSET_BYTES, OFFSET_BYTES), key }))
    }
  } finally {
    await iterator.close()
  }
}

/** GcMove is a live value GC (of blob files or of kept files) copied: the put re-pointing its key, and whether a stored value is still the one GC looked up. */
export interface GcMove {
  op: EngineOp & { type: 'put' }
  stillAt: (stored: Buffer | undefined) => boolean
}

/** KeptLogGcOptions are the BlobEngine options KeptLogGc goes by. */
export interface KeptLogGcOptions {
  /** indexPrefix, keptDir: as in BlobEngineOptions.logValues. */
  indexPrefix: Buffer
  keptDir: string
  logGcFilesPerRun: number
  gcLiveFraction: number
  /** lookupBatch: index keys walked, and data keys looked up, per batch (blob GC's lookup batch). */
  lookupBatch: number
}

/** KeptLogGcHost is what KeptLogGc uses of the BlobEngine that runs it. */
export interface KeptLogGcHost {
  /** inner: the engine under the BlobEngine, which holds the index keys and the data keys' stored values. */
  inner: Engine
  stats: BlobStats
  /** files: the BlobEngine's reader of log values (the copies read through it; a retired file's descriptor is closed in it). */
  files: LogValueFiles
  /** logPointer: the log pointer data key `key` holds as `stored`, undefined when it holds none. */
  logPointer: (key: Buffer, stored: Buffer) => LogValueRef | undefined
  isOpen: () => boolean
  /** writes: how many writes to separable keys the engine has taken; a file is walked again only after more happened. */
  writes: () => number
  /** unwrittenLog: per Raft log file, the log pointers prepare() made that no write has carried yet. */
  unwrittenLog: ReadonlyMap<number, number>
  /** enqueue runs `work` in its turn in the engine's write queue. */
  enqueue: <T>(work: () => Promise<T>) => Promise<T>
  /** copyToBlob, commitMoves: blob GC's copy into the active blob file and its compare-and-set commit (BlobEngine). */
  copyToBlob: (key: Buffer, value: Buffer) => EngineOp & { type: 'put' }
  commitMoves: (moved: GcMove[], also: EngineOp[]) => Promise<number>
  /** afterReaders: the blob log's BlobLog.afterReaders. */
  afterReaders: (work: () => Promise<void>) => void
}

/** KeptLogGc collects a BlobEngine's kept log files (module comment); the engine calls run() once per GC round, one round at a time. */
export class KeptLogGc {
  readonly #options: KeptLogGcOptions
  readonly #host: KeptLogGcHost
  /** #walkedAt, #cursor: as BlobEngine's for blob files (a file examined at a count of writes, and the rotation through files). */
  readonly #walkedAt = new Map<number, number>()
  #cursor = 0

  constructor(options: KeptLogGcOptions, host: KeptLogGcHost) {
    this.#options = options
    this.#host = host
  }

  /** run examines up to logGcFilesPerRun kept log files, rotating through them; a failure leaves a file for a later run. */
  async run(): Promise<void> {
    const host = this.#host
    let files: number[]
    try {
      files = await keptFiles(this.#options.keptDir)
    } catch {
      host.stats.logGcErrors++
      return
    }
    const present = new Set(files)
    for (const file of this.#walkedAt.keys()) if (!present.has(file)) this.#walkedAt.delete(file)
    // Files with log pointers prepared but not written are left alone (collect says why).
    const due = files.filter((file) => this.#walkedAt.get(file) !== host.writes() && !host.unwrittenLog.has(file))
    for (let n = 0; n < Math.min(this.#options.logGcFilesPerRun, due.length); n++) {
      this.#cursor = (this.#cursor + 1) % due.length
      try {
        await this.collect(due[this.#cursor]!)
      } catch {
        // Nothing is lost: the file is unlinked only after its index keys are gone and every key that
        // pointed into it was re-pointed, each durable; a failure before that leaves it as it was.
        host.stats.logGcErrors++
      }
      if (!host.isOpen()) return
    }
  }

  /**
   * collect examines one kept log file through its index keys: a record is live when its data
   * key still holds a log pointer to that file and offset. No live record: the index keys go and
   * the file is unlinked. Live bytes below gcLiveFraction of the file: the live values are copied
   * to the active blob file and re-pointed (compare and set), the index keys go, and the file is
   * unlinked. Otherwise only the stale index keys go, so logFileReferenced stays accurate.
   */
  private async collect(file: number): Promise<void> {
    const host = this.#host
    const { indexPrefix, keptDir, lookupBatch } = this.#options
    const writesBefore = host.writes()
    // A pointer prepared into the file and not written yet has no index key yet either, so the walk
    // below would miss it. The log layer makes no new pointer into a kept file, so the file is
    // looked at again once those are written. Checked before the walk: a pointer leaves the count
    // only after its write (index key included) is in the engine.
    if (host.unwrittenLog.has(file)) return
    const live: Array<{ key: Buffer; ref: LogValueRef; stored: Buffer }> = []
    const indexKeys: Buffer[] = []
    const stale: Buffer[] = []
    const { gte, lte } = logIndexBounds(indexPrefix, file)
    for await (const entries of walkLogIndex(host.inner, gte, lte, lookupBatch)) {
      const stored = await host.inner.getMany(entries.map((e) => e.key))
      entries.forEach((entry, i) => {
        indexKeys.push(entry.indexKey)
        const current = stored[i]
        // The index key carries no length: the pointer's own length counts as the live bytes.
        const ref = current === undefined ? undefined : host.logPointer(entry.key, current)
        if (ref !== undefined && ref.file === file && ref.offset === entry.offset) live.push({ key: entry.key, ref, stored: current! })
        else stale.push(entry.indexKey)
      })
    }
    const liveBytes = live.reduce((sum, r) => sum + r.ref.length, 0)
    if (live.length > 0 && liveBytes >= this.#options.gcLiveFraction * (await keptFileSize(keptDir, file))) {
      // A stale index key never turns live again (no new pointer into a kept file), and one whose
      // delete is lost to a crash is only dropped again later: no sync needed.
      if (stale.length > 0) await host.enqueue(() => host.inner.batch(stale.map((key) => ({ type: 'del', key })), { sync: false }))
      host.stats.logIndexKeysDropped += stale.length
      this.#walkedAt.set(file, writesBefore)
      return
    }
    const moved: GcMove[] = []
    for (const record of live) {
      const value = await host.files.read(record.ref)
      // Compare and set on the whole pointer: only a key still holding exactly this log pointer.
      moved.push({ op: host.copyToBlob(record.key, value), stillAt: (stored) => stored !== undefined && stored.equals(record.stored) })
      host.stats.logBytesRewritten += value.length
    }
    host.stats.logRecordsRewritten += await host.commitMoves(moved, indexKeys.map((key) => ({ type: 'del', key })))
    host.stats.logIndexKeysDropped += indexKeys.length
    this.#walkedAt.delete(file)
    this.retire(file)
  }

  /**
   * retire unlinks kept log file `file` once every read and iterator that began before now has
   * ended (the same rule and reader tokens as a retired blob file: an iterator's snapshot may
   * still hold a log pointer into it), closing its cached descriptor first.
   */
  private retire(file: number): void {
    const path = join(this.#options.keptDir, keptFileName(file))
    this.#host.stats.logFilesRetired++
    this.#host.afterReaders(async () => {
      this.#host.files.forget(file)
      await unlink(path).catch((error: NodeJS.ErrnoException) => {
        // Already gone is done; any other failure leaves a file without index keys, retired again by a later run.
        if (error.code !== 'ENOENT') throw error
      })
    })
  }
}
