/**
 * ReadIndex (dissertation §6.4): a leader answers a linearizable read with its commit index once
 * a heartbeat round shows it is still the leader. Requests are queued in arrival order with the
 * commit index at arrival; an acknowledgement from a quorum for a request's context confirms it
 * and every request queued before it. The queue is bounded (readIndexPendingMax).
 */
import type { Message, NodeId } from './types.js'

/** READ_INDEX_PENDING_MAX bounds the read requests awaiting confirmation on a leader. */
export const READ_INDEX_PENDING_MAX = 4096

/** ReadIndexStatus is one pending read: the request, its read index and who acknowledged it. */
export interface ReadIndexStatus {
  request: Message
  index: number
  acks: Set<NodeId>
}

/** contextKey turns a request context into a map key (contexts are non-empty; see RaftNode.readIndex). */
export function contextKey(context: Uint8Array | undefined): string {
  return context === undefined ? '' : Buffer.from(context.buffer, context.byteOffset, context.byteLength).toString('latin1')
}

/** ReadOnly holds the leader's pending ReadIndex requests. */
export class ReadOnly {
  // Invariant: queue and pending hold the same keys; queue is in arrival order.
  private readonly pending = new Map<string, ReadIndexStatus>()
  private queue: string[] = []

  /** size is the number of reads awaiting a quorum acknowledgement. */
  size(): number {
    return this.queue.length
  }

  /** addRequest queues a read at `index`; false if the context is already queued or the queue is full. */
  addRequest(index: number, request: Message): boolean {
    const key = contextKey(request.context)
    if (this.pending.has(key)) return true
    if (this.queue.length >= READ_INDEX_PENDING_MAX) return false
    this.pending.set(key, { request, index, acks: new Set() })
    this.queue.push(key)
    return true
  }

  /** recvAck records that `from` acknowledged the heartbeat carrying `context`; it returns the acks so far. */
  recvAck(from: NodeId, context: Uint8Array | undefined): Set<NodeId> | undefined {
    const status = this.pending.get(contextKey(context))
    if (status === undefined) return undefined
    status.acks.add(from)
    return status.acks
  }

  /** advance confirms the request with `context` and every earlier one, removing and returning them. */
  advance(context: Uint8Array | undefined): ReadIndexStatus[] {
    const key = contextKey(context)
    const position = this.queue.indexOf(key)
    if (position < 0) return []
    const done = this.queue.slice(0, position + 1)
    this.queue = this.queue.slice(position + 1)
    return done.map((k) => {
      const status = this.pending.get(k)!
      this.pending.delete(k)
      return status
    })
  }

  /** lastPendingContext is the context the next heartbeat carries, if any read is waiting. */
  lastPendingContext(): Uint8Array | undefined {
    const key = this.queue.at(-1)
    return key === undefined ? undefined : this.pending.get(key)!.request.context
  }
}
