/**
 * ReadCoalescer: the point reads the HTTP front end makes in one event-loop turn (16 clients'
 * manifest reads, several downloads' chunk reads) are sent together as one ClusterKV.read,
 * which asks each shard leader once (one store.read, one ReadIndex round) for all of its keys,
 * instead of once per key. It is the read-side twin of the proxy's WriteBatcher.
 *
 * Semantics are those of each read made alone: linearizable, since the group's read starts
 * after every member was requested. A group that fails fails each of its reads with that error.
 * Bounds: at most `readGroupKeysMax` keys per group (a group's reply must fit one wire frame
 * even when every key is a 1 MiB file chunk) and `readsPendingMax` reads queued or in flight.
 */
import { ErrorCode, KvError } from '../../errors.js'

/** readGroupKeysMax: most keys in one coalesced read (16 values of at most 1 MiB stay below frameBytesMax, 20 MiB). */
export const readGroupKeysMax = 16
/** readsPendingMax: most reads one front end holds, queued or in flight, before refusing more. */
export const readsPendingMax = 65_536

/** ReadKind is what a point read returns: the value, whether it exists, or its size. */
export type ReadKind = 'get' | 'has' | 'size'

/** ReadMany reads `keys` in one request and resolves with one result per key, in order. */
export type ReadMany = (keys: Buffer[], kind: ReadKind) => Promise<unknown[]>

interface QueuedRead {
  key: Buffer
  resolve(value: unknown): void
  reject(error: unknown): void
}

/** ReadCoalescer groups the point reads of one turn, per kind, into ReadMany calls. */
export class ReadCoalescer {
  private readonly queues = new Map<ReadKind, QueuedRead[]>()
  private scheduled = false
  private pending = 0

  constructor(private readonly readMany: ReadMany) {}

  /** read resolves with the result for `key` (validated), read together with the others of this turn. */
  read(key: Buffer, kind: ReadKind): Promise<unknown> {
    if (this.pending >= readsPendingMax) {
      return Promise.reject(new KvError(ErrorCode.TOO_MANY_REQUESTS, `front end has readsPendingMax (${readsPendingMax}) reads pending`, { limit: 'readsPendingMax' }))
    }
    this.pending++
    return new Promise((resolve, reject) => {
      const queue = this.queues.get(kind)
      const read = { key, resolve, reject }
      if (queue === undefined) this.queues.set(kind, [read])
      else queue.push(read)
      if (!this.scheduled) {
        this.scheduled = true
        setImmediate(() => this.flush())
      }
    })
  }

  private flush(): void {
    this.scheduled = false
    for (const [kind, queue] of this.queues) {
      for (let at = 0; at < queue.length; at += readGroupKeysMax) this.send(kind, queue.slice(at, at + readGroupKeysMax))
    }
    this.queues.clear()
  }

  private send(kind: ReadKind, group: QueuedRead[]): void {
    this.readMany(group.map((read) => read.key), kind).then(
      (results) => group.forEach((read, i) => read.resolve(results[i])),
      (error: unknown) => group.forEach((read) => read.reject(error)),
    ).finally(() => {
      this.pending -= group.length
    })
  }
}
