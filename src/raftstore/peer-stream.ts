/**
 * Raft peer streams: one-way TCP connections that carry one node's message batches to one peer
 * with no reply at all, as etcd's rafthttp stream and TiKV's raft client do. Raft needs no
 * acknowledgement from the transport (it tolerates loss; the next heartbeat or append
 * response tells the leader what arrived) and TCP keeps a connection's batches in order, so a
 * reply frame, a pending-request entry and a promise per batch are pure cost.
 *
 * Protocol, on a listener of its own (`TcpTransportOptions.stream`), in the wire protocol's
 * frame layout (src/wire/frame.ts: 24-byte header, u32 LE body length first):
 *   sender -> receiver  HELLO    msgpack { version: 1, from, to, token? }   (first frame)
 *   sender -> receiver  REQUEST  one message batch as message-codec.ts encodes it (raw bytes)
 * and nothing ever flows back. The receiver checks the hello (version, that `to` is itself,
 * the cluster token when it has one) and then decodes each frame's batch; any bad frame
 * closes the connection.
 *
 * Sending writes each batch as one frame with ONE socket.write (the codec leaves room for the
 * header), i.e. one write per destination per driver iteration, and no promise; entries larger
 * than ENTRY_INLINE_BYTES_MAX go by reference in one writev instead of being copied.
 *
 * Fault model: the peer may be down, slow, or hostile. The sender never blocks the driver:
 * bytes not yet accepted by the kernel are bounded by `peerQueueBytesMax` (beyond it batches
 * are dropped and reported unreachable); when a connection ends, what it carried may be lost,
 * so every group that used it is reported unreachable (Raft then probes and resends); it
 * reconnects with jittered exponential back-off. A stream whose peer has not drained its
 * bytes for `requestTimeoutMs` is dropped the same way (a hung peer, or a host gone without a
 * FIN, would otherwise hold it until TCP gives up). The receiver bounds its connections
 * (`streamConnectionsMax`), the hello (`HELLO_BYTES_MAX`, `connectTimeoutMs`) and each frame
 * (`streamFrameBytesMax`, checked before the frame is buffered).
 */
import { timingSafeEqual } from 'node:crypto'
import { connect, createServer, type Server, type Socket } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import type { NodeId } from '../raft/types.js'
import { decodeBody, encodeBody } from '../wire/codec.js'
import { FrameDecoder, FrameType, HEADER_BYTES, ZERO_ID, encodeFrame } from '../wire/frame.js'
import type { WireAddress } from '../wire/index.js'
import { decodeEnvelopes, encodeEnvelopeParts, type RaftEnvelope } from './message-codec.js'
import { reportUndelivered, type TransportHandler } from './transport.js'

/** STREAM_VERSION is the version a stream's hello carries; a receiver refuses any other. */
export const STREAM_VERSION = 1

/** HELLO_BYTES_MAX bounds a stream's first frame, so an unauthenticated connection costs little. */
export const HELLO_BYTES_MAX = 4096

/**
 * ENTRY_INLINE_BYTES_MAX: entry data up to this size is copied into a frame; larger data (file
 * chunks) is written by reference in a writev, which costs more per part than copying a small
 * entry but saves copying (and allocating) each MiB once per follower.
 */
export const ENTRY_INLINE_BYTES_MAX = 16 * 1024

/** PeerStreamLimits are the TcpTransportLimits a stream uses. */
export interface PeerStreamLimits {
  peerQueueBytesMax: number
  streamFrameBytesMax: number
  streamConnectionsMax: number
  connectTimeoutMs: number
  /** requestTimeoutMs: a stream whose written bytes the peer has not taken for this long is dropped and reopened. */
  requestTimeoutMs: number
  reconnectDelayMsMin: number
  reconnectDelayMsMax: number
}

/** PeerStreamContext is what a sending stream needs from its transport. */
export interface PeerStreamContext {
  from: NodeId
  to: NodeId
  /** address is asked at each connection attempt (a peer may move). */
  address(): WireAddress | undefined
  token: string | undefined
  limits: PeerStreamLimits
  handler(): TransportHandler | undefined
  random: () => number
}

/** PeerStream sends one node's message batches to one peer over a one-way connection. */
export class PeerStream {
  private socket: Socket | undefined
  private connected = false
  /** groups that sent on the current connection: told unreachable if it ends. */
  private readonly groupsOnConnection = new Set<number>()
  /** stalledSinceMs: when a write last found the socket's buffer full (0 once it drained). */
  private stalledSinceMs = 0
  private reconnectDelayMs = 0
  private retryAt = 0
  private closed = false

  constructor(private readonly ctx: PeerStreamContext) {}

  /** send writes one batch as one frame, or drops and reports it (no connection, peerQueueBytesMax). */
  send(envelopes: readonly RaftEnvelope[]): void {
    if (this.closed || envelopes.length === 0) return
    // A peer that stopped reading (hung, or its host gone without a FIN) would otherwise hold
    // the stream until TCP gives up, minutes later: drop it and reconnect instead.
    // Its 'close' (next turn) reports the groups that used it; the next send reconnects.
    if (this.stalledSinceMs > 0 && Date.now() - this.stalledSinceMs > this.ctx.limits.requestTimeoutMs) this.socket?.destroy()
    const socket = this.socket ?? this.open()
    if (socket === undefined || socket.destroyed) return this.undelivered(envelopes)
    const { parts, bytes } = encodeEnvelopeParts(envelopes, HEADER_BYTES, ENTRY_INLINE_BYTES_MAX)
    const bodyBytes = bytes - HEADER_BYTES
    if (bodyBytes > this.ctx.limits.streamFrameBytesMax || socket.writableLength + bytes > this.ctx.limits.peerQueueBytesMax) {
      return this.undelivered(envelopes)
    }
    const head = parts[0]!
    head.writeUInt32LE(bodyBytes, 0)
    head[4] = FrameType.REQUEST
    head.fill(0, 5, HEADER_BYTES)
    for (const { groupId } of envelopes) this.groupsOnConnection.add(groupId)
    if (!this.write(socket, parts) && this.stalledSinceMs === 0) this.stalledSinceMs = Date.now()
  }

  /** write sends a frame's parts as one writev when there are several (large entries by reference). */
  private write(socket: Socket, parts: Buffer[]): boolean {
    if (parts.length === 1) return socket.write(parts[0]!)
    socket.cork()
    let flowing = true
    for (const part of parts) if (part.length > 0) flowing = socket.write(part) && flowing
    socket.uncork()
    return flowing
  }

  /** close ends the connection; what it had not sent yet is dropped. */
  close(): void {
    this.closed = true
    this.socket?.destroy()
    this.socket = undefined
  }

  /** open starts a connection (writes queue in it until it connects), or returns undefined while backing off. */
  private open(): Socket | undefined {
    if (Date.now() < this.retryAt) return undefined
    const { limits } = this.ctx
    const address = this.ctx.address()
    if (address === undefined) return undefined
    const socket = 'path' in address ? connect(address.path) : connect(address.port, address.host)
    this.socket = socket
    this.connected = false
    this.stalledSinceMs = 0
    socket.setNoDelay(true)
    socket.on('drain', () => {
      if (this.socket === socket) this.stalledSinceMs = 0
    })
    const timer = setTimeout(() => socket.destroy(), limits.connectTimeoutMs)
    socket.once('connect', () => {
      clearTimeout(timer)
      this.connected = true
      this.reconnectDelayMs = 0
    })
    socket.on('error', () => {
      // 'close' follows every 'error'; the loss is reported there.
    })
    socket.on('data', () => socket.destroy()) // the protocol is one-way: a receiver never speaks
    socket.once('close', () => this.onClose(socket, timer))
    socket.write(encodeFrame(FrameType.HELLO, ZERO_ID, encodeBody({ version: STREAM_VERSION, from: this.ctx.from, to: this.ctx.to, token: this.ctx.token })))
    return socket
  }

  private onClose(socket: Socket, timer: NodeJS.Timeout): void {
    clearTimeout(timer)
    if (this.socket !== socket) return
    this.socket = undefined
    this.stalledSinceMs = 0
    if (!this.connected) {
      const { reconnectDelayMsMin: min, reconnectDelayMsMax: max } = this.ctx.limits
      this.reconnectDelayMs = Math.min(max, Math.max(min, this.reconnectDelayMs * 2))
      this.retryAt = Date.now() + this.reconnectDelayMs * (0.5 + this.ctx.random() / 2)
    }
    const handler = this.ctx.handler()
    const groups = [...this.groupsOnConnection]
    this.groupsOnConnection.clear()
    if (handler !== undefined && !this.closed) for (const groupId of groups) handler.unreachable(groupId, this.ctx.to)
  }

  private undelivered(envelopes: readonly RaftEnvelope[]): void {
    const handler = this.ctx.handler()
    if (handler !== undefined) reportUndelivered(handler, this.ctx.to, envelopes)
  }
}

/** StreamReceiverOptions configures the receiving end of the streams to one node. */
export interface StreamReceiverOptions {
  nodeId: NodeId
  /** token, when set, must be the one every sender's hello carries (the cluster token). */
  token: string | undefined
  limits: PeerStreamLimits
  /** deliver hands a decoded batch from the authenticated sender `from` to the transport. */
  deliver(from: NodeId, envelopes: RaftEnvelope[]): void
}

/** StreamReceiver listens for peer streams and decodes their batches. */
export class StreamReceiver {
  private server: Server | undefined
  private readonly sockets = new Set<Socket>()

  constructor(private readonly options: StreamReceiverOptions) {}

  /** listen binds the stream address and returns it as bound (with the real TCP port). */
  async listen(address: WireAddress): Promise<WireAddress> {
    const server = createServer((socket) => this.accept(socket))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) => reject(new KvError(ErrorCode.UNAVAILABLE, `raft stream: cannot listen: ${error.message}`, { errno: error.code })))
      if ('path' in address) server.listen(address.path, resolve)
      else server.listen(address.port, address.host, resolve)
    })
    server.on('error', () => {}) // a listener error after bind affects only new connections
    if ('path' in address) return address
    const bound = server.address()
    return { host: address.host, port: typeof bound === 'object' && bound !== null ? bound.port : address.port }
  }

  /** close stops listening and ends every stream. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    this.sockets.clear()
    const server = this.server
    this.server = undefined
    if (server !== undefined) await new Promise<void>((resolve) => server.close(() => resolve()))
  }

  /** connectionCount is the number of open incoming streams (tests). */
  get connectionCount(): number {
    return this.sockets.size
  }

  private accept(socket: Socket): void {
    const { limits } = this.options
    if (this.sockets.size >= limits.streamConnectionsMax) {
      socket.destroy() // streamConnectionsMax reached: the sender backs off and retries
      return
    }
    this.sockets.add(socket)
    const decoder = new FrameDecoder(HELLO_BYTES_MAX)
    let from: NodeId | undefined
    const helloTimer = setTimeout(() => socket.destroy(), limits.connectTimeoutMs)
    socket.on('error', () => {})
    socket.once('close', () => {
      clearTimeout(helloTimer)
      this.sockets.delete(socket)
    })
    socket.on('data', (chunk: Buffer) => {
      decoder.push(chunk)
      try {
        for (let result = decoder.next(); result !== null; result = decoder.next()) {
          if ('error' in result) throw result.error
          const { frame } = result
          if (from === undefined) {
            from = this.checkHello(frame.type, frame.body)
            clearTimeout(helloTimer)
            decoder.frameBytesMax = limits.streamFrameBytesMax
          } else {
            if (frame.type !== FrameType.REQUEST) throw new KvError(ErrorCode.PROTOCOL, `raft stream: unexpected frame type ${frame.type}`)
            this.options.deliver(from, decodeEnvelopes(frame.body))
          }
          if (socket.destroyed) return
        }
      } catch {
        socket.destroy() // malformed input: the stream is closed, the sender reconnects
      }
    })
  }

  /** checkHello returns the sender's node id, or throws KV_ERR_PROTOCOL / KV_ERR_AUTH. */
  private checkHello(type: number, body: Buffer): NodeId {
    if (type !== FrameType.HELLO) throw new KvError(ErrorCode.PROTOCOL, 'raft stream: expected a hello first')
    const decoded = decodeBody(body)
    if ('error' in decoded) throw decoded.error
    const hello = decoded.value as { version?: unknown; from?: unknown; to?: unknown; token?: unknown } | null
    if (hello === null || typeof hello !== 'object' || hello.version !== STREAM_VERSION) throw new KvError(ErrorCode.PROTOCOL, `raft stream: hello must be a map with version ${STREAM_VERSION}`)
    const { from, to, token } = hello
    if (typeof from !== 'number' || !Number.isSafeInteger(from) || from < 1) throw new KvError(ErrorCode.PROTOCOL, 'raft stream: hello.from must be a node id')
    if (to !== this.options.nodeId) throw new KvError(ErrorCode.PROTOCOL, `raft stream: addressed to node ${String(to)}, this is node ${this.options.nodeId}`)
    if (this.options.token !== undefined && !sameToken(token, this.options.token)) throw new KvError(ErrorCode.AUTH, 'raft stream: wrong cluster token')
    return from
  }
}

/** sameToken compares in constant time for tokens of the expected length. */
function sameToken(given: unknown, expected: string): boolean {
  if (typeof given !== 'string') return false
  const a = Buffer.from(given)
  const b = Buffer.from(expected)
  return a.length === b.length && timingSafeEqual(a, b)
}
