/**
 * BlobEngine: key-value separation in front of another engine. A put of a value of at least
 * `thresholdBytes` under a key `separable` selects (a cluster node: shard data keys) appends the
 * value to a BlobLog and stores a 27-byte pointer in the inner engine instead; every read
 * through this engine (get, getMany, iterators) returns the real value. So large values are
 * written once to a blob file, not to the LSM's WAL, memtable flush and every compaction level.
 * See docs/cluster.md, "Large values out of the LSM".
 *
 * Value encoding under separable keys (unambiguous for everything written through this class):
 *   MAGIC (8) | 0x01 | file u32 | offset u48 | length u32 | crc u32   a pointer into a blob file
 *   MAGIC (8) | 0x02 | file u32 | offset u48 | length u32 | crc u32   a pointer into a Raft log file
 *   MAGIC (8) | 0x00 | value                                          a value that itself starts with MAGIC
 *   anything else                                                     the value itself
 * so small values are stored as they always were (no copy, and data written before blobs existed
 * reads the same). NB: a value written before this class existed that started with the 8 MAGIC
 * bytes followed by 0x00, 0x01 or 0x02 would be misread; MAGIC is arbitrary binary, not text.
 *
 * Log pointers (option logValues): on a cluster node a large value is already in the replica's
 * Raft log file when it is applied, so prepare() may point into that file instead of writing the
 * value a second time into a blob file. The log layer says where the value's bytes lie
 * (prepare's `locate`) and when they are synced; the pointer's write waits for that sync as it
 * waits for a blob sync. Each log pointer comes with an index put
 *   logValues.indexPrefix | file u32 | offset u48  ->  data key
 * (not a separable key; one data key per location: prepare() gives a second key with the same
 * bytes a blob copy), so whoever deletes log files can ask logFileReferenced(file) first; an
 * index key outlives an overwrite of its data key, so the answer errs on "referenced" until a
 * later GC checks the keys and drops stale index keys. Log values are read through
 * LogValueFiles (log-values.ts), which follows a log file renamed out of the log directory.
 * decodePointer never returns a log pointer: blob GC judges liveness by blob file numbers, and a
 * log pointer's file number names a different file, so to blob GC a log pointer is a value.
 *
 * Durability order: a pointer is never durable before its blob bytes. Every write takes its
 * turn in one queue: append the batch's large values (write(2) on this thread, replacing the WAL
 * write of the same bytes), fdatasync the blob files on the thread pool, and only then write the
 * batch holding the pointers to the inner engine. The queue also keeps writes in call order,
 * which GC's check-and-put relies on. The shard machine separates earlier, at apply (prepare()),
 * so the blob sync runs while the Raft driver writes its log; a batch carrying prepared pointers
 * still waits for their sync in its turn.
 *
 * GC (WiscKey style, nothing recorded on the write path): on a timer, walk one sealed file's
 * records and look up each record's key; a record is live when the key's current value still
 * points at it. No live record: the file is retired. Live bytes below `gcLiveFraction` of the
 * file: the live values are copied to the active file and, in one synced batch, re-pointed, but
 * only for keys whose value still points at the old record when that batch takes its turn in
 * the write queue (compare and set), then the file is retired. A file holding values prepare()d for a write
 * that has not happened yet is left for a later round (#unwritten). A retired file is unlinked once every read and
 * iterator that began before may no longer hold a pointer into it (BlobLog.retire).
 * A dropped or purged shard's values die with their keys and are reclaimed the same way.
 *
 * GC of kept log files (logValues.keptDir) runs in the same round, after the blob files: a
 * KeptLogGc (log-values-gc.ts, whose module comment tells how) walks a kept Raft log file's index
 * keys; it moves live values with blob GC's own copy and compare-and-set commit (copyToBlob,
 * commitMoves), which this engine hands it with the write queue and the reader tokens.
 */
import { crc32 } from '../crc32.js'
import { ErrorCode, KvError, assert } from '../errors.js'
import { BaseEngine, type NativeIterator, type NormalizedRange } from './base.js'
import { BlobLog, blobFileBytesMaxDefault, type BlobRef } from './blob-log.js'
import type { Engine, EngineIterator, EngineOp, RangeOptions } from './engine.js'
import { LogValueFiles, type LogValueRef } from './log-values.js'
import { KeptLogGc, logGcFilesPerRunDefault, logIndexBounds, logIndexKey, type GcMove } from './log-values-gc.js'

export { logIndexKey }

/** MAGIC starts every encoded (pointer or escaped) value under a separable key. */
const MAGIC = Buffer.from([0xb1, 0x0b, 0x5e, 0x9a, 0x7e, 0xa5, 0x00, 0xe1])
const TAG_INLINE = 0x00
const TAG_POINTER = 0x01
const TAG_LOG_POINTER = 0x02
/** RESOLVED: what a prepared pointer with nothing to wait for waits for. */
const RESOLVED = Promise.resolve()
const POINTER_BYTES = MAGIC.length + 1 + 4 + 6 + 4 + 4
/** offsetMax: the largest file offset a pointer holds (48 bits). */
const offsetMax = 2 ** 48 - 1

/** blobThresholdBytesMax: the largest threshold accepted (values above it are rare enough to keep in the LSM). */
export const blobThresholdBytesMax = 64 * 1024 * 1024
/** blobGcIntervalMsDefault: how often GC looks at one sealed file. */
export const blobGcIntervalMsDefault = 5_000
/** blobGcLiveFractionDefault: a sealed file whose live bytes are below this share of it is rewritten. */
export const blobGcLiveFractionDefault = 0.5
/** blobGcFilesPerRunDefault: sealed files one GC run examines. */
export const blobGcFilesPerRunDefault = 2
/** blobGcLookupBatch: keys looked up per engine getMany during a GC walk. */
const blobGcLookupBatch = 256
/** blobIteratorBytesMax: blob bytes one iterator call resolves (at least one row), so a page of 1 MiB values is not held all at once. */
export const blobIteratorBytesMax = 16 * 1024 * 1024

/** BlobEngineOptions configures key-value separation. */
export interface BlobEngineOptions {
  /** dir: the blob files' directory. */
  dir: string
  /** thresholdBytes: values this long or longer under separable keys go to blob files; 0 stores every value inline (existing pointers are still read). */
  thresholdBytes: number
  /** separable: which keys may hold pointers (every other key is passed through untouched). */
  separable: (key: Buffer) => boolean
  fileBytesMax?: number
  /** powerLoss: the blob log's power-loss model (src/engine/blob-log.ts; a node passes DISTKV_FAULT_POWER_LOSS through powerLossFaultOn). */
  powerLoss?: boolean
  /** gcIntervalMs: 0 turns the timer off (gc() may still be called). */
  gcIntervalMs?: number
  gcLiveFraction?: number
  gcFilesPerRun?: number
  /** logGcFilesPerRun: kept log files (logValues.keptDir) one GC run examines (default logGcFilesPerRunDefault). */
  logGcFilesPerRun?: number
  /** beforeGcCommit: called between a GC rewrite's copies and its re-pointing batch (tests race a write there). */
  beforeGcCommit?: () => Promise<void>
  /** logValues: lets prepare() point into Raft log files (module comment); without it every large value goes to a blob file. */
  logValues?: LogValuesOptions
}

/** LogValuesOptions configure log pointers. */
export interface LogValuesOptions {
  /** paths: the candidate paths of log file `file`, in the order to try (LogValueFiles). */
  paths: (file: number) => string[]
  /** indexPrefix: the prefix of the index keys `indexPrefix | file u32 | offset u48` -> data key; keys under it must not be separable. */
  indexPrefix: Buffer
  /** keptDir: where the log layer moves the files logFileReferenced() kept (`NNNNNN.rlog`); GC deletes them once no pointer is left (module comment). */
  keptDir: string
}

/** LogValueLocation is where a value to be written already lies in a Raft log file (the log layer's answer to prepare()'s locate). */
export interface LogValueLocation {
  file: number
  /** offset: file offset of the value's first byte. */
  offset: number
  /** durable: resolves once those bytes are synced; undefined when they already are. */
  durable: Promise<void> | undefined
}

/** BlobStats counts what separation and GC did (tests, logs). */
export interface BlobStats {
  separated: number
  separatedBytes: number
  gcRuns: number
  filesRetired: number
  recordsRewritten: number
  bytesRewritten: number
  /** pointedIntoLog, pointedIntoLogBytes: values prepare() pointed into Raft log files instead of copying them. */
  pointedIntoLog: number
  pointedIntoLogBytes: number
  /** logFilesRetired: kept log files GC unlinked (or will, once older readers end). */
  logFilesRetired: number
  /** logRecordsRewritten, logBytesRewritten: log values GC re-pointed to a blob copy, and the bytes it copied for them. */
  logRecordsRewritten: number
  logBytesRewritten: number
  /** logIndexKeysDropped: index keys GC deleted (stale ones, and every one of a retired file). */
  logIndexKeysDropped: number
  /** logGcErrors: kept files whose examination failed (left for a later run). */
  logGcErrors: number
}

function encodePointer(ref: BlobRef | LogValueRef, tag = TAG_POINTER): Buffer {
  const out = Buffer.allocUnsafe(POINTER_BYTES)
  MAGIC.copy(out, 0)
  out[8] = tag
  out.writeUInt32BE(ref.file, 9)
  out.writeUIntBE(ref.offset, 13, 6)
  out.writeUInt32BE(ref.length, 19)
  out.writeUInt32BE(ref.crc, 23)
  return out
}

function hasMagic(value: Buffer): boolean {
  return value.length > MAGIC.length && value.compare(MAGIC, 0, MAGIC.length, 0, MAGIC.length) === 0
}

function decodeTagged(stored: Buffer, tag: number): BlobRef | undefined {
  if (stored.length !== POINTER_BYTES || !hasMagic(stored) || stored[8] !== tag) return undefined
  return { file: stored.readUInt32BE(9), offset: stored.readUIntBE(13, 6), length: stored.readUInt32BE(19), crc: stored.readUInt32BE(23) }
}

/**
 * decodePointer is the BlobRef a stored value holds, or undefined when it is a value or a log
 * pointer: blob GC compares these refs with its own file numbers, and a log pointer's file
 * number names a Raft log file, not a blob file.
 */
export function decodePointer(stored: Buffer): BlobRef | undefined {
  return decodeTagged(stored, TAG_POINTER)
}

/** decodeLogPointer is the LogValueRef a stored value holds, or undefined when it is not a log pointer. */
export function decodeLogPointer(stored: Buffer): LogValueRef | undefined {
  return decodeTagged(stored, TAG_LOG_POINTER)
}

/** pointedLength is the length of the value a pointer of either kind stands for, undefined for a stored value. */
function pointedLength(stored: Buffer): number | undefined {
  return (decodePointer(stored) ?? decodeLogPointer(stored))?.length
}

/** inlineValue is the value a stored non-pointer holds (an escaped one loses its escape). */
function inlineValue(stored: Buffer): Buffer {
  return hasMagic(stored) && stored[8] === TAG_INLINE ? stored.subarray(MAGIC.length + 1) : stored
}

/** storedSize is the length of the value `stored` stands for, without reading a blob. */
export function storedSize(stored: Buffer): number {
  return pointedLength(stored) ?? inlineValue(stored).length
}

type CheckedOptions = Required<Omit<BlobEngineOptions, 'logValues'>> & Pick<BlobEngineOptions, 'logValues'>

function checkOptions(options: BlobEngineOptions): CheckedOptions {
  const integer = (name: string, value: number, min: number, max: number) => {
    if (!Number.isSafeInteger(value) || value < min || value > max) throw new KvError(ErrorCode.INVALID, `${name} must be an integer in [${min}, ${max}]`, { [name]: value })
    return value
  }
  const fraction = options.gcLiveFraction ?? blobGcLiveFractionDefault
  if (!(fraction >= 0 && fraction <= 1)) throw new KvError(ErrorCode.INVALID, 'gcLiveFraction must be in [0, 1]', { gcLiveFraction: fraction })
  if (options.logValues !== undefined && options.logValues.indexPrefix.length === 0) throw new KvError(ErrorCode.INVALID, 'logValues.indexPrefix must not be empty')
  if (options.logValues !== undefined && options.logValues.keptDir === '') throw new KvError(ErrorCode.INVALID, 'logValues.keptDir must not be empty')
  return {
    dir: options.dir,
    separable: options.separable,
    thresholdBytes: integer('blobThresholdBytes', options.thresholdBytes, 0, blobThresholdBytesMax),
    fileBytesMax: options.fileBytesMax ?? blobFileBytesMaxDefault,
    powerLoss: options.powerLoss ?? false,
    gcIntervalMs: integer('gcIntervalMs', options.gcIntervalMs ?? blobGcIntervalMsDefault, 0, 3_600_000),
    gcLiveFraction: fraction,
    gcFilesPerRun: integer('gcFilesPerRun', options.gcFilesPerRun ?? blobGcFilesPerRunDefault, 1, 1_000),
    logGcFilesPerRun: integer('logGcFilesPerRun', options.logGcFilesPerRun ?? logGcFilesPerRunDefault, 1, 1_000),
    beforeGcCommit: options.beforeGcCommit ?? (async () => undefined),
    logValues: options.logValues,
  }
}

/** PreparedOps is prepare()'s answer: the ops to write and what their write waits for. */
export interface PreparedOps {
  ops: EngineOp[]
  durable: Promise<void> | undefined
}

/** BlobEngine separates large values of separable keys into a BlobLog (see the module comment). */
export class BlobEngine extends BaseEngine {
  readonly kind: Engine['kind']
  readonly stats: BlobStats = {
    separated: 0,
    separatedBytes: 0,
    gcRuns: 0,
    filesRetired: 0,
    recordsRewritten: 0,
    bytesRewritten: 0,
    pointedIntoLog: 0,
    pointedIntoLogBytes: 0,
    logFilesRetired: 0,
    logRecordsRewritten: 0,
    logBytesRewritten: 0,
    logIndexKeysDropped: 0,
    logGcErrors: 0,
  }
  readonly log: BlobLog
  /** logValues: the reader of values in Raft log files, when options.logValues is set. */
  readonly logValues: LogValueFiles | undefined
  readonly #inner: Engine
  readonly #options: CheckedOptions
  /** #queue: every write, in call order (see the module comment). */
  #queue: Promise<void> = Promise.resolve()
  /** #prepared: pointers made by prepare(), each with the sync its write must wait for. */
  readonly #prepared = new WeakMap<Buffer, Promise<void>>()
  /**
   * #unwritten counts, per blob file, pointers prepare() made that no write has carried yet. GC
   * leaves such a file alone: its lookups cannot see those pointers, so it would judge their
   * records dead and unlink bytes a pointer is about to name. A prepared output that is never
   * written keeps its file uncollected (space, never data).
   */
  readonly #unwritten = new Map<number, number>()
  /** #unwrittenLog: the same for log pointers, per Raft log file (logFileReferenced counts them: their index keys are not written yet either). */
  readonly #unwrittenLog = new Map<number, number>()
  /** #writes counts writes to separable keys; a file is walked again only after more happened (#walkedAt). */
  #writes = 0
  readonly #walkedAt = new Map<number, number>()
  #gcCursor = 0
  /** #keptGc: GC of kept log files, when options.logValues is set. */
  readonly #keptGc: KeptLogGc | undefined
  #gcTimer: NodeJS.Timeout | undefined
  #gcRunning: Promise<void> | undefined

  constructor(inner: Engine, options: BlobEngineOptions) {
    super()
    this.#inner = inner
    this.kind = inner.kind
    this.#options = checkOptions(options)
    this.log = new BlobLog(options.dir, { fileBytesMax: this.#options.fileBytesMax, powerLoss: this.#options.powerLoss })
    this.logValues = options.logValues === undefined ? undefined : new LogValueFiles(options.logValues.paths)
    if (options.logValues !== undefined && this.logValues !== undefined) {
      const { indexPrefix, keptDir } = options.logValues
      const { logGcFilesPerRun, gcLiveFraction } = this.#options
      this.#keptGc = new KeptLogGc({ indexPrefix, keptDir, logGcFilesPerRun, gcLiveFraction, lookupBatch: blobGcLookupBatch }, {
        inner,
        stats: this.stats,
        files: this.logValues,
        logPointer: (key, stored) => (this.#options.separable(key) ? decodeLogPointer(stored) : undefined),
        isOpen: () => this.status === 'open',
        writes: () => this.#writes,
        unwrittenLog: this.#unwrittenLog,
        enqueue: (work) => this.enqueue(work),
        copyToBlob: (key, value) => this.copyToBlob(key, value),
        commitMoves: (moved, also) => this.commitMoves(moved, also),
        afterReaders: (work) => this.log.afterReaders(work),
      })
    }
  }

  protected async _open(): Promise<void> {
    await this.#inner.open()
    await this.log.open()
    this.logValues?.open()
    if (this.#options.gcIntervalMs > 0) {
      this.#gcTimer = setInterval(() => void this.gc().catch(() => undefined), this.#options.gcIntervalMs)
      this.#gcTimer.unref()
    }
  }

  protected async _close(): Promise<void> {
    clearInterval(this.#gcTimer)
    this.#gcTimer = undefined
    await this.#gcRunning?.catch(() => undefined)
    await this.#queue
    try {
      await this.logValues?.close()
      await this.log.close()
    } finally {
      await this.#inner.close()
    }
  }

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    if (!this.#options.separable(key)) return this.#inner.get(key)
    const token = this.log.beginRead()
    try {
      const stored = await this.#inner.get(key)
      return stored === undefined ? undefined : await this.resolve(stored)
    } finally {
      this.log.endRead(token)
    }
  }

  protected async _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    const token = this.log.beginRead()
    try {
      const stored = await this.#inner.getMany(keys)
      return await Promise.all(stored.map((value, i) => (value === undefined || !this.#options.separable(keys[i]!) ? value : this.resolve(value))))
    } finally {
      this.log.endRead(token)
    }
  }

  /** sizes answers the length of each key's value (undefined when absent) without reading blob files. */
  async sizes(keys: Buffer[]): Promise<Array<number | undefined>> {
    const stored = await this.#inner.getMany(keys)
    return stored.map((value, i) => (value === undefined ? undefined : this.#options.separable(keys[i]!) ? storedSize(value) : value.length))
  }

  /**
   * prepare separates the large values of `ops` now and returns the ops with pointers and what
   * their write must wait for. A value `locate` finds in a Raft log file (logValues configured)
   * gets a log pointer and an index put `indexPrefix | file | offset` -> key; any other is
   * appended to a blob file, whose sync starts now. A caller (the shard machine, through the Raft
   * driver's ApplyOutput.beforeWrite) lets that wait overlap its own log write; batch() still
   * waits for it before writing a prepared pointer, whoever calls it. `durable` is undefined
   * when there is nothing to wait for (no blob append, every located value already synced in
   * its log): callers must still write the returned `ops`, which may differ from `ops`. The Raft
   * driver writes apply output that has a `beforeWrite` after the iteration's log sync, so a
   * promise that is already resolved would still cost every such apply one fsync of latency.
   */
  prepare(ops: EngineOp[], locate?: (value: Buffer) => LogValueLocation | undefined): PreparedOps {
    const threshold = this.#options.thresholdBytes
    let appended = false
    const waits: Array<Promise<void>> = []
    const pointers: Buffer[] = []
    const out: EngineOp[] = []
    /** pointedAt: the log locations pointed at so far (file:offset). */
    const pointedAt = new Set<string>()
    for (const op of ops) {
      if (op.type === 'del' || threshold === 0 || op.value.length < threshold || !this.#options.separable(op.key)) {
        out.push(op)
        continue
      }
      const location = this.#options.logValues === undefined ? undefined : locate?.(op.value)
      // One index key per location names one data key: a second key pointing at the same bytes
      // (one value written under two keys) would be invisible to GC, which could unlink the file
      // under it. It gets a blob copy instead.
      const at = location === undefined ? '' : `${location.file}:${location.offset}`
      if (location === undefined || pointedAt.has(at)) {
        appended = true
        const pointer = this.appendToBlob(op.key, op.value)
        pointers.push(pointer)
        out.push({ type: 'put', key: op.key, value: pointer })
        continue
      }
      pointedAt.add(at)
      const [pointerOp, indexOp] = this.pointIntoLog(op.key, op.value, location)
      pointers.push(pointerOp.value)
      out.push(pointerOp, indexOp)
      if (location.durable !== undefined) waits.push(location.durable)
    }
    if (pointers.length === 0) return { ops, durable: undefined }
    if (appended) waits.push(this.log.sync())
    const durable = waits.length === 0 ? undefined : waits.length === 1 ? waits[0]! : Promise.all(waits).then(() => undefined)
    // Awaited by the write that carries the pointers; a failure is reported there, not as unhandled here.
    durable?.catch(() => undefined)
    for (const pointer of pointers) this.#prepared.set(pointer, durable ?? RESOLVED)
    return { ops: out, durable }
  }

  /** appendToBlob appends a prepared value to the blob log and returns its pointer (counted unwritten until a write carries it). */
  private appendToBlob(key: Buffer, value: Buffer): Buffer {
    this.stats.separated++
    this.stats.separatedBytes += value.length
    const ref = this.log.append(key, value)
    countUp(this.#unwritten, ref.file)
    return encodePointer(ref)
  }

  /** pointIntoLog is the put of a log pointer to `value` at `location` and the put of its index key. */
  private pointIntoLog(key: Buffer, value: Buffer, location: LogValueLocation): [EngineOp & { type: 'put' }, EngineOp & { type: 'put' }] {
    const { file, offset } = location
    assert(Number.isSafeInteger(file) && file >= 0 && file <= 0xffffffff, `log value file ${file} is a u32`)
    assert(Number.isSafeInteger(offset) && offset >= 0 && offset + value.length <= offsetMax, `log value offset ${offset} fits 48 bits`)
    const indexKey = logIndexKey(this.#options.logValues!.indexPrefix, file, offset)
    // A separable index key would be read as a value of the shard and could itself be separated.
    assert(!this.#options.separable(indexKey), 'log value index keys must not be separable')
    this.stats.pointedIntoLog++
    this.stats.pointedIntoLogBytes += value.length
    countUp(this.#unwrittenLog, file)
    const pointer = encodePointer({ file, offset, length: value.length, crc: crc32(value) }, TAG_LOG_POINTER)
    return [{ type: 'put', key, value: pointer }, { type: 'put', key: indexKey, value: key }]
  }

  /**
   * logFileReferenced tells whether a log pointer may point into Raft log file `file`: an index
   * key under it exists, or a prepared pointer into it is not written yet. Stale index keys (of
   * values overwritten since) also count: the answer errs on "referenced".
   */
  async logFileReferenced(file: number): Promise<boolean> {
    const prefix = this.#options.logValues?.indexPrefix
    if (prefix === undefined) throw new KvError(ErrorCode.INVALID, 'logFileReferenced needs the logValues option')
    // Unwritten first: a pointer counted there is in the engine before it leaves the count, so
    // the lookup below sees every pointer the count no longer covers.
    if (this.#unwrittenLog.has(file)) return true
    const iterator = this.#inner.iterator({ ...logIndexBounds(prefix, file), limit: 1, values: false })
    try {
      return (await iterator.nextBatch(1)).length > 0
    } finally {
      await iterator.close()
    }
  }

  protected _write(ops: EngineOp[], sync: boolean): Promise<void> {
    return this.enqueue(async () => {
      let appended = false
      const waits = new Set<Promise<void>>()
      const carried: Buffer[] = []
      const out = ops.map((op): EngineOp => {
        if (!this.#options.separable(op.key)) return op
        this.#writes++
        if (op.type === 'del') return op
        const prepared = this.#prepared.get(op.value)
        if (prepared !== undefined) {
          waits.add(prepared)
          carried.push(op.value)
          return op
        }
        const threshold = this.#options.thresholdBytes
        if (threshold > 0 && op.value.length >= threshold) {
          appended = true
          this.stats.separated++
          this.stats.separatedBytes += op.value.length
          return { type: 'put', key: op.key, value: encodePointer(this.log.append(op.key, op.value)) }
        }
        if (hasMagic(op.value)) return { type: 'put', key: op.key, value: Buffer.concat([MAGIC, Buffer.from([TAG_INLINE]), op.value]) }
        return op
      })
      // The blob bytes are durable before any pointer to them can be (module comment).
      if (appended) await this.log.sync()
      for (const wait of waits) await wait
      await this.#inner.batch(out, { sync })
      // Now in the engine, where GC's lookups (and logFileReferenced's) see them.
      for (const pointer of carried) {
        if (!this.#prepared.delete(pointer)) continue
        const blob = decodePointer(pointer)
        if (blob !== undefined) countDown(this.#unwritten, blob.file)
        else countDown(this.#unwrittenLog, decodeLogPointer(pointer)!.file)
      }
    })
  }

  protected _sync(): Promise<void> {
    return this.enqueue(() => this.#inner.sync())
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    const token = this.log.beginRead()
    try {
      return new ResolvingIterator(this.#inner.iterator(innerRange(range)), range.values ? this : undefined, () => this.log.endRead(token))
    } catch (error) {
      this.log.endRead(token)
      throw error
    }
  }

  /** resolve is the value a stored separable value stands for (reading its blob when it is a pointer). */
  async resolve(stored: Buffer): Promise<Buffer> {
    const blob = decodePointer(stored)
    if (blob !== undefined) return this.log.read(blob)
    const logRef = decodeLogPointer(stored)
    return logRef === undefined ? inlineValue(stored) : this.readLogValue(logRef)
  }

  private readLogValue(ref: LogValueRef): Promise<Buffer> {
    if (this.logValues === undefined) {
      throw new KvError(ErrorCode.CORRUPTION, `a pointer into log file ${ref.file} @${ref.offset}, but this engine reads no log files (logValues)`, { file: ref.file, offset: ref.offset })
    }
    return this.logValues.read(ref)
  }

  /** isSeparable tells whether `key` may hold a pointer. */
  isSeparable(key: Buffer): boolean {
    return this.#options.separable(key)
  }

  /** gc runs one bounded round (one at a time; a call during a round waits for it). */
  gc(): Promise<void> {
    this.#gcRunning ??= this.gcRound().finally(() => (this.#gcRunning = undefined))
    return this.#gcRunning
  }

  private async gcRound(): Promise<void> {
    if (this.status !== 'open') return
    this.stats.gcRuns++
    const sealed = this.log.sealedFiles().filter((file) => this.#walkedAt.get(file) !== this.#writes)
    for (let n = 0; n < Math.min(this.#options.gcFilesPerRun, sealed.length); n++) {
      this.#gcCursor = (this.#gcCursor + 1) % sealed.length
      const file = sealed[this.#gcCursor]!
      await this.collect(file)
      if (this.status !== 'open') return
    }
    await this.#keptGc?.run()
  }

  /** collect examines one sealed file: retire it when nothing points into it, rewrite its live records when few do. */
  private async collect(file: number): Promise<void> {
    const writesBefore = this.#writes
    const records: Array<{ key: Buffer; ref: BlobRef }> = []
    for await (const record of this.log.walk(file)) records.push({ key: record.key, ref: record })
    // Writes queued before now may carry pointers prepare()d into this file: let them finish first.
    await this.enqueue(async () => undefined)
    // Pointers prepared into this file but not written yet are invisible to the lookups below; a
    // sealed file gets no new ones, so it is looked at again once they are written.
    if (this.#unwritten.has(file)) return
    const live: Array<{ key: Buffer; ref: BlobRef }> = []
    for (let i = 0; i < records.length; i += blobGcLookupBatch) {
      const slice = records.slice(i, i + blobGcLookupBatch)
      const stored = await this.#inner.getMany(slice.map((r) => r.key))
      slice.forEach((record, j) => {
        if (pointsAt(stored[j], record.ref)) live.push(record)
      })
    }
    const liveBytes = live.reduce((sum, r) => sum + r.ref.length, 0)
    if (live.length > 0 && liveBytes >= this.#options.gcLiveFraction * this.log.fileSize(file)) {
      this.#walkedAt.set(file, writesBefore)
      return
    }
    const moved: GcMove[] = []
    for (const record of live) {
      const value = await this.log.read(record.ref)
      // A write since the lookup that stored a pointer INTO this file (a value prepare()d before
      // the file was sealed, carried by a write that ran after the walk) is exactly what the
      // lookup saw, so the copy is kept. Judging by key instead ("touched since the walk") dropped
      // that copy and left the key pointing into the retired file.
      moved.push({ op: this.copyToBlob(record.key, value), stillAt: (stored) => pointsAt(stored, record.ref) })
      this.stats.bytesRewritten += value.length
    }
    this.stats.recordsRewritten += await this.commitMoves(moved, [])
    this.#walkedAt.delete(file)
    this.log.retire(file)
    this.stats.filesRetired++
  }

  /** copyToBlob appends a live value GC moves to the active blob file; the put re-points its key (commitMoves). */
  private copyToBlob(key: Buffer, value: Buffer): EngineOp & { type: 'put' } {
    return { type: 'put', key, value: encodePointer(this.log.append(key, value)) }
  }

  /**
   * commitMoves re-points the keys GC copied, and writes `also` (a log file's index deletes), in
   * one synced batch taking its turn in the write queue, after the copies are synced: once the old
   * file is gone, only the new pointers (or later writes) may be durable. Compare and set: a key
   * is re-pointed only while its stored value still is what GC looked up (`stillAt`); a write since
   * that re-pointed it elsewhere (or deleted it) wins. Answers how many keys were re-pointed.
   */
  private async commitMoves(moved: GcMove[], also: EngineOp[]): Promise<number> {
    await this.#options.beforeGcCommit()
    return this.enqueue(async () => {
      await this.log.sync()
      const current = moved.length === 0 ? [] : await this.#inner.getMany(moved.map((m) => m.op.key))
      const kept = moved.filter((m, i) => m.stillAt(current[i])).map((m) => m.op)
      await this.#inner.batch([...kept, ...also], { sync: true })
      return kept.length
    })
  }

  /** enqueue runs `work` after every write queued before it. */
  private enqueue<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work)
    this.#queue = result.then(() => undefined, () => undefined)
    return result
  }
}

/** countUp and countDown keep per-file counts (a count of 0 is no entry). */
function countUp(counts: Map<number, number>, file: number): void {
  counts.set(file, (counts.get(file) ?? 0) + 1)
}

function countDown(counts: Map<number, number>, file: number): void {
  const left = (counts.get(file) ?? 1) - 1
  if (left > 0) counts.set(file, left)
  else counts.delete(file)
}

/** pointsAt tells whether a stored value is a pointer to the record at `ref` (same file and value offset). */
function pointsAt(stored: Buffer | undefined, ref: BlobRef): boolean {
  const current = stored === undefined ? undefined : decodePointer(stored)
  return current !== undefined && current.file === ref.file && current.offset === ref.offset
}

/** innerRange asks the inner engine for the same rows, always with keys (a value is resolved by its key's kind). */
function innerRange(range: NormalizedRange): RangeOptions {
  const options: RangeOptions = { reverse: range.reverse, keys: true, values: range.values }
  if (range.limit !== Infinity) options.limit = range.limit
  if (range.lower) options[range.lower.inclusive ? 'gte' : 'gt'] = range.lower.key
  if (range.upper) options[range.upper.inclusive ? 'lte' : 'lt'] = range.upper.key
  return options
}

/** ResolvingIterator returns the inner iterator's rows with pointers replaced by their values, at most blobIteratorBytesMax of blobs per call. */
class ResolvingIterator implements NativeIterator {
  #rows: Array<[Buffer, Buffer]> = []
  #closed = false

  constructor(
    private readonly inner: EngineIterator,
    private readonly blobs: BlobEngine | undefined,
    private readonly onClose: () => void,
  ) {}

  async next(count: number): Promise<Array<[Buffer | undefined, Buffer | undefined]>> {
    if (this.#rows.length === 0) this.#rows = await this.inner.nextBatch(count)
    if (this.blobs === undefined) {
      const rows = this.#rows
      this.#rows = []
      return rows
    }
    const blobs = this.blobs
    let take = 0
    let bytes = 0
    while (take < Math.min(count, this.#rows.length) && (take === 0 || bytes < blobIteratorBytesMax)) {
      const [key, stored] = this.#rows[take]!
      if (blobs.isSeparable(key)) bytes += pointedLength(stored) ?? 0
      take++
    }
    const rows = this.#rows.splice(0, take)
    return Promise.all(rows.map(async ([key, stored]): Promise<[Buffer, Buffer]> => [key, blobs.isSeparable(key) ? await blobs.resolve(stored) : stored]))
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    try {
      await this.inner.close()
    } finally {
      this.onClose()
    }
  }
}
