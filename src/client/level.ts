/**
 * distkv/level: DistLevel, an abstract-level (v3) database over a DistKV, so modules of the
 * Level ecosystem (sublevels, encodings, level-read-stream, ...) run on distkv unchanged.
 *
 * abstract-level does the public API (encodings, deferred open, sublevels, hooks, events);
 * this adapter maps its private methods onto DistKV calls. Iterators are DistKV queries,
 * created lazily on the first read and restarted on seek(). Writes keep distkv's default:
 * durable when the promise resolves unless `sync: false` is passed, which is stricter than
 * classic-level (where `sync` defaults to false). Iterators read no implicit snapshot: a
 * query streams pages, and a write made meanwhile may or may not be seen.
 */
import { AbstractIterator, AbstractLevel } from 'abstract-level'
import { ErrorCode, KvError } from '../errors.js'
import { connect, open } from './open.js'
import type { ConnectOptions, DistKV, KeyLike, OpenOptions, QueryRange } from './types.js'

/** DistLevelLocation says where the data lives: a directory (local mode), a server, or any DistKV. */
export type DistLevelLocation =
  | string
  | ({ endpoint: string | string[] } & ConnectOptions)
  | { kv: () => Promise<DistKV> }

/** DistLevelOptions are abstract-level's database options plus open()'s local-mode options. */
export interface DistLevelOptions {
  keyEncoding?: string
  valueEncoding?: string
  open?: OpenOptions
  [option: string]: unknown
}

type Format = 'utf8' | 'buffer' | 'view'
type LevelKey = string | Uint8Array
type Options = Record<string, any>

/** clearBatchOpsMax: keys deleted per batch by clear(), well under Limits.batchOpsMax. */
export const clearBatchOpsMax = 1000

const manifest = {
  encodings: { buffer: true, view: true, utf8: true },
  has: true,
  seek: true,
  implicitSnapshots: false,
  explicitSnapshots: false,
  createIfMissing: false,
  errorIfExists: false,
  permanence: true,
}

/** DistLevel is an abstract-level database stored in distkv. */
export class DistLevel<K = string, V = string> extends AbstractLevel<LevelKey, K, V> {
  /** location is what the database was constructed with. */
  readonly location: DistLevelLocation
  private readonly openOptions: OpenOptions | undefined
  private client: DistKV | undefined

  constructor(location: DistLevelLocation, options?: DistLevelOptions) {
    const { open: openOptions, ...levelOptions } = options ?? {}
    super(manifest, levelOptions as any)
    checkLocation(location)
    this.location = location
    this.openOptions = openOptions
  }

  /** kv is the underlying DistKV (only while open), for operations abstract-level does not have. */
  get kv(): DistKV {
    if (this.client === undefined) throw new KvError(ErrorCode.CLOSED, 'DistLevel is not open')
    return this.client
  }

  async _open(_options: Options): Promise<void> {
    const location = this.location
    if (typeof location === 'string') this.client = await open(location, this.openOptions)
    else if ('kv' in location) this.client = await location.kv()
    else {
      const { endpoint, ...connectOptions } = location
      this.client = await connect(endpoint, connectOptions)
    }
  }

  async _close(): Promise<void> {
    const client = this.client
    this.client = undefined
    await client?.close()
  }

  async _get(key: LevelKey, options: Options): Promise<unknown> {
    return decode(await this.kv.get(key), options.valueEncoding)
  }

  async _getMany(keys: LevelKey[], options: Options): Promise<unknown[]> {
    const values = await this.kv.getMany(keys)
    return values.map((value) => decode(value, options.valueEncoding))
  }

  async _has(key: LevelKey): Promise<boolean> {
    return await this.kv.has(key)
  }

  async _hasMany(keys: LevelKey[]): Promise<boolean[]> {
    const kv = this.kv
    return await Promise.all(keys.map((key) => kv.has(key)))
  }

  async _put(key: LevelKey, value: LevelKey, options: Options): Promise<void> {
    await this.kv.put(key, value, writeOptions(options))
  }

  async _del(key: LevelKey, options: Options): Promise<void> {
    await this.kv.del(key, writeOptions(options))
  }

  async _batch(operations: Array<{ type: 'put' | 'del'; key: LevelKey; value?: LevelKey }>, options: Options): Promise<void> {
    const ops = operations.map((op) =>
      op.type === 'put' ? { type: 'put' as const, key: op.key, value: op.value as LevelKey } : { type: 'del' as const, key: op.key },
    )
    await this.kv.batch(ops, writeOptions(options))
  }

  /** _clear deletes the range in batches of clearBatchOpsMax keys (not atomically, as in classic-level). */
  async _clear(options: Options): Promise<void> {
    const range: QueryRange = { ...rangeOf(options), keys: true, values: false }
    const kv = this.kv
    let ops: Array<{ type: 'del'; key: Buffer }> = []
    for await (const [key] of kv.query(range)) {
      ops.push({ type: 'del', key })
      if (ops.length >= clearBatchOpsMax) {
        await kv.batch(ops, writeOptions(options))
        ops = []
      }
    }
    if (ops.length > 0) await kv.batch(ops, writeOptions(options))
  }

  _iterator(options: Options): DistIterator<K, V> {
    return new DistIterator(this as DistLevel<any, any>, this.kv, options)
  }
}

/** DistIterator reads a DistKV query; seek() abandons the current query and starts another. */
class DistIterator<K, V> extends AbstractIterator<DistLevel<any, any>, K, V> {
  private readonly kv: DistKV
  private readonly base: QueryRange
  private readonly keyFormat: Format
  private readonly valueFormat: Format
  private readonly limitMax: number | undefined
  private range: QueryRange
  private source: AsyncIterator<[Buffer, Buffer]> | undefined

  constructor(db: DistLevel<any, any>, kv: DistKV, options: Options) {
    super(db, options as any)
    this.kv = kv
    this.keyFormat = options.keyEncoding
    this.valueFormat = options.valueEncoding
    this.limitMax = Number.isInteger(options.limit) && options.limit >= 0 ? options.limit : undefined
    this.base = { ...rangeOf(options), keys: options.keys !== false, values: options.values !== false }
    this.range = this.base
  }

  async _next(): Promise<[unknown, unknown] | undefined> {
    this.source ??= this.kv.query(this.range)[Symbol.asyncIterator]()
    const step = await this.source.next()
    if (step.done === true) return undefined
    return [decode(step.value[0], this.keyFormat), decode(step.value[1], this.valueFormat)]
  }

  async _nextv(size: number): Promise<Array<[unknown, unknown]>> {
    const entries: Array<[unknown, unknown]> = []
    while (entries.length < size) {
      const entry = await this._next()
      if (entry === undefined) break
      entries.push(entry)
    }
    return entries
  }

  async _all(): Promise<Array<[unknown, unknown]>> {
    return await this._nextv(Number.POSITIVE_INFINITY)
  }

  _seek(target: LevelKey): void {
    void this.abandonSource()
    const key = toBuffer(target)
    const range: QueryRange = { ...this.base }
    // Seeking moves the start bound only, and never outside the range (then nothing is yielded).
    if (this.base.reverse === true) {
      const upper = (this.base.lt ?? this.base.lte) as Buffer | undefined
      if (upper === undefined || Buffer.compare(key, upper) < 0) {
        delete range.lt
        range.lte = key
      }
    } else {
      const lower = (this.base.gt ?? this.base.gte) as Buffer | undefined
      if (lower === undefined || Buffer.compare(key, lower) > 0) {
        delete range.gt
        range.gte = key
      }
    }
    if (this.limitMax !== undefined) range.limit = Math.max(0, this.limitMax - this.count)
    this.range = range
  }

  async _close(): Promise<void> {
    await this.abandonSource()
  }

  private abandonSource(): Promise<unknown> | undefined {
    const source = this.source
    this.source = undefined
    return source?.return?.().catch(() => {})
  }
}

function rangeOf(options: Options): QueryRange {
  const range: QueryRange = { reverse: options.reverse === true }
  // Level gives gte precedence over gt, and lte over lt.
  if (options.gte !== undefined) range.gte = toBuffer(options.gte)
  else if (options.gt !== undefined) range.gt = toBuffer(options.gt)
  if (options.lte !== undefined) range.lte = toBuffer(options.lte)
  else if (options.lt !== undefined) range.lt = toBuffer(options.lt)
  if (Number.isInteger(options.limit) && options.limit >= 0) range.limit = options.limit
  return range
}

function writeOptions(options: Options): { sync?: boolean } {
  return typeof options.sync === 'boolean' ? { sync: options.sync } : {}
}

function toBuffer(key: KeyLike): Buffer {
  if (typeof key === 'string') return Buffer.from(key, 'utf8')
  return Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength)
}

function decode(value: Buffer | undefined, format: Format): unknown {
  if (value === undefined) return undefined
  if (format === 'utf8') return value.toString('utf8')
  if (format === 'view') return new Uint8Array(value.buffer, value.byteOffset, value.byteLength)
  return value
}

function checkLocation(location: unknown): void {
  if (typeof location === 'string' && location.length > 0) return
  if (location !== null && typeof location === 'object') {
    if ('kv' in location && typeof (location as { kv: unknown }).kv === 'function') return
    if ('endpoint' in location) return
  }
  throw new KvError(ErrorCode.INVALID, 'DistLevel needs a directory, { endpoint, token }, or { kv: () => Promise<DistKV> }')
}
