/**
 * PeerLink: the sending half of the TCP transport for one destination node. It keeps one wire
 * connection, reconnects with jittered exponential back-off, pipelines `raft.messages`
 * requests (bounded in flight and in queued bytes), and streams snapshots as `raft.snapshot`
 * chunks with a bounded window of unacknowledged chunks instead of one giant frame.
 *
 * Fault model: the peer may be down, slow or gone. Nothing here blocks the driver or grows
 * without bound: what cannot be queued or delivered is dropped and reported (unreachable,
 * snapshotStatus false), and Raft retransmits.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { NodeId } from '../raft/types.js'
import { WireClient, newRequestId, type HelloInfo, type WireAddress } from '../wire/index.js'
import { encodeEnvelopes, type RaftEnvelope } from './message-codec.js'
import { reportUndelivered, type TransportHandler } from './transport.js'

/** TcpTransportLimits bounds the TCP transport; each is named in the log line or error that enforces it. */
export interface TcpTransportLimits {
  /** peerQueueBytesMax: encoded message bytes queued per peer; more is dropped and reported. */
  peerQueueBytesMax: number
  /** requestBytesMax: message bytes per raft.messages request. */
  requestBytesMax: number
  /** requestsInflightMax: raft.messages requests per peer awaiting their reply. */
  requestsInflightMax: number
  /** snapshotChunkBytes: size of one raft.snapshot chunk. */
  snapshotChunkBytes: number
  /** snapshotChunksInflightMax: unacknowledged chunks per snapshot (the flow-control window). */
  snapshotChunksInflightMax: number
  /** snapshotsQueuedMax: snapshots waiting to be sent per peer. */
  snapshotsQueuedMax: number
  /** snapshotBytesMax: largest snapshot a receiver assembles. */
  snapshotBytesMax: number
  /** snapshotsReceivingMax: snapshots being assembled at once by a receiver. */
  snapshotsReceivingMax: number
  /** requestTimeoutMs: a request unanswered this long counts as lost. */
  requestTimeoutMs: number
  /** connectTimeoutMs: bound on connecting plus the hello. */
  connectTimeoutMs: number
  /** reconnectDelayMsMin / Max: the back-off range between failed connection attempts. */
  reconnectDelayMsMin: number
  reconnectDelayMsMax: number
  /** streamFrameBytesMax: largest message batch on a peer stream (peer-stream.ts), checked by both ends. */
  streamFrameBytesMax: number
  /** streamConnectionsMax: incoming peer streams a node accepts at once. */
  streamConnectionsMax: number
}

/** PeerLinkContext is what a link needs from its transport. */
export interface PeerLinkContext {
  from: NodeId
  to: NodeId
  address(): WireAddress | undefined
  hello: HelloInfo
  limits: TcpTransportLimits
  handler(): TransportHandler | undefined
  random: () => number
}

interface Queued {
  envelopes: RaftEnvelope[]
  bytes: Buffer
}

/** PeerLink sends one node's outgoing messages to one peer. */
export class PeerLink {
  private queue: Queued[] = []
  private queuedBytes = 0
  private snapshots: RaftEnvelope[] = []
  private client: WireClient | undefined
  private connecting: Promise<WireClient> | undefined
  private reconnectDelayMs = 0
  private retryAt = 0
  private inflight = 0
  private slotFreed: (() => void) | undefined
  private pumping = false
  private sendingSnapshots = false
  private closed = false

  constructor(private readonly ctx: PeerLinkContext) {}

  /** enqueue queues a batch for this peer, dropping (and reporting) what exceeds peerQueueBytesMax or snapshotsQueuedMax. */
  enqueue(envelopes: RaftEnvelope[]): void {
    const normal = envelopes.filter((e) => e.message.type !== 'snap')
    for (const envelope of envelopes) {
      if (envelope.message.type !== 'snap') continue
      if (this.snapshots.length >= this.ctx.limits.snapshotsQueuedMax) this.undelivered([envelope])
      else this.snapshots.push(envelope)
    }
    if (normal.length > 0) {
      const bytes = encodeEnvelopes(normal)
      if (this.queuedBytes + bytes.length > this.ctx.limits.peerQueueBytesMax) this.undelivered(normal)
      else {
        this.queue.push({ envelopes: normal, bytes })
        this.queuedBytes += bytes.length
      }
    }
    void this.pump()
    void this.pumpSnapshots()
  }

  /** close drops everything queued and ends the connection. */
  async close(): Promise<void> {
    this.closed = true
    this.queue = []
    this.queuedBytes = 0
    this.snapshots = []
    this.slotFreed?.()
    await this.client?.close()
  }

  private undelivered(envelopes: RaftEnvelope[]): void {
    const handler = this.ctx.handler()
    if (handler !== undefined && envelopes.length > 0) reportUndelivered(handler, this.ctx.to, envelopes)
  }

  private async connect(): Promise<WireClient> {
    if (this.client !== undefined && !this.client.closed) return this.client
    if (this.connecting !== undefined) return this.connecting
    const where = `node ${this.ctx.to}`
    if (Date.now() < this.retryAt) throw new KvError(ErrorCode.UNAVAILABLE, `${where}: waiting ${this.reconnectDelayMs} ms before reconnecting`)
    const address = this.ctx.address()
    if (address === undefined) throw new KvError(ErrorCode.UNAVAILABLE, `${where}: no known address`)
    this.connecting = WireClient.connect(address, this.ctx.hello, { connectTimeoutMs: this.ctx.limits.connectTimeoutMs })
    try {
      const client = await this.connecting
      this.reconnectDelayMs = 0
      this.client = client
      client.onClose(() => {
        if (this.client === client) this.client = undefined
      })
      if (this.closed) await client.close()
      return client
    } catch (error) {
      const { reconnectDelayMsMin: min, reconnectDelayMsMax: max } = this.ctx.limits
      this.reconnectDelayMs = Math.min(max, Math.max(min, this.reconnectDelayMs * 2))
      this.retryAt = Date.now() + this.reconnectDelayMs * (0.5 + this.ctx.random() / 2)
      throw error
    } finally {
      this.connecting = undefined
    }
  }

  /** takeRequest removes up to requestBytesMax of queued batches (at least one). */
  private takeRequest(): Queued[] {
    const taken: Queued[] = []
    let bytes = 0
    while (this.queue.length > 0 && (taken.length === 0 || bytes + this.queue[0]!.bytes.length <= this.ctx.limits.requestBytesMax)) {
      const next = this.queue.shift()!
      bytes += next.bytes.length
      this.queuedBytes -= next.bytes.length
      taken.push(next)
    }
    return taken
  }

  private async pump(): Promise<void> {
    if (this.pumping) return
    this.pumping = true
    try {
      while (!this.closed && this.queue.length > 0) {
        let client: WireClient
        try {
          client = await this.connect()
        } catch {
          const dropped = this.takeRequest()
          this.undelivered(dropped.flatMap((q) => q.envelopes))
          continue
        }
        if (this.inflight >= this.ctx.limits.requestsInflightMax) {
          await new Promise<void>((resolve) => (this.slotFreed = resolve))
          continue
        }
        const taken = this.takeRequest()
        this.inflight++
        const params = { from: this.ctx.from, batches: taken.map((q) => q.bytes) }
        client.request('raft.messages', params, { timeoutMs: this.ctx.limits.requestTimeoutMs }).then(
          () => this.release(),
          () => {
            this.release()
            this.undelivered(taken.flatMap((q) => q.envelopes))
          },
        )
      }
    } finally {
      this.pumping = false
    }
  }

  private release(): void {
    this.inflight--
    const freed = this.slotFreed
    this.slotFreed = undefined
    freed?.()
  }

  private async pumpSnapshots(): Promise<void> {
    if (this.sendingSnapshots) return
    this.sendingSnapshots = true
    try {
      while (!this.closed && this.snapshots.length > 0) {
        const envelope = this.snapshots.shift()!
        const handler = this.ctx.handler()
        try {
          await this.sendSnapshot(await this.connect(), envelope)
          handler?.snapshotStatus(envelope.groupId, this.ctx.to, true)
        } catch {
          this.undelivered([envelope])
        }
      }
    } finally {
      this.sendingSnapshots = false
    }
  }

  /** sendSnapshot streams one snapshot message: the message without its data first, then the data in chunks. */
  private async sendSnapshot(client: WireClient, envelope: RaftEnvelope): Promise<void> {
    const snapshot = envelope.message.snapshot!
    const data = Buffer.from(snapshot.data.buffer, snapshot.data.byteOffset, snapshot.data.byteLength)
    const header = encodeEnvelopes([{ groupId: envelope.groupId, message: { ...envelope.message, snapshot: { meta: snapshot.meta, data: Buffer.alloc(0) } } }])
    const id = newRequestId()
    const { snapshotChunkBytes, snapshotChunksInflightMax, requestTimeoutMs } = this.ctx.limits
    const window: Promise<unknown>[] = []
    let offset = 0
    do {
      const chunk = data.subarray(offset, offset + snapshotChunkBytes)
      const params = { from: this.ctx.from, id, total: data.length, offset, chunk, header: offset === 0 ? header : null }
      const acknowledged = client.request('raft.snapshot', params, { timeoutMs: requestTimeoutMs })
      acknowledged.catch(() => {}) // observed through `window`; this only keeps an early failure from going unhandled
      window.push(acknowledged)
      // Stop sending ahead once the window is full: the receiver's acknowledgements pace us.
      if (window.length >= snapshotChunksInflightMax) await window.shift()
      offset += chunk.length
    } while (offset < data.length && !this.closed)
    await Promise.all(window)
    if (this.closed) throw new KvError(ErrorCode.CLOSED, 'transport closed while sending a snapshot')
  }
}
