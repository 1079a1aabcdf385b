/**
 * TcpTransport: Raft messages between nodes over the wire protocol. It registers two methods
 * on the node's WireServer (which owns listening and authentication of the cluster token):
 *   raft.messages { from, batches: Buffer[] }                       -> null
 *   raft.snapshot { from, id, total, offset, chunk, header | null }  -> null
 * and sends through one PeerLink per destination (peer-link.ts). With `stream` configured,
 * every message but snapshots travels instead on one-way peer streams (peer-stream.ts), on a
 * listener of their own: no reply frame, pending request or promise per batch.
 *
 * Fault model: peers send garbage, die mid-snapshot or flood. Input is validated
 * (KV_ERR_PROTOCOL), partial snapshots are bounded in size and number and dropped when their
 * connection closes, and messages not addressed to this node are discarded.
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import type { NodeId } from '../raft/types.js'
import type { RequestContext, WireAddress, WireServer } from '../wire/index.js'
import { decodeEnvelopes, type RaftEnvelope } from './message-codec.js'
import { PeerLink, type TcpTransportLimits } from './peer-link.js'
import { PeerStream, StreamReceiver } from './peer-stream.js'
import { groupByDestination, type Transport, type TransportHandler } from './transport.js'

export type { TcpTransportLimits } from './peer-link.js'

/** TCP_TRANSPORT_DEFAULTS are the limits used for omitted options. */
export const TCP_TRANSPORT_DEFAULTS: Readonly<TcpTransportLimits> = Object.freeze({
  peerQueueBytesMax: 64 * 1024 * 1024,
  requestBytesMax: 4 * 1024 * 1024,
  requestsInflightMax: 32,
  snapshotChunkBytes: 1024 * 1024,
  snapshotChunksInflightMax: 4,
  snapshotsQueuedMax: 4,
  snapshotBytesMax: 256 * 1024 * 1024,
  snapshotsReceivingMax: 8,
  requestTimeoutMs: 10_000,
  connectTimeoutMs: 2_000,
  reconnectDelayMsMin: 50,
  reconnectDelayMsMax: 2_000,
  streamFrameBytesMax: Limits.frameBytesMax,
  streamConnectionsMax: 64,
})

/** TcpTransportOptions configures a TcpTransport. */
export interface TcpTransportOptions {
  nodeId: NodeId
  /** server is this node's WireServer; the transport adds its raft.* methods to it. */
  server: WireServer
  /** peers maps a node id to its address (static configuration, or what meta knows). */
  peers: (nodeId: NodeId) => WireAddress | undefined
  /** token is sent in the hello to peers (the cluster token). */
  token?: string
  limits?: Partial<TcpTransportLimits>
  random?: () => number
  /**
   * stream, when given, carries messages other than snapshots on one-way peer streams
   * (peer-stream.ts) instead of raft.messages requests: this node listens on `listen`, and
   * sends to a peer on `peers(id)` when that returns an address (raft.messages otherwise).
   */
  stream?: { listen: WireAddress; peers: (nodeId: NodeId) => WireAddress | undefined }
}

interface PartialSnapshot {
  from: NodeId
  header: RaftEnvelope | undefined
  data: Buffer
  offsets: Set<number>
  received: number
  touchedAtMs: number
}

function validateLimits(given: Partial<TcpTransportLimits> | undefined): TcpTransportLimits {
  const out = { ...TCP_TRANSPORT_DEFAULTS, ...given }
  for (const [field, value] of Object.entries(out)) {
    if (!Number.isSafeInteger(value) || (value as number) < 1) {
      throw new KvError(ErrorCode.INVALID, `TcpTransportOptions.limits.${field} must be a positive integer, got ${String(value)}`, { field })
    }
  }
  if (out.reconnectDelayMsMin > out.reconnectDelayMsMax) throw new KvError(ErrorCode.INVALID, 'TcpTransportOptions.limits.reconnectDelayMsMin must not exceed reconnectDelayMsMax')
  return Object.freeze(out)
}

function protocol(message: string): KvError {
  return new KvError(ErrorCode.PROTOCOL, `raft transport: ${message}`)
}

function uint(value: unknown, field: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0) throw protocol(`${field} must be a non-negative integer`)
  return value
}

/** TcpTransport is the Transport of a real node. */
export class TcpTransport implements Transport {
  readonly nodeId: NodeId
  private readonly limits: TcpTransportLimits
  private readonly links = new Map<NodeId, PeerLink>()
  private readonly receiving = new Map<string, PartialSnapshot>()
  private readonly clientId = randomUUID()
  private readonly streams = new Map<NodeId, PeerStream>()
  private receiver: StreamReceiver | undefined
  private handler: TransportHandler | undefined
  private boundStreamAddress: WireAddress | undefined

  constructor(private readonly options: TcpTransportOptions) {
    if (!Number.isSafeInteger(options.nodeId) || options.nodeId < 1) throw new KvError(ErrorCode.INVALID, 'TcpTransportOptions.nodeId must be a positive integer')
    if (typeof options.peers !== 'function') throw new KvError(ErrorCode.INVALID, 'TcpTransportOptions.peers must be a function')
    this.nodeId = options.nodeId
    this.limits = validateLimits(options.limits)
  }

  async start(handler: TransportHandler): Promise<void> {
    this.handler = handler
    this.options.server.handle('raft.messages', async (params) => this.receiveMessages(params))
    this.options.server.handle('raft.snapshot', async (params, ctx) => this.receiveSnapshotChunk(params, ctx))
    if (this.options.stream !== undefined) {
      this.receiver = new StreamReceiver({ nodeId: this.nodeId, token: this.options.token, limits: this.limits, deliver: (from, envelopes) => this.deliver(from, envelopes) })
      this.boundStreamAddress = await this.receiver.listen(this.options.stream.listen)
    }
  }

  /** streamAddress is where this node's peer-stream listener is bound (after start), if it has one. */
  get streamAddress(): WireAddress | undefined {
    return this.boundStreamAddress
  }

  send(envelopes: readonly RaftEnvelope[]): void {
    if (this.handler === undefined) return
    for (const [to, batch] of groupByDestination(envelopes)) {
      const stream = this.stream(to)
      if (stream === undefined) {
        this.link(to).enqueue(batch)
        continue
      }
      // Snapshots keep their chunked, acknowledged path: their delivery is reported to the core.
      const snapshots = batch.filter((e) => e.message.type === 'snap')
      if (snapshots.length === 0) stream.send(batch)
      else {
        stream.send(batch.filter((e) => e.message.type !== 'snap'))
        this.link(to).enqueue(snapshots)
      }
    }
  }

  async close(): Promise<void> {
    this.handler = undefined
    const links = [...this.links.values()]
    this.links.clear()
    for (const stream of this.streams.values()) stream.close()
    this.streams.clear()
    this.receiving.clear()
    await Promise.all([...links.map((link) => link.close()), this.receiver?.close()])
    this.receiver = undefined
  }

  /** stream returns the peer stream to `to`, or undefined when no stream address is known for it. */
  private stream(to: NodeId): PeerStream | undefined {
    const existing = this.streams.get(to)
    if (existing !== undefined) return existing
    const peers = this.options.stream?.peers
    if (peers === undefined || peers(to) === undefined) return undefined
    const stream = new PeerStream({
      from: this.nodeId,
      to,
      address: () => peers(to),
      token: this.options.token,
      limits: this.limits,
      handler: () => this.handler,
      random: this.options.random ?? Math.random,
    })
    this.streams.set(to, stream)
    return stream
  }

  private link(to: NodeId): PeerLink {
    let link = this.links.get(to)
    if (link === undefined) {
      link = new PeerLink({
        from: this.nodeId,
        to,
        address: () => this.options.peers(to),
        hello: { clientId: this.clientId, name: `raft-node-${this.nodeId}`, pid: process.pid, token: this.options.token },
        limits: this.limits,
        handler: () => this.handler,
        random: this.options.random ?? Math.random,
      })
      this.links.set(to, link)
    }
    return link
  }

  private deliver(from: NodeId, envelopes: RaftEnvelope[]): void {
    const mine = envelopes.filter((e) => e.message.to === this.nodeId && e.message.from === from)
    if (mine.length > 0) this.handler?.receive(from, mine)
  }

  private receiveMessages(params: unknown): null {
    const { from, batches } = (params ?? {}) as { from?: unknown; batches?: unknown }
    const sender = uint(from, 'from')
    if (!Array.isArray(batches) || !batches.every((b) => b instanceof Uint8Array)) throw protocol('batches must be an array of byte strings')
    if (this.handler === undefined) throw new KvError(ErrorCode.UNAVAILABLE, 'raft transport is closed')
    for (const batch of batches) this.deliver(sender, decodeEnvelopes(batch as Uint8Array))
    return null
  }

  private receiveSnapshotChunk(params: unknown, ctx: RequestContext): null {
    const p = (params ?? {}) as Record<string, unknown>
    const from = uint(p.from, 'from')
    const total = uint(p.total, 'total')
    const offset = uint(p.offset, 'offset')
    if (typeof p.id !== 'string' || p.id.length > 64) throw protocol('id must be a short string')
    if (!(p.chunk instanceof Uint8Array) || offset + p.chunk.byteLength > total) throw protocol('chunk outside the snapshot')
    if (this.handler === undefined) throw new KvError(ErrorCode.UNAVAILABLE, 'raft transport is closed')
    const partial = this.partialSnapshot(p.id, from, total, ctx)
    if (p.header !== null && p.header !== undefined) {
      if (!(p.header instanceof Uint8Array)) throw protocol('header must be a byte string')
      const [header] = decodeEnvelopes(p.header)
      if (header === undefined || header.message.type !== 'snap' || header.message.snapshot === undefined) throw protocol('header is not a snapshot message')
      partial.header = header
    }
    if (!partial.offsets.has(offset)) {
      partial.offsets.add(offset)
      partial.data.set(p.chunk, offset)
      partial.received += p.chunk.byteLength
    }
    if (partial.header !== undefined && partial.received === total) {
      this.receiving.delete(p.id)
      const message = partial.header.message
      this.deliver(from, [{ groupId: partial.header.groupId, message: { ...message, snapshot: { meta: message.snapshot!.meta, data: partial.data } } }])
    }
    return null
  }

  private partialSnapshot(id: string, from: NodeId, total: number, ctx: RequestContext): PartialSnapshot {
    const existing = this.receiving.get(id)
    const now = Date.now()
    if (existing !== undefined) {
      if (existing.from !== from || existing.data.length !== total) throw protocol('snapshot chunks disagree on sender or size')
      existing.touchedAtMs = now
      return existing
    }
    // A request's signal may not outlive the request, so also evict snapshots whose sender went quiet.
    for (const [key, stale] of this.receiving) if (now - stale.touchedAtMs > 2 * this.limits.requestTimeoutMs) this.receiving.delete(key)
    if (total > this.limits.snapshotBytesMax) {
      throw new KvError(ErrorCode.VALUE_TOO_LARGE, `snapshot of ${total} bytes exceeds snapshotBytesMax (${this.limits.snapshotBytesMax})`, { limit: 'snapshotBytesMax' })
    }
    if (this.receiving.size >= this.limits.snapshotsReceivingMax) {
      throw new KvError(ErrorCode.TOO_MANY_REQUESTS, `snapshotsReceivingMax (${this.limits.snapshotsReceivingMax}) snapshots are already being received`, { limit: 'snapshotsReceivingMax' })
    }
    const partial: PartialSnapshot = { from, header: undefined, data: Buffer.alloc(total), offsets: new Set(), received: 0, touchedAtMs: now }
    this.receiving.set(id, partial)
    // A sender that disconnects mid-snapshot never finishes it: free the space.
    ctx.signal.addEventListener('abort', () => {
      if (this.receiving.get(id) === partial) this.receiving.delete(id)
    }, { once: true })
    return partial
  }
}
