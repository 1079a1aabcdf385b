/**
 * The RocksDB engine (the default), on @nxtedition/rocksdb's `RocksLevel` (abstract-level 1.x).
 *
 * Durability: every write goes through one WriteBatch. NB: RocksLevel's own put()/del() drop
 * the `sync` option (they write a chained batch without options), which is why put and del
 * are batches here too. NB: the binding performs WriteBatch writes on the JavaScript thread,
 * so how a synced write reaches the disk is chosen by `walSync`:
 * - 'threadpool' (default): the batch is written with `sync: false` (memtable insert and one
 *   write(2) of the WAL record), then a `WalSyncer` (wal-sync.ts) fdatasyncs the WAL files on
 *   libuv's thread pool, one coalesced round for any number of concurrent synced writes and
 *   `sync()` calls. The event loop keeps serving sockets and timers while the disk flushes.
 * - 'native': the batch is written with WriteOptions.sync, so RocksDB fdatasyncs the WAL inside
 *   `DB::Write` and the event loop stalls for that time; `sync()` writes an empty synced batch
 *   (one fdatasync per call). Kept to compare against and as a fallback.
 * The default can be set for a whole process with DISTKV_ROCKSDB_WAL_SYNC (benchmarks use it
 * to compare code they do not construct engines in).
 *
 * Iterators read an implicit RocksDB snapshot taken at creation, and `nextBatch` is one native
 * `nextv` call bounded by `iteratorBatchBytesMax`.
 */
import { createRequire } from 'node:module'
import { cpus } from 'node:os'
import { ErrorCode, KvError } from '../errors.js'
import { BaseEngine, levelRange, type NativeIterator, type NormalizedRange } from './base.js'
import type { EngineOp } from './engine.js'
import { checkWalOptions, WalSyncer } from './wal-sync.js'

const require = createRequire(import.meta.url)

/** The part of RocksLevel (abstract-level 1.x, callback or promise) that this engine uses. */
interface RocksDatabase {
  open(options: Record<string, unknown>): Promise<void>
  close(): Promise<void>
  _getMany(keys: Buffer[], options: object, callback: (error: Error | null, values?: Array<Buffer | undefined>) => void): void
  _chainedBatch(): RocksChainedBatch
  iterator(options: Record<string, unknown>): RocksIterator
  getProperty(name: string): string
}

/** The part of RocksLevel's ChainedBatch that writeBatch uses (implementation methods: no re-validation). */
interface RocksChainedBatch {
  _put(key: Buffer, value: Buffer, options: object): void
  _del(key: Buffer, options: object): void
  /** _writeSync runs DB::Write on the calling thread and throws its error. */
  _writeSync(options: { sync: boolean }): void
  /** _clear empties the native WriteBatch and releases the memory of its operations. */
  _clear(): void
  close(): Promise<void>
}

interface RocksIterator {
  nextv(size: number): Promise<Array<[Buffer | undefined, Buffer | undefined]>>
  close(): Promise<void>
}

type RocksLevelClass = new (location: string, options: Record<string, unknown>) => RocksDatabase

const noOptions = Object.freeze({})
const syncOptions = Object.freeze({ sync: true })
const noSyncOptions = Object.freeze({ sync: false })

/** iteratorBatchBytesMax bounds the key and value bytes one native nextv call may buffer. */
export const iteratorBatchBytesMax = 4 * 1024 * 1024

/** RocksDbEngineOptions: the directory and a few server tunings, validated at construction. */
export interface RocksDbEngineOptions {
  dir: string
  /** cacheBytes: block cache size; default 64 MiB. */
  cacheBytes?: number
  /** memtableBudgetBytes: memory for memtables (write buffers are a quarter each); default 128 MiB. */
  memtableBudgetBytes?: number
  /** backgroundThreads: flush and compaction threads; default the number of CPUs (at least 2). */
  backgroundThreads?: number
  /** walSync: who fdatasyncs the WAL for synced writes; default 'threadpool' (see the module comment). */
  walSync?: WalSyncMode
}

/** WalSyncMode: 'threadpool' fdatasyncs the WAL off the event loop, 'native' inside RocksDB's write. */
export type WalSyncMode = 'threadpool' | 'native'

/** walSyncModeEnv names the environment variable that sets the default `walSync` of a process. */
export const walSyncModeEnv = 'DISTKV_ROCKSDB_WAL_SYNC'

function checkWalSyncMode(value: unknown, from: string): WalSyncMode {
  if (value !== 'threadpool' && value !== 'native') {
    throw new KvError(ErrorCode.INVALID, `${from} must be 'threadpool' or 'native'`, { walSync: value })
  }
  return value
}

/** RocksDbEngine stores in a RocksDB directory. */
export class RocksDbEngine extends BaseEngine {
  readonly kind = 'rocksdb' as const
  readonly dir: string
  /** walSync: the mode chosen at construction. */
  readonly walSync: WalSyncMode
  readonly #openOptions: Readonly<Record<string, unknown>>
  #db: RocksDatabase | undefined
  #walSyncer: WalSyncer | undefined
  #batch: RocksChainedBatch | undefined

  constructor(options: RocksDbEngineOptions) {
    super()
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new KvError(ErrorCode.INVALID, 'RocksDbEngine: dir must be a non-empty string')
    }
    this.dir = options.dir
    const envMode = process.env[walSyncModeEnv]
    this.walSync = options.walSync !== undefined
      ? checkWalSyncMode(options.walSync, 'RocksDbEngine option walSync')
      : envMode !== undefined && envMode !== '' ? checkWalSyncMode(envMode, walSyncModeEnv) : 'threadpool'
    const cacheSize = checkSize('cacheBytes', options.cacheBytes ?? 64 * 1024 * 1024, 0, 2 ** 32 - 1)
    const memtableMemoryBudget = checkSize('memtableBudgetBytes', options.memtableBudgetBytes ?? 128 * 1024 * 1024, 4 * 1024 * 1024, 2 ** 40)
    const parallelism = checkSize('backgroundThreads', options.backgroundThreads ?? Math.max(2, cpus().length), 1, 64)
    this.#openOptions = Object.freeze({
      createIfMissing: true,
      // Level-style compaction sized from the memtable budget; levels 0-1 uncompressed, 2+ zstd.
      compaction: 'level',
      memtableMemoryBudget,
      cacheSize,
      cacheIndexAndFilterBlocks: true,
      parallelism,
      // Writes the RocksDB LOG file at warn level, so that stalls and corruption leave a trace.
      infoLogLevel: 'warn',
      // The binding's default is zstd-compressed WAL records, compressed inside DB::Write on the
      // JavaScript thread: about a tenth of the local server's CPU per put (perf), for values
      // that are often already compressed. Flushed tables are still compressed from L2 down.
      walCompression: false,
      // Point lookups dominate (every get, and getMany in the local server): a bloom filter per
      // memtable lets a get skip the memtables without its key, and a hash index inside data
      // blocks replaces the in-block binary search; ~10% less CPU per get in a one-process
      // bench. Range scans are unaffected (the binary-search index stays); Ribbon filters.
      optimize: 'point-lookup',
    })
  }

  protected async _open(): Promise<void> {
    const { RocksLevel } = require('@nxtedition/rocksdb') as { RocksLevel: RocksLevelClass }
    const db = new RocksLevel(this.dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await db.open({ ...this.#openOptions })
    if (this.walSync === 'threadpool') {
      try {
        await checkWalOptions(this.dir)
      } catch (error) {
        await db.close()
        throw error
      }
      // NB: the binding never sets wal_dir, so the WAL files live in the database directory.
      // RocksDB creates WAL files only on a memtable switch, which installs a new super version.
      this.#walSyncer = new WalSyncer(this.dir, { walVersion: () => String(db.getProperty('rocksdb.current-super-version-number')) })
    }
    this.#db = db
  }

  protected async _close(): Promise<void> {
    const db = this.#db
    const walSyncer = this.#walSyncer
    this.#db = undefined
    this.#walSyncer = undefined
    this.#batch = undefined
    // Rounds already started finish against the open database before it closes.
    await walSyncer?.close()
    await db?.close()
  }

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    const [value] = await this._getMany([key])
    return value
  }

  // The implementation methods (_getMany, _batch) are called directly: BaseEngine has already
  // checked the state and every key, and abstract-level's public wrappers would copy each op
  // and run its encodings again, a measurable share of a small write's cost.
  protected _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    const db = this.db()
    return new Promise((resolve, reject) => db._getMany(keys, noOptions, (error, values) => (error ? reject(error) : resolve(values!))))
  }

  protected async _write(ops: EngineOp[], sync: boolean): Promise<void> {
    const walSyncer = this.#walSyncer
    if (walSyncer === undefined) {
      await this.writeBatch(ops, sync ? syncOptions : noSyncOptions)
      return
    }
    // Noted once the write reached the page cache and before anyone is told it happened: every
    // sync() that must cover it then sees it (the binding in fact writes before batch() returns).
    await this.writeBatch(ops, noSyncOptions)
    walSyncer.noteWrite()
    if (sync) await walSyncer.sync()
  }

  // One native WriteBatch, filled, written and cleared within one synchronous call, serves
  // every write. A batch per write leaked: RocksLevel (abstract-level 1.x) attaches every
  // chained batch to the database until it is closed, and `_batch` never closes its own, so
  // each write's batch and all its values stayed in memory until the database closed
  // (test/engine/rocksdb-memory.test.ts). The binding writes synchronously on the JS thread,
  // so no other write can interleave between fill and clear.
  private writeBatch(ops: EngineOp[], options: { sync: boolean }): Promise<void> {
    const db = this.db()
    const batch = (this.#batch ??= db._chainedBatch())
    try {
      // RocksLevel._batch builds a `{ column }` options object per op; one shared empty one will do.
      for (const op of ops) {
        if (op.type === 'put') batch._put(op.key, op.value, noOptions)
        else batch._del(op.key, noOptions)
      }
      batch._writeSync(options)
    } catch (error) {
      return Promise.reject(error)
    } finally {
      batch._clear()
    }
    return Promise.resolve()
  }

  /** walSyncStats: the thread-pool WAL syncer's round counters, or undefined in 'native' mode or when closed. */
  get walSyncStats(): Readonly<WalSyncer['stats']> | undefined {
    return this.#walSyncer?.stats
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    const iterator = this.db().iterator({ ...levelRange(range), highWaterMarkBytes: iteratorBatchBytesMax })
    return { next: (count) => iterator.nextv(count), close: () => iterator.close() }
  }

  protected async _sync(): Promise<void> {
    this.db()
    if (this.#walSyncer !== undefined) return this.#walSyncer.sync()
    // RocksLevel's public batch() skips empty batches; an empty native write still syncs the WAL.
    await this.writeBatch([], syncOptions)
  }

  private db(): RocksDatabase {
    const db = this.#db
    if (db === undefined) throw new KvError(ErrorCode.CLOSED, 'rocksdb engine is not open')
    return db
  }
}

/** checkSize validates one numeric option and names it and its range when it is wrong. */
export function checkSize(name: string, value: number, min: number, max: number): number {
  if (!Number.isInteger(value) || value < min || value > max) {
    throw new KvError(ErrorCode.INVALID, `engine option ${name} must be an integer in ${min}..${max}`, { [name]: value })
  }
  return value
}
