/**
 * The Transport between the raftstores of different nodes, and an in-process loopback
 * implementation for tests. The TCP implementation over the wire protocol is tcp-transport.ts.
 *
 * Fault model: Raft tolerates lost, duplicated and reordered messages, so a transport may drop
 * (a full queue, a dead peer) but must say so: `unreachable` lets the leader fall back to
 * probing, and `snapshotStatus` tells it whether a snapshot arrived. Sending never blocks the
 * driver: it only queues.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { NodeId } from '../raft/types.js'
import { decodeEnvelopes, encodeEnvelopes, type RaftEnvelope } from './message-codec.js'

export type { RaftEnvelope } from './message-codec.js'

/** TransportHandler is how a transport hands events to the driver. */
export interface TransportHandler {
  /** receive delivers a batch of messages that arrived from node `from`. */
  receive(from: NodeId, envelopes: RaftEnvelope[]): void
  /** unreachable reports that messages of `groupId` to `to` could not be delivered. */
  unreachable(groupId: number, to: NodeId): void
  /** snapshotStatus reports whether a snapshot message of `groupId` reached `to`. */
  snapshotStatus(groupId: number, to: NodeId, ok: boolean): void
}

/** Transport carries Raft messages between nodes, batched per destination node. */
export interface Transport {
  readonly nodeId: NodeId
  /** start begins receiving; handler calls come only after start resolves. */
  start(handler: TransportHandler): Promise<void>
  /** send queues messages (any destinations) without blocking; each destination gets them as one batch. */
  send(envelopes: readonly RaftEnvelope[]): void
  close(): Promise<void>
}

/** groupByDestination splits a batch of messages by the node they are addressed to. */
export function groupByDestination(envelopes: readonly RaftEnvelope[]): Map<NodeId, RaftEnvelope[]> {
  const byNode = new Map<NodeId, RaftEnvelope[]>()
  for (const envelope of envelopes) {
    const list = byNode.get(envelope.message.to)
    if (list === undefined) byNode.set(envelope.message.to, [envelope])
    else list.push(envelope)
  }
  return byNode
}

/** reportUndelivered tells the handler that `batch` did not reach its destination. */
export function reportUndelivered(handler: TransportHandler, to: NodeId, batch: readonly RaftEnvelope[]): void {
  const groups = new Set<number>()
  for (const { groupId, message } of batch) {
    groups.add(groupId)
    if (message.type === 'snap') handler.snapshotStatus(groupId, to, false)
  }
  for (const groupId of groups) handler.unreachable(groupId, to)
}

/** LoopbackNetwork connects LoopbackTransports in one process, with links that tests can cut. */
export class LoopbackNetwork {
  private readonly handlers = new Map<NodeId, TransportHandler>()
  private readonly cut = new Set<string>()
  /** batchesDelivered counts delivered per-destination batches (one per send per destination). */
  batchesDelivered = 0

  /** transport returns the endpoint of node `nodeId` on this network. */
  transport(nodeId: NodeId): LoopbackTransport {
    return new LoopbackTransport(this, nodeId)
  }

  /** disconnect drops every message between `a` and `b`, both ways, until heal(). */
  disconnect(a: NodeId, b: NodeId): void {
    this.cut.add(`${a}>${b}`)
    this.cut.add(`${b}>${a}`)
  }

  /** isolate disconnects `nodeId` from every node known now. */
  isolate(nodeId: NodeId): void {
    for (const other of this.handlers.keys()) if (other !== nodeId) this.disconnect(nodeId, other)
  }

  /** heal restores every link. */
  heal(): void {
    this.cut.clear()
  }

  /** attach registers a node's handler (LoopbackTransport.start). */
  attach(nodeId: NodeId, handler: TransportHandler): void {
    if (this.handlers.has(nodeId)) throw new KvError(ErrorCode.INVALID, `loopback node ${nodeId} is already attached`)
    this.handlers.set(nodeId, handler)
  }

  /** detach unregisters a node (LoopbackTransport.close); messages to it are then undeliverable. */
  detach(nodeId: NodeId): void {
    this.handlers.delete(nodeId)
  }

  /** deliver sends one per-destination batch through the codec, asynchronously like a socket would. */
  deliver(from: NodeId, to: NodeId, batch: RaftEnvelope[]): void {
    const encoded = encodeEnvelopes(batch)
    setImmediate(() => {
      const sender = this.handlers.get(from)
      const receiver = this.handlers.get(to)
      if (sender === undefined) return
      if (receiver === undefined || this.cut.has(`${from}>${to}`)) {
        reportUndelivered(sender, to, batch)
        return
      }
      this.batchesDelivered++
      receiver.receive(from, decodeEnvelopes(encoded))
      for (const { groupId, message } of batch) if (message.type === 'snap') sender.snapshotStatus(groupId, to, true)
    })
  }
}

/** LoopbackTransport is one node's endpoint on a LoopbackNetwork. */
export class LoopbackTransport implements Transport {
  private started = false

  constructor(
    private readonly network: LoopbackNetwork,
    readonly nodeId: NodeId,
  ) {}

  async start(handler: TransportHandler): Promise<void> {
    this.network.attach(this.nodeId, handler)
    this.started = true
  }

  send(envelopes: readonly RaftEnvelope[]): void {
    if (!this.started) return
    for (const [to, batch] of groupByDestination(envelopes)) this.network.deliver(this.nodeId, to, batch)
  }

  async close(): Promise<void> {
    if (!this.started) return
    this.started = false
    this.network.detach(this.nodeId)
  }
}
