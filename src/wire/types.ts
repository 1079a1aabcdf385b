/**
 * Shapes of the wire API shared by WireServer, WireClient and their users (local server,
 * proxy, store nodes, Raft transport). See docs/wire.md for the protocol itself.
 */

/** PROTOCOL_VERSION is the version carried in HELLO; a server refuses any other. */
export const PROTOCOL_VERSION = 1

/** HelloInfo is what a client says about itself in its first frame. */
export interface HelloInfo {
  clientId: string
  name: string
  pid: number
  token?: string
}

/** WireAddress is a Unix socket path or a TCP host and port. */
export type WireAddress = { path: string } | { host: string; port: number }

/** PeerInfo describes one connected client, as shown by `distkv clients`. */
export interface PeerInfo {
  clientId: string
  name: string
  pid: number
  transport: 'unix' | 'tcp'
  remoteAddress: string
  connectedAt: number
  requests: number
  /** role is what the server's authenticate hook returned for this connection, if anything. */
  role?: string
}

/** RequestContext is handed to every handler call. */
export interface RequestContext {
  /** requestId is the UUID chosen by the client (stable across its retries). */
  requestId: string
  peer: PeerInfo
  /** signal aborts when the connection drops or the client cancels. */
  signal: AbortSignal
}

/** UnaryHandler answers one request with one result. */
export type UnaryHandler = (params: any, ctx: RequestContext) => Promise<unknown>

/** StreamHandler answers one request with pages; each yielded item is one page. */
export type StreamHandler = (params: any, ctx: RequestContext) => AsyncIterable<unknown>

/** WireServerOptions configures a WireServer; every bound has a default from Limits. */
export interface WireServerOptions {
  /** serverInfo is returned to every client in the hello reply (e.g. { serverId, pid, version }). */
  serverInfo: Record<string, unknown>
  /**
   * authenticate throws KvError(AUTH) to refuse a client; the server sends the error and closes.
   * A string it returns becomes the connection's `peer.role` (e.g. 'internal' for cluster peers).
   */
  authenticate?: (hello: HelloInfo, transport: 'unix' | 'tcp') => void | string
  frameBytesMax?: number
  connectionsMax?: number
  inflightRequestsMax?: number
  /** streamWindowPages is the most pages a stream may have sent but not yet consumed. */
  streamWindowPages?: number
  /** writeBufferBytesMax: outgoing bytes per connection above which its requests stop being read. */
  writeBufferBytesMax?: number
  /** helloTimeoutMs: how long a new connection may take to send its hello. */
  helloTimeoutMs?: number
  /** onConnectionsChanged reports the connection count (for idle-exit logic). */
  onConnectionsChanged?: (count: number) => void
  /** onHandlerError sees unexpected (non-KvError) handler failures, for logging. */
  onHandlerError?: (error: unknown, method: string) => void
}

/** WireClientOptions bounds a client connection. */
export interface WireClientOptions {
  frameBytesMax?: number
  connectTimeoutMs?: number
  /** streamWindowPages is the window the client asks for on each stream. */
  streamWindowPages?: number
}

/** RequestOptions are per-call options of WireClient.request. */
export interface RequestOptions {
  /** requestId lets a caller re-send a request with the same id after a reconnect. */
  requestId?: string
  timeoutMs?: number
}

/** StreamOptions are per-call options of WireClient.stream. */
export interface StreamOptions {
  requestId?: string
}
