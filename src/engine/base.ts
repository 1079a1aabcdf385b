/**
 * The common half of every storage engine (the abstract-level pattern): public methods check
 * the engine's state and their arguments, normalise ranges, then call the implementation's
 * `_open/_close/_get/_getMany/_write/_iterator/_sync`. Implementations therefore only ever see
 * well-formed input and an open engine.
 *
 * Fault model: the engine is used by one process. Misuse by the caller (a closed engine, a
 * non-Buffer key, a busy iterator) is an operating error with a KV_ERR_* code; errors from the
 * native libraries are mapped to codes by `nativeError`.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine, EngineIterator, EngineOp, RangeOptions, WriteOptions } from './engine.js'

/** iteratorBatchEntriesMax bounds `nextBatch(count)`: the most entries one call may return. */
export const iteratorBatchEntriesMax = 100_000

/** EMPTY is the half of an entry left out when `keys: false` or `values: false`. */
export const EMPTY: Buffer = Buffer.alloc(0)

/** Bound is one side of a key range. */
export interface Bound {
  key: Buffer
  inclusive: boolean
}

/** NormalizedRange is a RangeOptions with at most one bound per side and every default filled in. */
export interface NormalizedRange {
  lower: Bound | undefined
  upper: Bound | undefined
  reverse: boolean
  /** limit: most entries to yield; Infinity when there is none. */
  limit: number
  keys: boolean
  values: boolean
}

/** NativeIterator is what an implementation returns from `_iterator`: a cursor over a snapshot. */
export interface NativeIterator {
  /** next returns 1..count entries, or none at the end; an omitted half may be undefined. */
  next(count: number): Promise<Array<[Buffer | undefined, Buffer | undefined]>>
  close(): Promise<void>
}

type Status = 'closed' | 'opening' | 'open' | 'closing'

/** BaseEngine implements the Engine interface's checks once for every implementation. */
export abstract class BaseEngine implements Engine {
  abstract readonly kind: Engine['kind']
  #status: Status = 'closed'
  #transition: Promise<void> = Promise.resolve()
  readonly #iterators = new Set<EngineIteratorHandle>()
  /** inflight: native calls not yet settled; close() waits for them (bounded by the callers' own limits). */
  readonly #inflight = new Set<Promise<unknown>>()

  protected abstract _open(): Promise<void>
  protected abstract _close(): Promise<void>
  protected abstract _get(key: Buffer): Promise<Buffer | undefined>
  protected abstract _getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>>
  protected abstract _write(ops: EngineOp[], sync: boolean): Promise<void>
  protected abstract _iterator(range: NormalizedRange): NativeIterator
  protected abstract _sync(): Promise<void>

  /** status is 'open' between a resolved open() and the next close(). */
  get status(): Status {
    return this.#status
  }

  /** open opens the engine; opening an open engine does nothing, and a closed one may be reopened. */
  open(): Promise<void> {
    // A failed earlier open or close must not fail this one: each transition starts afresh.
    this.#transition = this.#transition.catch(() => undefined).then(async () => {
      if (this.#status === 'open') return
      this.#status = 'opening'
      try {
        await this._open()
        this.#status = 'open'
      } catch (error) {
        this.#status = 'closed'
        throw nativeError(error, 'open')
      }
    })
    return this.#transition
  }

  /** close closes every open iterator, then the engine; closing a closed engine does nothing. */
  close(): Promise<void> {
    const closing = this.#transition.catch(() => undefined).then(async () => {
      if (this.#status !== 'open') return
      this.#status = 'closing'
      try {
        // NB: RocksLevel's close with reads in flight reports success without closing the
        // database (its deferred-close path skips db_close), which keeps the LOCK held; so no
        // native call may be in flight when _close runs. New calls already fail (status).
        await Promise.allSettled([...this.#inflight])
        await Promise.all([...this.#iterators].map((iterator) => iterator.close()))
        await this._close()
      } finally {
        this.#status = 'closed'
      }
    })
    this.#transition = closing
    return closing
  }

  /** get resolves to the value of `key`, or undefined when it is absent. */
  async get(key: Buffer): Promise<Buffer | undefined> {
    this.checkOpen('get')
    checkKey(key, 'key')
    return this.native('get', () => this._get(key))
  }

  /** getMany resolves to one value (or undefined) per key, in the order given. */
  async getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    this.checkOpen('getMany')
    if (!Array.isArray(keys)) throw new KvError(ErrorCode.INVALID, 'getMany: keys must be an array')
    // The loop names the bad key only on failure: a name built per key costs more than the check.
    for (let index = 0; index < keys.length; index++) {
      if (!Buffer.isBuffer(keys[index])) checkKey(keys[index], `keys[${index}]`)
    }
    if (keys.length === 0) return []
    return this.native('getMany', () => this._getMany(keys))
  }

  /** put stores `value` under `key`. */
  async put(key: Buffer, value: Buffer, options?: WriteOptions): Promise<void> {
    return this.batch([{ type: 'put', key, value }], options)
  }

  /** del removes `key`; removing an absent key is not an error. */
  async del(key: Buffer, options?: WriteOptions): Promise<void> {
    return this.batch([{ type: 'del', key }], options)
  }

  /** batch applies every op or none; every op is checked before anything is written. */
  async batch(ops: EngineOp[], options?: WriteOptions): Promise<void> {
    this.checkOpen('batch')
    checkOps(ops)
    const sync = options?.sync === true
    if (ops.length === 0) {
      if (sync) await this.native('sync', () => this._sync())
      return
    }
    return this.native('batch', () => this._write(ops, sync))
  }

  /** iterator opens a cursor over a snapshot of `range`, taken now; throws KV_ERR_CLOSED when closed. */
  iterator(range?: RangeOptions): EngineIterator {
    this.checkOpen('iterator')
    const normalized = normalizeRange(range ?? {})
    const track = <T>(promise: Promise<T>) => this.track(promise)
    const handle = new EngineIteratorHandle(this._iterator(normalized), normalized, { iterators: this.#iterators, track })
    this.#iterators.add(handle)
    return handle
  }

  /** sync makes every write acknowledged so far durable. */
  async sync(): Promise<void> {
    this.checkOpen('sync')
    return this.native('sync', () => this._sync())
  }

  /** abandon marks the engine closed and ends its iterators without native calls, for a simulated crash. */
  protected abandon(): void {
    for (const iterator of this.#iterators) iterator.abandon()
    this.#iterators.clear()
    this.#status = 'closed'
  }

  private checkOpen(operation: string): void {
    if (this.#status !== 'open') {
      throw new KvError(ErrorCode.CLOSED, `${this.kind} engine: ${operation} on an engine that is ${this.#status}`)
    }
  }

  private async native<T>(operation: string, call: () => Promise<T>): Promise<T> {
    try {
      return await this.track(call())
    } catch (error) {
      throw nativeError(error, operation)
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.#inflight.add(promise)
    const forget = () => void this.#inflight.delete(promise)
    promise.then(forget, forget)
    return promise
  }
}

/** IteratorRegistry is how an iterator tells its engine that it exists and what it has in flight. */
interface IteratorRegistry {
  iterators: Set<EngineIteratorHandle>
  track<T>(promise: Promise<T>): Promise<T>
}

/** EngineIteratorHandle checks calls to a NativeIterator and fills in omitted halves. */
class EngineIteratorHandle implements EngineIterator {
  #native: NativeIterator
  #closed = false
  #busy = false
  readonly #range: NormalizedRange
  readonly #registry: IteratorRegistry

  constructor(native: NativeIterator, range: NormalizedRange, registry: IteratorRegistry) {
    this.#native = native
    this.#range = range
    this.#registry = registry
  }

  async nextBatch(count: number): Promise<Array<[Buffer, Buffer]>> {
    if (!Number.isInteger(count) || count < 1 || count > iteratorBatchEntriesMax) {
      throw new KvError(ErrorCode.INVALID, `nextBatch: count must be an integer in 1..${iteratorBatchEntriesMax} (iteratorBatchEntriesMax)`, { count })
    }
    if (this.#closed) throw new KvError(ErrorCode.CLOSED, 'nextBatch: the iterator is closed')
    if (this.#busy) throw new KvError(ErrorCode.INVALID, 'nextBatch: called again before the previous call resolved')
    this.#busy = true
    try {
      const rows = await this.#registry.track(this.#native.next(count))
      const { keys, values } = this.#range
      return rows.map(([key, value]) => [keys ? (key ?? EMPTY) : EMPTY, values ? (value ?? EMPTY) : EMPTY])
    } catch (error) {
      throw nativeError(error, 'nextBatch')
    } finally {
      this.#busy = false
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    this.#registry.iterators.delete(this)
    await this.#native.close()
  }

  abandon(): void {
    this.#closed = true
  }
}

/** tighter picks, of two lower (or two upper) bounds, the one that admits fewer keys. */
function tighter(a: Bound | undefined, b: Bound | undefined, side: 'lower' | 'upper'): Bound | undefined {
  if (a === undefined) return b
  if (b === undefined) return a
  const order = Buffer.compare(a.key, b.key)
  if (order === 0) return a.inclusive ? b : a
  return (order > 0) === (side === 'lower') ? a : b
}

/** normalizeRange checks a RangeOptions and reduces gt/gte and lt/lte to one bound per side. */
export function normalizeRange(range: RangeOptions): NormalizedRange {
  if (range === null || typeof range !== 'object') throw new KvError(ErrorCode.INVALID, 'range must be an object')
  for (const name of ['gt', 'gte', 'lt', 'lte'] as const) {
    if (range[name] !== undefined) checkKey(range[name], name)
  }
  const limit = range.limit
  if (limit !== undefined && (typeof limit !== 'number' || !(Number.isInteger(limit) || limit === Infinity))) {
    throw new KvError(ErrorCode.INVALID, 'range.limit must be an integer (negative means no limit)', { limit })
  }
  const side = (exclusive: Buffer | undefined, inclusive: Buffer | undefined, which: 'lower' | 'upper') =>
    tighter(exclusive && { key: exclusive, inclusive: false }, inclusive && { key: inclusive, inclusive: true }, which)
  return {
    lower: side(range.gt, range.gte, 'lower'),
    upper: side(range.lt, range.lte, 'upper'),
    reverse: range.reverse === true,
    limit: limit === undefined || limit < 0 ? Infinity : limit,
    keys: range.keys !== false,
    values: range.values !== false,
  }
}

/** levelRange turns a NormalizedRange into abstract-level iterator options. */
export function levelRange(range: NormalizedRange): Record<string, unknown> {
  const options: Record<string, unknown> = { reverse: range.reverse, keys: range.keys, values: range.values }
  if (range.limit !== Infinity) options.limit = range.limit
  if (range.lower) options[range.lower.inclusive ? 'gte' : 'gt'] = range.lower.key
  if (range.upper) options[range.upper.inclusive ? 'lte' : 'lt'] = range.upper.key
  return options
}

function checkKey(key: unknown, name: string): asserts key is Buffer {
  if (!Buffer.isBuffer(key)) throw new KvError(ErrorCode.INVALID, `${name} must be a Buffer`)
}

function checkOps(ops: EngineOp[]): void {
  if (!Array.isArray(ops)) throw new KvError(ErrorCode.INVALID, 'batch: ops must be an array')
  for (let index = 0; index < ops.length; index++) {
    const op = ops[index]
    if (op === null || typeof op !== 'object') throw new KvError(ErrorCode.INVALID, `batch: ops[${index}] must be an object`)
    // Names are built only on failure: this runs for every op of every batch.
    if (!Buffer.isBuffer(op.key)) checkKey(op.key, `ops[${index}].key`)
    if (op.type === 'put') {
      if (!Buffer.isBuffer(op.value)) checkKey(op.value, `ops[${index}].value`)
    } else if (op.type !== 'del') {
      throw new KvError(ErrorCode.INVALID, `batch: ops[${index}].type must be 'put' or 'del'`)
    }
  }
}

/** nativeError maps an error from a storage library to a KvError; KvErrors pass through. */
export function nativeError(error: unknown, operation: string): KvError {
  if (error instanceof KvError) return error
  const err = error as { code?: unknown; message?: unknown; cause?: { message?: unknown } }
  const text = `${String(err?.message ?? error)} ${String(err?.cause?.message ?? '')}`
  if (err?.code === 'LEVEL_DATABASE_NOT_OPEN' && !/lock/i.test(text)) {
    return new KvError(ErrorCode.CLOSED, `${operation}: database is not open`, { cause: text.trim() })
  }
  if (err?.code === 'LEVEL_LOCKED' || /\block\b|resource temporarily unavailable/i.test(text)) {
    return new KvError(ErrorCode.UNAVAILABLE, `${operation}: database directory is locked (another process or engine instance has it open)`, { cause: text.trim() })
  }
  if (/ENOSPC|no space left/i.test(text)) {
    return new KvError(ErrorCode.DISK_FULL, `${operation}: disk is full`, { cause: text.trim() })
  }
  return new KvError(ErrorCode.INTERNAL, `${operation}: storage error: ${text.trim()}`)
}
