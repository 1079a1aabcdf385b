/**
 * WireServer: accepts connections on Unix sockets and TCP, runs the hello handshake and
 * dispatches requests and streams to registered handlers.
 *
 * Fault model: any single connection may misbehave (garbage, oversized frames, never
 * reading, vanishing mid-stream); it is closed on its own and everyone else keeps being
 * served. Total memory is bounded by connectionsMax x (frameBytesMax + writeBufferBytesMax
 * + inflightRequestsMax replies).
 */
import { createServer, type Server, type Socket } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import { ServerConnection, type ServerConfig } from './server-connection.js'
import type { PeerInfo, StreamHandler, UnaryHandler, WireAddress, WireServerOptions } from './types.js'

const writeBufferBytesMaxDefault = 8 * 1024 * 1024
const helloTimeoutMsDefault = 10_000
const streamWindowPagesDefault = 8

/** WireServer serves the distkv wire protocol to many clients. */
export class WireServer {
  private readonly config: ServerConfig
  private readonly connectionsMax: number
  private readonly onConnectionsChanged: ((count: number) => void) | undefined
  private readonly unary = new Map<string, UnaryHandler>()
  private readonly streams = new Map<string, StreamHandler>()
  private readonly listeners: Server[] = []
  private readonly connections = new Set<ServerConnection>()
  private closing = false

  constructor(options: WireServerOptions) {
    this.connectionsMax = positiveInteger('connectionsMax', options.connectionsMax ?? Limits.connectionsMax)
    const writeBufferBytesMax = positiveInteger('writeBufferBytesMax', options.writeBufferBytesMax ?? writeBufferBytesMaxDefault)
    if (writeBufferBytesMax < 64 * 1024) throw new KvError(ErrorCode.INVALID, 'writeBufferBytesMax must be at least 65536 (the socket high-water mark)')
    this.config = Object.freeze({
      serverInfo: options.serverInfo,
      authenticate: options.authenticate,
      frameBytesMax: positiveInteger('frameBytesMax', options.frameBytesMax ?? Limits.frameBytesMax),
      inflightRequestsMax: positiveInteger('inflightRequestsMax', options.inflightRequestsMax ?? Limits.inflightRequestsMax),
      streamWindowPages: positiveInteger('streamWindowPages', options.streamWindowPages ?? streamWindowPagesDefault),
      writeBufferBytesMax,
      helloTimeoutMs: positiveInteger('helloTimeoutMs', options.helloTimeoutMs ?? helloTimeoutMsDefault),
      unary: this.unary,
      streams: this.streams,
      onHandlerError: options.onHandlerError ?? ((error: unknown, method: string) => console.error(`distkv wire: handler ${method} failed:`, error)),
    })
    this.onConnectionsChanged = options.onConnectionsChanged
  }

  /** handle registers the handler of a unary method. */
  handle(method: string, handler: UnaryHandler): void {
    this.unary.set(method, handler)
  }

  /** handleStream registers the handler of a streamed method. */
  handleStream(method: string, handler: StreamHandler): void {
    this.streams.set(method, handler)
  }

  /** listen binds one more address and returns it as bound (with the real TCP port). */
  async listen(address: WireAddress): Promise<WireAddress> {
    if (this.closing) throw new KvError(ErrorCode.CLOSED, 'server is closed')
    const transport = 'path' in address ? 'unix' : 'tcp'
    const server = createServer((socket) => this.accept(socket, transport))
    await new Promise<void>((resolve, reject) => {
      server.once('error', (error: NodeJS.ErrnoException) =>
        reject(new KvError(ErrorCode.UNAVAILABLE, `cannot listen on ${describe(address)}: ${error.message}`, { errno: error.code })),
      )
      if ('path' in address) server.listen(address.path, resolve)
      else server.listen(address.port, address.host, resolve)
    })
    server.on('error', (error) => console.error('distkv wire: listener error:', error))
    this.listeners.push(server)
    if ('path' in address) return { path: address.path }
    const bound = server.address()
    return { host: address.host, port: typeof bound === 'object' && bound !== null ? bound.port : address.port }
  }

  /** peers lists the clients that completed the hello. */
  peers(): PeerInfo[] {
    return [...this.connections].filter((c) => c.isReady).map((c) => ({ ...c.peer }))
  }

  /** connectionCount counts every open connection, including ones still in hello. */
  get connectionCount(): number {
    return this.connections.size
  }

  /** outgoingBytes sums what all connections have waiting to be written (for tests and metrics). */
  get outgoingBytes(): number {
    let total = 0
    for (const connection of this.connections) total += connection.outgoingBytes
    return total
  }

  /** close stops listening and ends every connection; in-flight handlers see their signal abort. */
  async close(): Promise<void> {
    if (this.closing) return
    this.closing = true
    // NB: libuv unlinks a Unix socket path when its listener closes; unlinking it here too
    // could remove the socket of a newer server that took over the same path.
    const closed = this.listeners.map((server) => new Promise<void>((resolve) => server.close(() => resolve())))
    for (const connection of this.connections) connection.close()
    await Promise.all(closed)
  }

  private accept(socket: Socket, transport: 'unix' | 'tcp'): void {
    if (this.closing) {
      socket.destroy()
      return
    }
    const connection = new ServerConnection(socket, transport, this.config, () => {
      if (this.connections.delete(connection)) this.onConnectionsChanged?.(this.connections.size)
    })
    if (this.connections.size >= this.connectionsMax) {
      connection.refuse(
        new KvError(ErrorCode.TOO_MANY_CONNECTIONS, `server already has connectionsMax (${this.connectionsMax}) connections`, {
          connectionsMax: this.connectionsMax,
        }),
      )
      return
    }
    this.connections.add(connection)
    this.onConnectionsChanged?.(this.connections.size)
  }
}

function positiveInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new KvError(ErrorCode.INVALID, `${name} must be a positive integer, got ${value}`)
  return value
}

function describe(address: WireAddress): string {
  return 'path' in address ? address.path : `${address.host}:${address.port}`
}
