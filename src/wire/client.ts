/**
 * WireClient: one connection to a WireServer, with many requests and streams in flight.
 *
 * Fault model: the connection may drop at any time; every pending request and stream then
 * rejects with KV_ERR_CLOSED and callers above may reconnect and re-send with the same
 * requestId. A broken server (malformed frames, pages beyond the granted window) closes
 * the connection rather than growing client memory.
 */
import { randomFillSync } from 'node:crypto'
import { connect as netConnect } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import { decodeBody, encodeBody, errorFromWire, requestIdKey, requestIdToBytes } from './codec.js'
import { FrameConnection, bodyLength } from './connection.js'
import { FrameType, ZERO_ID, type Frame } from './frame.js'
import { ClientStream } from './client-stream.js'
import { PACK_FAILED, packRequestInto } from './pack-into.js'
import { PROTOCOL_VERSION, type HelloInfo, type RequestOptions, type StreamOptions, type WireAddress, type WireClientOptions } from './types.js'

const connectTimeoutMsDefault = 5000
const streamWindowPagesDefault = 8

/**
 * RequestKey is how a request in flight is looked up: the counter of an id this client made
 * (a number), or the latin1 string of any other id (one the caller chose).
 */
type RequestKey = number | string

/** generatedIdsMax: the counter of generated ids has 48 bits. */
const generatedIdsMax = 2 ** 48

/**
 * Pending is one request waiting for its reply; `deadline` is on the performance.now() clock, 0
 * without a timeout; `idBytes` is kept only for an id the caller chose (a generated one is
 * rebuilt from its key when a CANCEL needs it).
 */
interface Pending {
  resolve: (value: unknown) => void
  reject: (error: KvError) => void
  idBytes: Buffer | undefined
  method: string
  timeoutMs: number
  deadline: number
}

// The promise of a request takes its resolve and reject through this one executor, not a new
// closure per request; they are read right after `new Promise(captureSettlers)` returns.
let capturedResolve: (value: unknown) => void = () => {}
let capturedReject: (error: KvError) => void = () => {}
function captureSettlers(resolve: (value: unknown) => void, reject: (error: KvError) => void): void {
  capturedResolve = resolve
  capturedReject = reject
}

/** WireClient sends requests and streams over one connection. */
export class WireClient {
  /** serverInfo is what the server said about itself in the hello reply. */
  readonly serverInfo: Record<string, unknown>
  private readonly connection: FrameConnection
  private readonly frameBytesMax: number
  private readonly streamWindowPages: number
  private readonly pending = new Map<RequestKey, Pending>()
  private readonly streams = new Map<RequestKey, ClientStream>()
  // Generated ids: 10 random bytes of this client (in the v4 UUID layout) then a 48-bit counter,
  // so a reply's id maps to a number key with a few integer reads, with no string made or random
  // bytes drawn per request. `idScratch` holds the prefix; each request writes its counter into
  // bytes 10-15 and the connection copies the id into the frame at once.
  private readonly idScratch: Buffer
  private readonly idPrefixLow: number
  private readonly idPrefixMid: number
  private readonly idPrefixHigh: number
  private nextIdCounter = 0
  private readonly closeListeners: Array<(error?: Error) => void> = []
  // Request timeouts share one timer, armed for the earliest deadline: a Timeout object, a
  // closure and a timer-list insert and removal per request were a visible part of its CPU.
  // Invariant: deadlineTimer is set iff timedRequests > 0, and fires no later than the
  // earliest deadline among pending requests.
  private deadlineTimer: NodeJS.Timeout | undefined
  private deadlineTimerAt = Number.POSITIVE_INFINITY
  private timedRequests = 0
  private closeReason: KvError | undefined
  private isClosed = false

  private constructor(connection: FrameConnection, serverInfo: Record<string, unknown>, options: Required<WireClientOptions>) {
    this.connection = connection
    this.serverInfo = serverInfo
    this.frameBytesMax = options.frameBytesMax
    this.streamWindowPages = options.streamWindowPages
    this.idScratch = randomFillSync(Buffer.alloc(16), 0, 10)
    this.idScratch[6] = (this.idScratch[6]! & 0x0f) | 0x40 // version 4
    this.idScratch[8] = (this.idScratch[8]! & 0x3f) | 0x80 // RFC 4122 variant
    this.idPrefixLow = this.idScratch.readUInt32LE(0)
    this.idPrefixMid = this.idScratch.readUInt32LE(4)
    this.idPrefixHigh = this.idScratch.readUInt16LE(8)
  }

  /** connect opens a connection and completes the hello; rejects KV_ERR_UNAVAILABLE, KV_ERR_AUTH, KV_ERR_TIMEOUT, ... */
  static async connect(address: WireAddress, hello: HelloInfo, options: WireClientOptions = {}): Promise<WireClient> {
    const resolved: Required<WireClientOptions> = {
      frameBytesMax: options.frameBytesMax ?? Limits.frameBytesMax,
      connectTimeoutMs: options.connectTimeoutMs ?? connectTimeoutMsDefault,
      streamWindowPages: options.streamWindowPages ?? streamWindowPagesDefault,
    }
    const socket = 'path' in address ? netConnect(address.path) : netConnect(address.port, address.host)
    const where = 'path' in address ? address.path : `${address.host}:${address.port}`
    return await new Promise<WireClient>((resolve, reject) => {
      let client: WireClient | undefined
      let settled = false
      const settle = (error: KvError | undefined): void => {
        if (settled) return
        settled = true
        clearTimeout(timer)
        if (error === undefined) return resolve(client!)
        connection.close()
        reject(error)
      }
      const timer = setTimeout(
        () => settle(new KvError(ErrorCode.TIMEOUT, `no hello reply from ${where} within connectTimeoutMs (${resolved.connectTimeoutMs} ms)`)),
        resolved.connectTimeoutMs,
      )
      socket.once('error', (error: NodeJS.ErrnoException) =>
        settle(new KvError(ErrorCode.UNAVAILABLE, `cannot connect to ${where}: ${error.message}`, { errno: error.code })),
      )
      const connection = new FrameConnection(socket, {
        frameBytesMax: resolved.frameBytesMax,
        // The client never stops reading: pausing both ends on each other could deadlock.
        writeBufferBytesMax: Number.POSITIVE_INFINITY,
        onFrame: (frame) => {
          if (client !== undefined) return client.handleFrame(frame)
          if (frame.type === FrameType.ERROR) return settle(errorFromWire(frame.body))
          if (frame.type !== FrameType.HELLO_OK) return settle(new KvError(ErrorCode.PROTOCOL, `expected a hello reply, got frame type ${frame.type}`))
          const info = decodeBody(frame.body)
          if ('error' in info) return settle(info.error)
          client = new WireClient(connection, (info.value ?? {}) as Record<string, unknown>, resolved)
          settle(undefined)
        },
        onFatal: (error) => (client !== undefined ? client.fail(error) : settle(error)),
        onClose: (error) =>
          client !== undefined ? client.handleClose(error) : settle(new KvError(ErrorCode.UNAVAILABLE, `connection to ${where} closed during hello`)),
      })
      const helloBody = encodeBody({ version: PROTOCOL_VERSION, clientId: hello.clientId, name: hello.name, pid: hello.pid, token: hello.token })
      connection.send(FrameType.HELLO, ZERO_ID, helloBody)
    })
  }

  /** closed tells whether the connection is gone. */
  get closed(): boolean {
    return this.isClosed
  }

  /** request sends one request and resolves with its result, or rejects with the server's KvError. */
  request(method: string, params: unknown, options?: RequestOptions): Promise<unknown> {
    if (this.isClosed) return Promise.reject(this.closedError())
    const timeoutMs = options?.timeoutMs
    if (!validTimeout(timeoutMs)) return Promise.reject(invalidTimeout(timeoutMs))
    if (typeof method !== 'string' || method.length === 0) return Promise.reject(invalidMethod())
    let key: RequestKey
    let idBytes: Buffer | undefined
    let sendId: Buffer
    if (options?.requestId === undefined) {
      key = this.newIdCounter()
      sendId = this.idScratch
    } else {
      try {
        ;({ key, idBytes } = this.newId(options.requestId))
      } catch (error) {
        return Promise.reject(error)
      }
      sendId = idBytes
    }
    // The body is encoded straight into the outgoing buffer; msgpackr (then a copy) only for
    // values the in-place encoder does not write or that do not fit in one slab.
    // A getter of the params may throw: that rejects the request, as msgpackr's throw did.
    try {
      const length = this.connection.sendInPlace(FrameType.REQUEST, sendId, this.frameBytesMax, packRequestInto, method, params)
      if (length > this.frameBytesMax) return Promise.reject(this.requestTooLarge(length))
      if (length === PACK_FAILED) {
        const body = encodeBody([method, params])
        this.checkRequestBytes(body.length)
        this.connection.send(FrameType.REQUEST, sendId, body)
      }
    } catch (error) {
      return Promise.reject(error)
    }
    return this.track(key, idBytes, method, timeoutMs)
  }

  /**
   * requestBody is `request` with the body already encoded by the caller as the MessagePack
   * array `[method, params]` (binary payloads built in place, src/local/multi-codec.ts);
   * `method` names the request in errors. The body may come as parts, written one after another
   * (large values by reference, EachRequest).
   */
  requestBody(method: string, body: Buffer | Buffer[], options?: RequestOptions): Promise<unknown> {
    if (this.isClosed) return Promise.reject(this.closedError())
    let key: RequestKey
    let idBytes: Buffer | undefined
    const timeoutMs = options?.timeoutMs
    if (!validTimeout(timeoutMs)) return Promise.reject(invalidTimeout(timeoutMs))
    try {
      this.checkRequestBytes(bodyLength(body))
      if (options?.requestId === undefined) key = this.newIdCounter()
      else ({ key, idBytes } = this.newId(options.requestId))
    } catch (error) {
      return Promise.reject(error)
    }
    this.connection.send(FrameType.REQUEST, idBytes ?? this.idScratch, body)
    return this.track(key, idBytes, method, timeoutMs)
  }

  /** track registers a request just sent and returns the promise its reply settles. */
  private track(key: RequestKey, idBytes: Buffer | undefined, method: string, timeoutMs: number | undefined): Promise<unknown> {
    const promise = new Promise(captureSettlers)
    let deadline = 0
    if (timeoutMs !== undefined) {
      deadline = performance.now() + timeoutMs
      this.timedRequests++
      if (deadline < this.deadlineTimerAt) this.armDeadlineTimer(deadline)
    }
    this.pending.set(key, { resolve: capturedResolve, reject: capturedReject, idBytes, method, timeoutMs: timeoutMs ?? 0, deadline })
    return promise
  }

  private armDeadlineTimer(at: number): void {
    if (this.deadlineTimer !== undefined) clearTimeout(this.deadlineTimer)
    this.deadlineTimerAt = at
    this.deadlineTimer = setTimeout(() => this.expireRequests(), Math.max(1, Math.ceil(at - performance.now())))
  }

  /** untime drops a settled request from the timer's count; the timer goes when none is left, so it never holds the process. */
  private untime(pending: Pending): void {
    if (pending.deadline === 0) return
    pending.deadline = 0
    if (--this.timedRequests > 0) return
    clearTimeout(this.deadlineTimer)
    this.deadlineTimer = undefined
    this.deadlineTimerAt = Number.POSITIVE_INFINITY
  }

  /** expireRequests times out every request past its deadline and re-arms for the next one. */
  private expireRequests(): void {
    this.deadlineTimer = undefined
    this.deadlineTimerAt = Number.POSITIVE_INFINITY
    const now = performance.now()
    let next = Number.POSITIVE_INFINITY
    for (const [key, pending] of this.pending) {
      if (pending.deadline === 0) continue
      if (pending.deadline <= now) this.timeOut(key, pending)
      else if (pending.deadline < next) next = pending.deadline
    }
    if (next !== Number.POSITIVE_INFINITY && this.deadlineTimer === undefined) this.armDeadlineTimer(next)
  }

  /** stream opens a streamed request; pages are flow-controlled and breaking out of the loop cancels it. */
  stream(method: string, params: unknown, options?: StreamOptions): AsyncIterable<unknown> {
    return {
      [Symbol.asyncIterator]: () => {
        if (this.isClosed) return ClientStream.failed(this.closedError())
        let key: RequestKey
        let idBytes: Buffer
        let body: Buffer
        try {
          if (options?.requestId === undefined) {
            key = this.newIdCounter()
            idBytes = Buffer.from(this.idScratch) // kept for the stream's credit and cancel frames
          } else {
            ;({ key, idBytes } = this.newId(options.requestId))
          }
          body = this.encodeRequest(method, params, this.streamWindowPages)
        } catch (error) {
          return ClientStream.failed(error as KvError)
        }
        const stream = new ClientStream(this.streamWindowPages, {
          grant: (pages) => this.connection.send(FrameType.STREAM_CREDIT, idBytes, encodeBody(pages)),
          cancel: () => {
            this.streams.delete(key)
            this.connection.send(FrameType.CANCEL, idBytes, Buffer.alloc(0))
          },
        })
        this.streams.set(key, stream)
        this.connection.send(FrameType.STREAM_OPEN, idBytes, body)
        return stream
      },
    }
  }

  /** onClose registers a listener called once when the connection is lost or closed. */
  onClose(listener: (error?: Error) => void): void {
    if (this.isClosed) queueMicrotask(() => listener(this.closeReason))
    else this.closeListeners.push(listener)
  }

  /** close ends the connection; pending requests reject with KV_ERR_CLOSED. */
  async close(): Promise<void> {
    if (this.isClosed) return
    this.connection.close()
    await new Promise<void>((resolve) => this.onClose(() => resolve()))
  }

  /** newIdCounter takes the next generated id: its counter is the key, written into idScratch. */
  private newIdCounter(): number {
    const counter = this.nextIdCounter++
    // NB: 2^48 requests on one connection (years at a million per second) would wrap onto ids in flight.
    if (counter >= generatedIdsMax) throw new Error('request id counter exhausted')
    this.idScratch.writeUInt16BE(Math.floor(counter / 0x1_0000_0000), 10)
    this.idScratch.writeUInt32BE(counter >>> 0, 12)
    return counter
  }

  /** newId parses an id the caller chose; one already in flight on this connection is KV_ERR_INVALID. */
  private newId(requestId: string): { key: RequestKey; idBytes: Buffer } {
    const idBytes = requestIdToBytes(requestId)
    const key = this.keyOf(idBytes)
    if (this.pending.has(key) || this.streams.has(key)) {
      throw new KvError(ErrorCode.INVALID, `request ${requestId} is already in flight on this connection`)
    }
    return { key, idBytes }
  }

  /** keyOf maps an id to its key: the counter when it carries this client's prefix, else its latin1 string. */
  private keyOf(id: Buffer): RequestKey {
    if (id.readUInt32LE(0) === this.idPrefixLow && id.readUInt32LE(4) === this.idPrefixMid && id.readUInt16LE(8) === this.idPrefixHigh) {
      return id.readUInt16BE(10) * 0x1_0000_0000 + id.readUInt32BE(12)
    }
    return requestIdKey(id)
  }

  /** idBytesOf gives a pending request's id: the caller's, or a generated one rebuilt from its counter. */
  private idBytesOf(key: RequestKey, pending: Pending): Buffer {
    if (pending.idBytes !== undefined) return pending.idBytes
    const id = Buffer.from(this.idScratch)
    id.writeUInt16BE(Math.floor((key as number) / 0x1_0000_0000), 10)
    id.writeUInt32BE((key as number) >>> 0, 12)
    return id
  }

  private encodeRequest(method: string, params: unknown, windowPages?: number): Buffer {
    if (typeof method !== 'string' || method.length === 0) throw invalidMethod()
    const body = encodeBody(windowPages === undefined ? [method, params] : [method, params, windowPages])
    this.checkRequestBytes(body.length)
    return body
  }

  private checkRequestBytes(bytes: number): void {
    if (bytes > this.frameBytesMax) throw this.requestTooLarge(bytes)
  }

  private requestTooLarge(bytes: number): KvError {
    return new KvError(ErrorCode.FRAME_TOO_LARGE, `request of ${bytes} bytes exceeds frameBytesMax (${this.frameBytesMax})`, {
      frameBytes: bytes,
      frameBytesMax: this.frameBytesMax,
    })
  }

  private timeOut(key: RequestKey, pending: Pending): void {
    this.pending.delete(key)
    this.untime(pending)
    this.connection.send(FrameType.CANCEL, this.idBytesOf(key, pending), Buffer.alloc(0))
    const timeoutMs = pending.timeoutMs
    pending.reject(new KvError(ErrorCode.TIMEOUT, `${pending.method} got no reply within timeoutMs (${timeoutMs} ms)`, { timeoutMs }))
  }

  private handleFrame(frame: Frame): void {
    const key = this.keyOf(frame.requestId)
    if (key === zeroKey) {
      if (frame.type === FrameType.ERROR) this.closeReason = errorFromWire(frame.body)
      return
    }
    const pending = this.pending.get(key)
    if (pending !== undefined) return this.settle(key, pending, frame)
    const stream = this.streams.get(key)
    if (stream === undefined) return // a late reply to a request that timed out or was cancelled
    if (frame.type === FrameType.STREAM_PAGE) {
      const page = decodeBody(frame.body)
      if ('error' in page) return this.fail(page.error)
      if (!stream.push(page.value)) this.fail(new KvError(ErrorCode.PROTOCOL, 'server sent stream pages beyond the granted window'))
      return
    }
    this.streams.delete(key)
    if (frame.type === FrameType.STREAM_END) stream.end()
    else if (frame.type === FrameType.ERROR) stream.error(errorFromWire(frame.body))
    else this.fail(new KvError(ErrorCode.PROTOCOL, `unexpected frame type ${frame.type} on a stream`))
  }

  private settle(key: RequestKey, pending: Pending, frame: Frame): void {
    this.pending.delete(key)
    this.untime(pending)
    if (frame.type === FrameType.ERROR) return pending.reject(errorFromWire(frame.body))
    if (frame.type !== FrameType.RESPONSE) return pending.reject(new KvError(ErrorCode.PROTOCOL, `unexpected frame type ${frame.type} for a request`))
    const result = decodeBody(frame.body)
    if ('error' in result) pending.reject(result.error)
    else pending.resolve(result.value)
  }

  private fail(error: KvError): void {
    this.closeReason ??= error
    this.connection.close()
  }

  private closedError(): KvError {
    const why = this.closeReason === undefined ? '' : `: ${this.closeReason.code} ${this.closeReason.message}`
    return new KvError(ErrorCode.CLOSED, `connection closed${why}`, this.closeReason === undefined ? undefined : { cause: this.closeReason.code })
  }

  private handleClose(error?: Error): void {
    if (this.isClosed) return
    this.isClosed = true
    if (this.closeReason === undefined && error instanceof KvError) this.closeReason = error
    const closedError = this.closedError()
    for (const pending of this.pending.values()) {
      this.untime(pending)
      pending.reject(closedError)
    }
    this.pending.clear()
    for (const stream of this.streams.values()) stream.error(closedError)
    this.streams.clear()
    for (const listener of this.closeListeners.splice(0)) listener(this.closeReason)
  }
}

const zeroKey = requestIdKey(ZERO_ID)

function invalidMethod(): KvError {
  return new KvError(ErrorCode.INVALID, 'method must be a non-empty string')
}

function validTimeout(timeoutMs: number | undefined): boolean {
  return timeoutMs === undefined || (typeof timeoutMs === 'number' && timeoutMs > 0 && timeoutMs <= 2_147_483_647)
}

function invalidTimeout(timeoutMs: unknown): KvError {
  return new KvError(ErrorCode.INVALID, `timeoutMs must be a number between 1 and 2147483647, got ${String(timeoutMs)}`)
}
