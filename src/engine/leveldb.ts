/**
 * The LevelDB engine, on classic-level (abstract-level 3): the lighter alternative to RocksDB.
 *
 * Durability: `sync: true` writes pass LevelDB's WriteOptions.sync (fsync of the log before the
 * write resolves). `sync()` has no native call and LevelDB skips empty write batches, so it
 * fsyncs the write-ahead log files (`NNNNNN.log`) itself: fsync works on the file, whatever
 * descriptor it is called on. A log that a memtable flush already retired may be gone; its
 * data is then in a table file that LevelDB synced when it wrote it, so a missing log is fine.
 * The directory is fsynced too, so that a log created since the last sync is reachable.
 *
 * Iterators read an implicit LevelDB snapshot taken at creation; `nextBatch` is one `nextv`.
 */
import { open as openFile, readdir } from 'node:fs/promises'
import { join } from 'node:path'
import { ClassicLevel } from 'classic-level'
import { ErrorCode, KvError } from '../errors.js'
import { BaseEngine, levelRange, type NativeIterator, type NormalizedRange } from './base.js'
import type { EngineOp } from './engine.js'
import { checkSize, iteratorBatchBytesMax } from './rocksdb.js'

/** LevelDbEngineOptions: the directory and the LevelDB tunings worth changing. */
export interface LevelDbEngineOptions {
  dir: string
  /** cacheBytes: LRU block cache; default 32 MiB. */
  cacheBytes?: number
  /** writeBufferBytes: memtable size before a flush to a table file; default 16 MiB. */
  writeBufferBytes?: number
}

/** LevelDbEngine stores in a LevelDB directory. */
export class LevelDbEngine extends BaseEngine {
  readonly kind = 'leveldb' as const
  readonly dir: string
  readonly #cacheSize: number
  readonly #writeBufferSize: number
  #db: ClassicLevel<Buffer, Buffer> | undefined

  constructor(options: LevelDbEngineOptions) {
    super()
    if (typeof options?.dir !== 'string' || options.dir === '') {
      throw new KvError(ErrorCode.INVALID, 'LevelDbEngine: dir must be a non-empty string')
    }
    this.dir = options.dir
    this.#cacheSize = checkSize('cacheBytes', options.cacheBytes ?? 32 * 1024 * 1024, 0, 2 ** 32 - 1)
    this.#writeBufferSize = checkSize('writeBufferBytes', options.writeBufferBytes ?? 16 * 1024 * 1024, 64 * 1024, 2 ** 30)
  }

  protected async _open(): Promise<void> {
    const db = new ClassicLevel<Buffer, Buffer>(this.dir, { keyEncoding: 'buffer', valueEncoding: 'buffer' })
    await db.open({ createIfMissing: true, cacheSize: this.#cacheSize, writeBufferSize: this.#writeBufferSize })
    this.#db = db
  }

  protected async _close(): Promise<void> {
    const db = this.#db
    this.#db = undefined
    await db?.close()
  }

  protected async _get(key: Buffer): Promise<Buffer | undefined> {
    return this.db().get(key)
  }

  protected async _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    return this.db().getMany(keys)
  }

  protected async _write(ops: EngineOp[], sync: boolean): Promise<void> {
    await this.db().batch(ops, { sync })
  }

  protected _iterator(range: NormalizedRange): NativeIterator {
    const iterator = this.db().iterator({ ...levelRange(range), highWaterMarkBytes: iteratorBatchBytesMax })
    return {
      next: (count) => iterator.nextv(count) as Promise<Array<[Buffer | undefined, Buffer | undefined]>>,
      close: () => iterator.close(),
    }
  }

  protected async _sync(): Promise<void> {
    this.db()
    const names = (await readdir(this.dir)).filter((name) => /^\d+\.log$/.test(name))
    await Promise.all(names.map((name) => fsyncPath(join(this.dir, name), true)))
    await fsyncPath(this.dir, false)
  }

  private db(): ClassicLevel<Buffer, Buffer> {
    const db = this.#db
    if (db === undefined) throw new KvError(ErrorCode.CLOSED, 'leveldb engine is not open')
    return db
  }
}

/** fsyncPath fsyncs a file or directory; `mayVanish` tolerates a file deleted meanwhile. */
async function fsyncPath(path: string, mayVanish: boolean): Promise<void> {
  let handle
  try {
    handle = await openFile(path, 'r')
  } catch (error) {
    if (mayVanish && (error as NodeJS.ErrnoException).code === 'ENOENT') return
    throw error
  }
  try {
    await handle.sync()
  } finally {
    await handle.close()
  }
}
