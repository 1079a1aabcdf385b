/**
 * RemoteKV: the DistKV interface over one wire connection to a local server, kept alive
 * across server restarts.
 *
 * Fault model: the server may die at any time. Every request gets one UUID when it is made;
 * if the connection drops before the reply, the client reconnects (through its Connector,
 * which for `open()` may start a new server) and re-sends the request with the same UUID,
 * until `requestTimeoutMs` has passed since the request was made (then KV_ERR_TIMEOUT). The
 * server applies a write id at most once, so a re-sent write is never applied twice.
 * A query interrupted by a restart resumes after the last key it delivered.
 *
 * Single-key calls (get, has, getSize, put, del) made in one event-loop turn are coalesced
 * into `kv.multi` frames (src/client/coalesce.ts); each keeps its own request id across
 * re-sends. A server without `kv.multi` (a cluster proxy, an older local server) answers
 * KV_ERR_UNKNOWN_METHOD once, and the client falls back to one request per call.
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, KvError, isKvError } from '../errors.js'
import { LocalMethod } from '../local/handlers.js'
import { checkKey, checkKeys, checkOps, checkRange, checkSync, checkValue, type WireRange } from '../local/validate.js'
import { sleep } from '../local/discovery.js'
import { MultiKind, type MultiKindValue, type MultiOp } from '../local/multi.js'
import { requestIdFromBytes } from '../wire/codec.js'
import { Coalescer, newOpId } from './coalesce.js'
import { decodeMultiReply, encodeMultiRequestBody } from '../local/multi-codec.js'
import type { HelloInfo, WireClient } from '../wire/index.js'
import type { BatchOp, BatchOptions, DistKV, KeyLike, QueryRange, ValueLike, WriteOptions } from './types.js'

/** Connector opens a new connection for `hello`, retrying as it sees fit until `deadline` (epoch ms). */
export type Connector = (hello: HelloInfo, deadline: number) => Promise<WireClient>

/** requestTimeoutMsMax: the longest request timeout accepted; it must stay below the server's request-id retention. */
export const requestTimeoutMsMax = 5 * 60_000

/** defaultRequestTimeoutMs: how long a request may take, across reconnects, by default. */
export const defaultRequestTimeoutMs = 30_000

/** RemoteKVOptions configures a RemoteKV. */
export interface RemoteKVOptions {
  connector: Connector
  name?: string | undefined
  token?: string | undefined
  requestTimeoutMs?: number | undefined
  /** coalesce: send concurrent single-key calls as `kv.multi` frames (default true). */
  coalesce?: boolean | undefined
}

const retryBackoffMsMax = 250

function closedError(): KvError {
  return new KvError(ErrorCode.CLOSED, 'this DistKV client is closed')
}

/** isRetryable tells errors that mean "this connection is gone or going" from answers. */
function isRetryable(error: unknown): boolean {
  // A cluster proxy's `quorumLost` UNAVAILABLE is an answer: another proxy would find the same shard down.
  if (isKvError(error) && error.details?.quorumLost === true) return false
  return isKvError(error) && (error.code === ErrorCode.CLOSED || error.code === ErrorCode.UNAVAILABLE)
}

/** checkRequestTimeoutMs validates the requestTimeoutMs option. */
export function checkRequestTimeoutMs(value: unknown): number {
  if (value === undefined) return defaultRequestTimeoutMs
  if (typeof value !== 'number' || !Number.isInteger(value) || value <= 0 || value > requestTimeoutMsMax) {
    throw new KvError(ErrorCode.INVALID, `requestTimeoutMs must be an integer between 1 and requestTimeoutMsMax (${requestTimeoutMsMax}), got ${String(value)}`)
  }
  return value
}

function asBuffer(value: unknown): Buffer | undefined {
  if (value === null || value === undefined) return undefined
  if (Buffer.isBuffer(value)) return value
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  throw new KvError(ErrorCode.PROTOCOL, 'server sent a value that is not bytes')
}

/** RemoteKV implements DistKV by forwarding each call to the server that owns the data. */
export class RemoteKV implements DistKV {
  /** clientId is the UUID this client registers with every server it connects to. */
  readonly clientId: string = randomUUID()
  private readonly hello: HelloInfo
  private readonly connector: Connector
  private readonly requestTimeoutMs: number
  private connection: WireClient | undefined
  private connecting: Promise<WireClient> | undefined
  private closed = false
  private coalescer: Coalescer | undefined
  /** binaryMulti: coalesced frames travel as `kv.multiBinary` until the server says it has no such method. */
  private binaryMulti = true

  constructor(options: RemoteKVOptions) {
    this.connector = options.connector
    if (options.coalesce !== false) this.coalescer = new Coalescer((ops, deadline) => this.sendMulti(ops, deadline))
    this.requestTimeoutMs = checkRequestTimeoutMs(options.requestTimeoutMs)
    const name = options.name ?? process.title
    if (typeof name !== 'string') throw new KvError(ErrorCode.INVALID, 'name must be a string')
    this.hello = { clientId: this.clientId, name, pid: process.pid }
    if (options.token !== undefined) this.hello.token = options.token
  }

  /** start connects once, so that open()/connect() fail fast on a bad directory or token. */
  async start(): Promise<this> {
    await this.getConnection(Date.now() + this.requestTimeoutMs)
    return this
  }

  /** serverInfo is what the current server said about itself in its hello reply. */
  get serverInfo(): Record<string, unknown> | undefined {
    return this.connection?.serverInfo
  }

  get(key: KeyLike): Promise<Buffer | undefined> {
    try {
      return this.single(MultiKind.get, checkKey(key), null, true, asBuffer)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  async getMany(keys: KeyLike[]): Promise<Array<Buffer | undefined>> {
    const result = await this.call(LocalMethod.getMany, { keys: checkKeys(keys) })
    if (!Array.isArray(result)) throw new KvError(ErrorCode.PROTOCOL, 'server sent a getMany result that is not an array')
    return result.map(asBuffer)
  }

  put(key: KeyLike, value: ValueLike, options?: WriteOptions): Promise<void> {
    try {
      return this.single(MultiKind.put, checkKey(key), checkValue(value), checkSync(options), ignore)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  async del(key: KeyLike, options?: WriteOptions): Promise<void> {
    await this.single(MultiKind.del, checkKey(key), null, checkSync(options), ignore)
  }

  async batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    // A local server holds one engine, so every batch is atomic whatever `atomic` says; a cluster
    // proxy splits a batch across shards only when told `atomic: false`.
    const atomic = options?.atomic === false ? { atomic: false } : {}
    await this.call(LocalMethod.batch, { ops: checkOps(ops), sync: checkSync(options), ...atomic })
  }

  async has(key: KeyLike): Promise<boolean> {
    return this.single(MultiKind.has, checkKey(key), null, true, (found) => found === true)
  }

  async getSize(key: KeyLike): Promise<number | undefined> {
    return this.single(MultiKind.getSize, checkKey(key), null, true, (size) => (typeof size === 'number' ? size : undefined))
  }

  async sync(): Promise<void> {
    await this.call(LocalMethod.sync, {})
  }

  /** call sends one request (of any method, e.g. admin ones) with retries across reconnects. */
  async call(method: string, params: unknown): Promise<unknown> {
    const requestId = randomUUID()
    return this.retrying(method, async (deadline) => {
      const connection = await this.getConnection(deadline)
      return connection.request(method, params, { requestId, timeoutMs: deadline - Date.now() })
    })
  }

  /**
   * single sends one single-key call, coalesced with the others of this turn when the server
   * allows, and resolves with `map` of its result.
   */
  private single<T>(kind: MultiKindValue, key: Buffer, value: Buffer | null, sync: boolean, map: (result: unknown) => T): Promise<T> {
    const id = newOpId()
    const op: MultiOp = kind === MultiKind.put || kind === MultiKind.del ? [kind, id, key, value, sync] : [kind, id, key]
    const deadline = Date.now() + this.requestTimeoutMs
    const coalescer = this.coalescer
    if (coalescer === undefined || this.closed) return this.retrying(methodOf[kind], (until) => this.attemptSingle(op, until), deadline).then(map)
    // The first attempt skips the retry loop, and its promises: one promise per call on the common path.
    return new Promise<T>((resolve, reject) =>
      coalescer.enqueue(
        op,
        deadline,
        (result) => {
          try {
            resolve(map(result))
          } catch (error) {
            reject(error)
          }
        },
        (error) => {
          const failed = (): never => this.coalescingFailed(error)
          this.retrying(methodOf[kind], (until) => this.attemptSingle(op, until), deadline, failed).then(map).then(resolve, reject)
        },
      ),
    )
  }

  /** attemptSingle makes one (re-)attempt of a single-key call, coalesced unless the server cannot. */
  private async attemptSingle(op: MultiOp, until: number): Promise<unknown> {
    const coalescer = this.coalescer
    if (coalescer !== undefined) return coalescer.submit(op, until).catch((error: unknown) => this.coalescingFailed(error))
    const connection = await this.getConnection(until)
    return connection.request(methodOf[op[0]], singleParams(op), { requestId: requestIdFromBytes(op[1]), timeoutMs: until - Date.now() })
  }

  /** coalescingFailed turns a server's "no kv.multi" into falling back to one request per call. */
  private coalescingFailed(error: unknown): never {
    if (isKvError(error) && error.code === ErrorCode.UNKNOWN_METHOD && error.details?.method === LocalMethod.multiBinary) {
      // An older server: the same frames as MessagePack `kv.multi`, with the same ids.
      this.binaryMulti = false
      throw new KvError(ErrorCode.UNAVAILABLE, 'server has no binary kv.multi; re-sending as kv.multi')
    }
    if (isKvError(error) && error.code === ErrorCode.UNKNOWN_METHOD && error.details?.method === LocalMethod.multi) {
      // From now on one request per call, with the same ids, so still at most once.
      this.coalescer = undefined
      throw new KvError(ErrorCode.UNAVAILABLE, 'server does not coalesce; re-sending alone')
    }
    throw error
  }

  /**
   * retrying runs `attempt` until it answers, re-running it after a lost connection (or a
   * timeout before the caller's own deadline) with backoff, until `deadline`. `failed` is the
   * error of a first attempt made by the caller.
   */
  private async retrying(
    method: string,
    attempt: (deadline: number) => Promise<unknown>,
    deadline = Date.now() + this.requestTimeoutMs,
    failed?: () => never,
  ): Promise<unknown> {
    let backoffMs = 5
    let lastError: unknown
    for (let first = true; ; first = false) {
      if (this.closed) throw closedError()
      if (deadline - Date.now() <= 0) throw this.timeoutError(method, lastError)
      try {
        if (first && failed !== undefined) failed()
        return await attempt(deadline)
      } catch (error) {
        if (this.closed) throw closedError()
        // A coalesced frame times out with its least patient op; the others still have time.
        const early = isKvError(error) && error.code === ErrorCode.TIMEOUT && Date.now() < deadline
        if (!isRetryable(error) && !early) throw error
        lastError = error
      }
      await sleep(backoffMs)
      backoffMs = Math.min(backoffMs * 2, retryBackoffMsMax)
    }
  }

  private async sendMulti(ops: MultiOp[], deadline: number): Promise<unknown> {
    const connection = await this.getConnection(deadline)
    const remaining = deadline - Date.now()
    if (remaining <= 0) throw new KvError(ErrorCode.TIMEOUT, `${LocalMethod.multi} ran out of time before it was sent`)
    if (!this.binaryMulti) return connection.request(LocalMethod.multi, { ops }, { timeoutMs: remaining })
    const reply = await connection.requestBody(LocalMethod.multiBinary, encodeMultiRequestBody(ops), { timeoutMs: remaining })
    return decodeMultiReply(reply, ops.length)
  }

  query(range?: QueryRange): AsyncIterable<[Buffer, Buffer]> {
    return this.queryEntries(range)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    const connection = this.connection
    this.connection = undefined
    await connection?.close()
    // A connection still being set up is closed by getConnection when it lands.
  }

  private async *queryEntries(range: QueryRange | undefined): AsyncGenerator<[Buffer, Buffer]> {
    const wire = checkRange(range)
    let delivered = 0
    let lastKey: Buffer | undefined
    let deadline = Date.now() + this.requestTimeoutMs
    let backoffMs = 5
    for (;;) {
      if (this.closed) throw closedError()
      if (Date.now() >= deadline) throw this.timeoutError(LocalMethod.query, undefined)
      try {
        const connection = await this.getConnection(deadline)
        for await (const page of connection.stream(LocalMethod.query, resumeRange(wire, lastKey, delivered))) {
          const { keys, values } = checkPage(page)
          for (let i = 0; i < keys.length; i++) {
            lastKey = keys[i]!
            delivered++
            yield [keys[i]!, values[i]!]
          }
          deadline = Date.now() + this.requestTimeoutMs
        }
        return
      } catch (error) {
        if (this.closed) throw closedError()
        // Without keys there is no position to resume from.
        if (!isRetryable(error) || (wire.keys === false && delivered > 0)) throw error
      }
      await sleep(backoffMs)
      backoffMs = Math.min(backoffMs * 2, retryBackoffMsMax)
    }
  }

  private timeoutError(method: string, lastError: unknown): KvError {
    const why = lastError instanceof Error ? `: ${lastError.message}` : ''
    return new KvError(ErrorCode.TIMEOUT, `${method} did not complete within requestTimeoutMs (${this.requestTimeoutMs})${why}`, {
      requestTimeoutMs: this.requestTimeoutMs,
    })
  }

  private async getConnection(deadline: number): Promise<WireClient> {
    if (this.closed) throw closedError()
    if (this.connection !== undefined && !this.connection.closed) return this.connection
    // NB: concurrent callers share one connection attempt, bounded by the first caller's
    // deadline; a caller with a later deadline that sees it fail simply tries again.
    this.connecting ??= this.connector(this.hello, deadline)
      .then(async (connection) => {
        if (this.closed) {
          await connection.close()
          throw closedError()
        }
        this.connection = connection
        connection.onClose(() => {
          if (this.connection === connection) this.connection = undefined
        })
        return connection
      })
      .finally(() => {
        this.connecting = undefined
      })
    return this.connecting
  }
}

function ignore(): void {}

const methodOf: Record<MultiKindValue, string> = {
  [MultiKind.get]: LocalMethod.get,
  [MultiKind.put]: LocalMethod.put,
  [MultiKind.del]: LocalMethod.del,
  [MultiKind.has]: LocalMethod.has,
  [MultiKind.getSize]: LocalMethod.getSize,
}

/** singleParams is the params of the one-request form of a multi op. */
function singleParams(op: MultiOp): Record<string, unknown> {
  const [kind, , key, value, sync] = op
  if (kind === MultiKind.put) return { key, value, sync }
  if (kind === MultiKind.del) return { key, sync }
  return { key }
}

function checkPage(page: unknown): { keys: Buffer[]; values: Buffer[] } {
  const { keys, values } = (page ?? {}) as { keys?: unknown; values?: unknown }
  if (!Array.isArray(keys) || !Array.isArray(values) || keys.length !== values.length) {
    throw new KvError(ErrorCode.PROTOCOL, 'server sent a malformed query page')
  }
  const empty = Buffer.alloc(0)
  return { keys: keys.map((key) => asBuffer(key) ?? empty), values: values.map((value) => asBuffer(value) ?? empty) }
}

/** resumeRange narrows a range to what comes after `lastKey`, with the limit reduced by what was delivered. */
function resumeRange(range: WireRange, lastKey: Buffer | undefined, delivered: number): WireRange {
  if (lastKey === undefined) return range
  const next: WireRange = { ...range }
  if (range.reverse === true) {
    delete next.lte
    next.lt = lastKey
  } else {
    delete next.gte
    next.gt = lastKey
  }
  if (range.limit !== undefined) next.limit = Math.max(0, range.limit - delivered)
  return next
}
