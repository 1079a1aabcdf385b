/**
 * The RocksDB engine (the default), on @nxtedition/rocksdb's `RocksLevel` (abstract-level 1.x).
 *
 * Durability: every write goes through one WriteBatch; `sync: true` sets WriteOptions.sync so
 * RocksDB fdatasyncs the WAL before the write resolves. NB: RocksLevel's own put()/del() drop
 * the `sync` option (they write a chained batch without options), which is why put and del
 * are batches here too. `sync()` writes an empty batch with `sync: true`, which makes RocksDB
 * sync the WAL up to every earlier write (checked with strace: one fdatasync per call).
 *
 * NB: the binding performs WriteBatch writes on the JavaScript thread, so a synced write
 * blocks the event loop for one fdatasync; callers that need throughput batch their writes
 * (the Raft driver writes one batch per Ready: group commit).
 *
 * Iterators read an implicit RocksDB snapshot taken at creation, and `nextBatch` is one native
 * `nextv` call bounded by `iteratorBatchBytesMax`.
 */
import { createRequire } from 'node:module'
import { cpus } from 'node:os'
import { ErrorCode, KvError } from '../errors.js'
import { BaseEngine, levelRange, type NativeIterator, type NormalizedRange } from './base.js'
import type { EngineOp } from './engine.js'

const require = createRequire(import.meta.url)

/** The part of RocksLevel (abstract-level 1.x, callback or promise) that this engine uses. */
interface RocksDatabase {
  open(options: Record<string, unknown>): Promise<void>
  close(): Promise<void>
  getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>>
  batch(ops: EngineOp[], options: { sync: boolean }): Promise<void>
  _batch(ops: EngineOp[], options: { sync: boolean }, callback: (error?: Error | null) => void): void
  iterator(options: Record<string, unknown>): RocksIterator
}

interface RocksIterator {
  nextv(size: number): Promise<Array<[Buffer | undefined, Buffer | undefined]>>
  close(): Promise<void>
}

type RocksLevelClass = new (location: string, options: Record<string, unknown>) => RocksDatabase

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
}

/** RocksDbEngine stores in a RocksDB directory. */
export class RocksDbEngine extends BaseEngine {
  readonly kind = 'rocksdb' as const
  readonly dir: string
  readonly #openOptions: Readonly<Record<string, unknown>>
  #db: RocksDatabase | undefined

  constructor(options: RocksDbEngineOptions) {
    super()
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new KvError(ErrorCode.INVALID, 'RocksDbEngine: dir must be a non-empty string')
    }
    this.dir = options.dir
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
    })
  }

  protected async _open(): Promise<void> {
    const { RocksLevel } = require('@nxtedition/rocksdb') as { RocksLevel: RocksLevelClass }
    const db = new RocksLevel(this.dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await db.open({ ...this.#openOptions })
    this.#db = db
  }

  protected async _close(): Promise<void> {
    const db = this.#db
    this.#db = undefined
    await db?.close()
  }

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    const [value] = await this.db().getMany([key])
    return value
  }

  protected async _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    return this.db().getMany(keys)
  }

  protected async _write(ops: EngineOp[], sync: boolean): Promise<void> {
    await this.db().batch(ops, { sync })
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    const iterator = this.db().iterator({ ...levelRange(range), highWaterMarkBytes: iteratorBatchBytesMax })
    return { next: (count) => iterator.nextv(count), close: () => iterator.close() }
  }

  protected async _sync(): Promise<void> {
    // RocksLevel's public batch() skips empty batches, so call the implementation directly.
    const db = this.db()
    await new Promise<void>((resolve, reject) => db._batch([], { sync: true }, (error) => (error ? reject(error) : resolve())))
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
