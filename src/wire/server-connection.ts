/**
 * ServerConnection: the server side of one client connection, from hello to close.
 *
 * Fault model: the client may be hostile or broken. A malformed or oversized frame, a frame
 * before the hello, or a refused hello ends this connection with an error frame and never
 * touches other connections. Handlers run concurrently, at most `inflightRequestsMax` per
 * connection (unary requests plus open streams); each sees an AbortSignal that fires when
 * the client cancels or the connection drops, and an open stream's iterator is returned.
 */
import type { Socket } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import { EncodedBody, decodeBody, encodeBody, encodeBodyParts, errorToWire, requestIdFromBytes, requestIdKey } from './codec.js'
import { FrameConnection, bodyLength } from './connection.js'
import { FrameType, ZERO_ID, type Frame, type FrameTypeValue } from './frame.js'
import { PACK_FAILED, packValueInto } from './pack-into.js'
import { PROTOCOL_VERSION, type HelloInfo, type PeerInfo, type RequestContext, type StreamHandler, type UnaryHandler } from './types.js'

/**
 * helloBytesMax bounds frames from a client that has not been accepted yet, so that
 * unauthenticated connections cost at most this much each, not frameBytesMax.
 */
export const helloBytesMax = 64 * 1024

/** ServerConfig is the frozen, validated configuration a connection works under. */
export interface ServerConfig {
  serverInfo: Record<string, unknown>
  authenticate: ((hello: HelloInfo, transport: 'unix' | 'tcp') => void | string) | undefined
  frameBytesMax: number
  inflightRequestsMax: number
  streamWindowPages: number
  writeBufferBytesMax: number
  helloTimeoutMs: number
  unary: ReadonlyMap<string, UnaryHandler>
  streams: ReadonlyMap<string, StreamHandler>
  onHandlerError: (error: unknown, method: string) => void
}

/** Call is one request or stream in flight; its AbortController is made only if a handler asks. */
class Call implements RequestContext {
  /**
   * key is the id's cheapest string form (requestIdKey): the call is looked up by it and its
   * replies carry it (the connection writes it into the header), so the id is never copied into
   * a Buffer of its own (that copy also kept a call from pinning the whole socket chunk).
   */
  readonly key: string
  readonly peer: PeerInfo
  private uuid: string | undefined
  private controller: AbortController | undefined
  aborted = false
  // Stream state: pages the client can still take, and the pump waiting for credit.
  credits = 0
  window = 0
  wake: (() => void) | undefined

  constructor(key: string, peer: PeerInfo) {
    this.key = key
    this.peer = peer
  }

  get requestId(): string {
    this.uuid ??= requestIdFromBytes(Buffer.from(this.key, 'latin1'))
    return this.uuid
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController()
      if (this.aborted) this.controller.abort(new KvError(ErrorCode.CLOSED, 'request cancelled'))
    }
    return this.controller.signal
  }

  abort(): void {
    if (this.aborted) return
    this.aborted = true
    this.controller?.abort(new KvError(ErrorCode.CLOSED, 'request cancelled'))
    this.wakeUp()
  }

  wakeUp(): void {
    const wake = this.wake
    this.wake = undefined
    wake?.()
  }
}

/** ServerConnection serves one accepted socket. */
export class ServerConnection {
  readonly peer: PeerInfo
  private readonly config: ServerConfig
  private readonly connection: FrameConnection
  private readonly calls = new Map<string, Call>()
  private ready = false
  private helloTimer: NodeJS.Timeout | undefined

  constructor(socket: Socket, transport: 'unix' | 'tcp', config: ServerConfig, onClose: () => void) {
    this.config = config
    this.peer = {
      clientId: '',
      name: '',
      pid: 0,
      transport,
      remoteAddress: transport === 'tcp' ? `${socket.remoteAddress}:${socket.remotePort}` : 'unix',
      connectedAt: Date.now(),
      requests: 0,
    }
    this.connection = new FrameConnection(socket, {
      frameBytesMax: Math.min(helloBytesMax, config.frameBytesMax),
      writeBufferBytesMax: config.writeBufferBytesMax,
      onFrame: (frame) => this.handleFrame(frame),
      onFatal: (error) => this.fail(error),
      onClose: () => {
        clearTimeout(this.helloTimer)
        for (const call of this.calls.values()) call.abort()
        this.calls.clear()
        onClose()
      },
    })
    this.helloTimer = setTimeout(
      () => this.fail(new KvError(ErrorCode.PROTOCOL, `no hello within helloTimeoutMs (${config.helloTimeoutMs} ms)`)),
      config.helloTimeoutMs,
    )
  }

  /** isReady tells whether the hello was accepted (only ready peers are listed). */
  get isReady(): boolean {
    return this.ready
  }

  /** outgoingBytes is what this connection has waiting to be written. */
  get outgoingBytes(): number {
    return this.connection.outgoingBytes
  }

  /** refuse sends a connection-level error and closes (e.g. too many connections). */
  refuse(error: KvError): void {
    this.fail(error)
  }

  /** close drops the connection; in-flight handlers see their signal abort. */
  close(): void {
    this.connection.close()
  }

  private fail(error: KvError): void {
    clearTimeout(this.helloTimer)
    this.connection.sendFinal(FrameType.ERROR, ZERO_ID, encodeBody(error.toJSON()))
  }

  private handleFrame(frame: Frame): void {
    if (!this.ready) return this.handleHello(frame)
    switch (frame.type) {
      case FrameType.REQUEST:
        return this.handleRequest(frame)
      case FrameType.STREAM_OPEN:
        return this.handleStreamOpen(frame)
      case FrameType.STREAM_CREDIT:
        return this.handleCredit(frame)
      case FrameType.CANCEL:
        this.calls.get(requestIdKey(frame.requestId))?.abort()
        return
      default:
        return this.fail(new KvError(ErrorCode.PROTOCOL, `unexpected frame type ${frame.type} from a client`))
    }
  }

  private handleHello(frame: Frame): void {
    if (frame.type !== FrameType.HELLO) {
      return this.fail(new KvError(ErrorCode.PROTOCOL, `expected a hello frame first, got type ${frame.type}`))
    }
    clearTimeout(this.helloTimer)
    const decoded = decodeBody(frame.body)
    if ('error' in decoded) return this.fail(decoded.error)
    const hello = decoded.value as Record<string, unknown> | null
    if (hello === null || typeof hello !== 'object') return this.fail(new KvError(ErrorCode.PROTOCOL, 'hello body must be a map'))
    if (hello.version !== PROTOCOL_VERSION) {
      return this.fail(
        new KvError(ErrorCode.PROTOCOL, `unsupported protocol version ${String(hello.version)}; this server speaks version ${PROTOCOL_VERSION}`, {
          version: hello.version as never,
          supported: [PROTOCOL_VERSION],
        }),
      )
    }
    const { clientId, name, pid, token } = hello
    if (typeof clientId !== 'string' || typeof name !== 'string' || typeof pid !== 'number' || (token !== undefined && token !== null && typeof token !== 'string')) {
      return this.fail(new KvError(ErrorCode.PROTOCOL, 'hello needs clientId (string), name (string), pid (number), token (string, optional)'))
    }
    const info: HelloInfo = { clientId, name, pid, ...(typeof token === 'string' ? { token } : {}) }
    let role: void | string
    try {
      role = this.config.authenticate?.(info, this.peer.transport)
    } catch (error) {
      return this.fail(error instanceof KvError ? error : new KvError(ErrorCode.AUTH, 'authentication failed'))
    }
    Object.assign(this.peer, { clientId, name, pid }, typeof role === 'string' ? { role } : {})
    this.ready = true
    this.connection.setFrameBytesMax(this.config.frameBytesMax)
    this.connection.send(FrameType.HELLO_OK, ZERO_ID, encodeBody(this.config.serverInfo))
  }

  /** startCall registers a call, or answers with the error that refuses it. */
  private startCall(frame: Frame): Call | undefined {
    const key = requestIdKey(frame.requestId)
    if (this.calls.size >= this.config.inflightRequestsMax) {
      this.replyError(
        key,
        new KvError(ErrorCode.TOO_MANY_REQUESTS, `more than inflightRequestsMax (${this.config.inflightRequestsMax}) requests in flight`, {
          inflightRequestsMax: this.config.inflightRequestsMax,
        }),
      )
      return undefined
    }
    if (this.calls.has(key)) {
      this.replyError(key, new KvError(ErrorCode.INVALID, `request ${requestIdFromBytes(frame.requestId)} is already in flight on this connection`))
      return undefined
    }
    const call = new Call(key, this.peer)
    this.calls.set(key, call)
    this.peer.requests++
    return call
  }

  private decodeCall(frame: Frame, call: Call): unknown[] | undefined {
    const decoded = decodeBody(frame.body)
    const value = 'value' in decoded ? decoded.value : undefined
    if ('error' in decoded || !Array.isArray(value) || typeof value[0] !== 'string') {
      this.finish(call)
      this.replyError(call.key, 'error' in decoded ? decoded.error : new KvError(ErrorCode.PROTOCOL, 'request body must be [method, params]'))
      return undefined
    }
    return value
  }

  private handleRequest(frame: Frame): void {
    const call = this.startCall(frame)
    if (call === undefined) return
    const body = this.decodeCall(frame, call)
    if (body === undefined) return
    const method = body[0] as string
    const handler = this.config.unary.get(method)
    if (handler === undefined) {
      this.finish(call)
      return this.replyError(call.key, unknownMethod(method))
    }
    let result: Promise<unknown>
    try {
      result = handler(body[1], call)
    } catch (error) {
      result = Promise.reject(error)
    }
    result.then(
      (value) => {
        if (!this.finish(call)) return
        this.reply(FrameType.RESPONSE, call.key, value, method)
      },
      (error: unknown) => {
        if (!this.finish(call)) return
        this.replyHandlerError(call.key, error, method)
      },
    )
  }

  private handleStreamOpen(frame: Frame): void {
    const call = this.startCall(frame)
    if (call === undefined) return
    const body = this.decodeCall(frame, call)
    if (body === undefined) return
    const method = body[0] as string
    const handler = this.config.streams.get(method)
    if (handler === undefined) {
      this.finish(call)
      return this.replyError(call.key, unknownMethod(method))
    }
    const asked = typeof body[2] === 'number' && body[2] >= 1 ? Math.floor(body[2]) : 1
    call.window = Math.min(asked, this.config.streamWindowPages)
    call.credits = call.window
    void this.pumpStream(call, handler, body[1], method)
  }

  private handleCredit(frame: Frame): void {
    const call = this.calls.get(requestIdKey(frame.requestId))
    if (call === undefined || call.window === 0) return // the stream ended before the credit arrived
    const decoded = decodeBody(frame.body)
    const more = 'value' in decoded ? decoded.value : undefined
    if (typeof more !== 'number' || !(more >= 1)) return this.fail(new KvError(ErrorCode.PROTOCOL, 'stream credit must be a positive number'))
    // A client may not grant beyond the window: that is what bounds our buffering.
    call.credits = Math.min(call.credits + Math.floor(more), call.window)
    call.wakeUp()
  }

  /** pumpStream pulls one page per credit, so at most `window` pages are ever unconsumed. */
  private async pumpStream(call: Call, handler: StreamHandler, params: unknown, method: string): Promise<void> {
    let iterator: AsyncIterator<unknown> | undefined
    try {
      iterator = handler(params, call)[Symbol.asyncIterator]()
      for (;;) {
        while (call.credits === 0 && !call.aborted) await new Promise<void>((resolve) => (call.wake = resolve))
        if (call.aborted) break
        const step = await iterator.next()
        if (call.aborted) break
        if (step.done === true) {
          iterator = undefined
          this.finish(call)
          this.connection.send(FrameType.STREAM_END, call.key, Buffer.alloc(0))
          return
        }
        call.credits--
        if (!this.reply(FrameType.STREAM_PAGE, call.key, step.value, method)) break
      }
    } catch (error) {
      iterator = undefined // a throwing iterator is already finished
      if (this.finish(call)) this.replyHandlerError(call.key, error, method)
    } finally {
      this.finish(call)
      if (iterator !== undefined) {
        await iterator.return?.()?.catch((error: unknown) => this.config.onHandlerError(error, method))
      }
    }
  }

  /** finish removes a call; false when it was already gone (cancelled or connection closed). */
  private finish(call: Call): boolean {
    if (this.calls.get(call.key) !== call) return false
    this.calls.delete(call.key)
    return !call.aborted
  }

  /** reply encodes and queues a result frame; false (after an error reply) if it cannot be sent. */
  private reply(type: FrameTypeValue, idBytes: string, value: unknown, method: string): boolean {
    let body: Buffer | Buffer[]
    let length: number
    try {
      if (!(value instanceof EncodedBody)) {
        // Encoded straight into the outgoing buffer; msgpackr (encodeBodyParts) for the rest.
        length = this.connection.sendInPlace(type, idBytes, this.config.frameBytesMax, packValueInto, value, undefined)
        if (length > this.config.frameBytesMax) return this.replyTooLarge(idBytes, length)
        if (length !== PACK_FAILED) return true
      }
      // An array of values (store.read) goes out with its large values by reference.
      body = value instanceof EncodedBody ? value.bytes : encodeBodyParts(value)
      length = bodyLength(body)
    } catch (error) {
      this.replyHandlerError(idBytes, error, method)
      return false
    }
    if (length > this.config.frameBytesMax) return this.replyTooLarge(idBytes, length)
    this.connection.send(type, idBytes, body)
    return true
  }

  private replyTooLarge(idBytes: string, length: number): false {
    this.replyError(
      idBytes,
      new KvError(ErrorCode.FRAME_TOO_LARGE, `reply of ${length} bytes exceeds frameBytesMax (${this.config.frameBytesMax})`, {
        frameBytes: length,
        frameBytesMax: this.config.frameBytesMax,
      }),
    )
    return false
  }

  private replyHandlerError(idBytes: string, error: unknown, method: string): void {
    if (!(error instanceof KvError)) this.config.onHandlerError(error, method)
    this.connection.send(FrameType.ERROR, idBytes, encodeBody(errorToWire(error)))
  }

  private replyError(idBytes: string, error: KvError): void {
    this.connection.send(FrameType.ERROR, idBytes, encodeBody(error.toJSON()))
  }
}

function unknownMethod(method: string): KvError {
  return new KvError(ErrorCode.UNKNOWN_METHOD, `unknown method ${JSON.stringify(method.slice(0, 100))}`, { method: method.slice(0, 100) })
}
