/**
 * WriteBatcher: the proxy's group commit for single-key writes. The puts and deletes that reach
 * a proxy in one event-loop turn (one client's kv.multi frame, or many clients' lone calls) are
 * grouped by the shard that owns their key and sent as ONE `store.write { each }` per shard:
 * one RPC, one Raft proposal, one log entry and one apply pass for the group, instead of one of
 * each per write. That is what makes a write's CPU cost through the cluster mostly the bytes it
 * moves rather than the per-request machinery of every hop.
 *
 * Semantics are those of each write sent alone: every write is its own unit under its own
 * request id (exactly-once across retries, leader changes and slot moves, as `write { id }`), and
 * the shard applies or refuses each unit on its own. A unit refused because its slot is not, or
 * no longer, owned there (routing changed since the group was formed) is re-submitted after a
 * routing refresh and lands in the group of its current owner; the same id goes with it.
 *
 * Fault model: as Router.run. A group whose RPC fails for good fails each of its writes with
 * that outcome; a write that was in any earlier attempt reports an unknown outcome
 * (KV_ERR_TIMEOUT), never a definite failure, since an earlier attempt may have applied it.
 */
import { ErrorCode, KvError, kvErrorFrom } from '../errors.js'
import type { WireOp } from '../local/validate.js'
import type { Routing } from '../meta/routing.js'
import { PreEncoded } from '../store/client.js'
import { EachRequest } from '../store/each-codec.js'
import { Router, sleep } from './router.js'

/** batchUnitsMax: most writes in one shard's group (one store RPC, one proposal). */
export const batchUnitsMax = 512
/** batchBytesMax: most key + value bytes in one group (within the store's batchBytesMax and proposalBytesMax); a single larger write travels alone. */
export const batchBytesMax = 4 * 1024 * 1024
/** writesPendingMax: most writes one proxy holds, queued or in flight, before refusing more. */
export const writesPendingMax = 65_536
/** REFUSED_BACKOFF_MS: pause before a refused write is re-routed (a slot move takes a while). */
const REFUSED_BACKOFF_MS = 5

/** PendingWrite is one client write waiting for its group's answer. */
interface PendingWrite {
  id: Buffer
  ops: WireOp[]
  bytes: number
  deadline: number
  /** sent: some attempt carried it, so a later failure means "outcome unknown". */
  sent: boolean
  resolve(): void
  reject(error: Error): void
}

/** WriteBatcher groups concurrent single-key writes per shard. */
export class WriteBatcher {
  private queue: PendingWrite[] = []
  private scheduled = false
  private pending = 0

  constructor(private readonly router: Router) {}

  /** submit applies `ops` (validated, all of one key) under request id `id` (16 bytes); resolves once applied. */
  submit(id: Buffer, ops: WireOp[]): Promise<void> {
    if (this.pending >= writesPendingMax) {
      return Promise.reject(new KvError(ErrorCode.TOO_MANY_REQUESTS, `proxy has writesPendingMax (${writesPendingMax}) writes pending`, { limit: 'writesPendingMax' }))
    }
    this.pending++
    let bytes = 0
    for (const op of ops) bytes += op.key.length + (op.type === 'put' ? op.value.length : 0)
    return new Promise<void>((resolve, reject) => {
      const settle = <T>(fn: (value: T) => void) => (value: T) => {
        this.pending--
        fn(value)
      }
      this.enqueue({ id, ops, bytes, deadline: Date.now() + this.router.requestTimeoutMs, sent: false, resolve: settle(resolve), reject: settle(reject) })
    })
  }

  private enqueue(write: PendingWrite): void {
    this.queue.push(write)
    if (this.scheduled) return
    this.scheduled = true
    // The end of the turn: every write that arrived with this one (a whole frame) joins it.
    setImmediate(() => void this.flush())
  }

  private async flush(): Promise<void> {
    this.scheduled = false
    const queue = this.queue
    this.queue = []
    let routing: Routing
    try {
      routing = await this.router.current(earliest(queue))
    } catch (error) {
      for (const write of queue) write.reject(write.sent ? unknownOutcome(error) : (error as Error))
      return
    }
    const byShard = new Map<number, PendingWrite[]>()
    for (const write of queue) {
      const shard = Router.shardOfKey(routing, write.ops[0]!.key)
      const list = byShard.get(shard)
      if (list === undefined) byShard.set(shard, [write])
      else list.push(write)
    }
    for (const writes of byShard.values()) {
      for (const group of chunks(writes)) void this.send(group)
    }
  }

  /** send runs one group through the router (re-picking its shard from the first write's key on every attempt). */
  private async send(group: PendingWrite[]): Promise<void> {
    // Encoded once: the same bytes are the RPC parameter, the Raft proposal and the log entry,
    // and a remote leader's request body is built around them (EachRequest), not copied again.
    const request = new EachRequest(group)
    const deadline = earliest(group)
    const key = group[0]!.ops[0]!.key
    let refused: unknown
    try {
      refused = await this.router.run((routing) => Router.shardOfKey(routing, key), 'store.write', (shard) => new PreEncoded({ shard, each: request.each }, () => request.body(shard)), { write: true, deadline })
    } catch (error) {
      for (const write of group) write.reject(write.sent ? unknownOutcome(error) : (error as Error))
      return
    } finally {
      for (const write of group) write.sent = true
    }
    const again = new Map<number, KvError>()
    if (Array.isArray(refused)) for (const [at, code, message] of refused as Array<[number, string, string]>) again.set(at, kvErrorFrom({ code, message }))
    group.forEach((write, at) => {
      if (!again.has(at)) write.resolve()
    })
    if (again.size > 0) await this.reroute(group, again)
  }

  /** reroute re-submits the refused writes of a group after a routing refresh, or fails those out of time. */
  private async reroute(group: PendingWrite[], refused: Map<number, KvError>): Promise<void> {
    await this.router.refresh().catch(() => undefined)
    await sleep(REFUSED_BACKOFF_MS)
    for (const [at, error] of refused) {
      const write = group[at]!
      if (Date.now() >= write.deadline) write.reject(unknownOutcome(error))
      else this.enqueue(write)
    }
  }
}

/** earliest is the first deadline among `writes`: a group is tried as long as its least patient write allows. */
function earliest(writes: PendingWrite[]): number {
  let deadline = Infinity
  for (const write of writes) if (write.deadline < deadline) deadline = write.deadline
  return deadline
}

/** chunks splits one shard's writes into groups within batchUnitsMax and batchBytesMax. */
function chunks(writes: PendingWrite[]): PendingWrite[][] {
  const out: PendingWrite[][] = []
  let current: PendingWrite[] = []
  let bytes = 0
  for (const write of writes) {
    if (current.length > 0 && (current.length >= batchUnitsMax || bytes + write.bytes > batchBytesMax)) {
      out.push(current)
      current = []
      bytes = 0
    }
    current.push(write)
    bytes += write.bytes
  }
  if (current.length > 0) out.push(current)
  return out
}

/** unknownOutcome turns a final failure of a write some attempt carried into "outcome unknown". */
function unknownOutcome(error: unknown): Error {
  const kv = error as KvError
  if (kv?.code === ErrorCode.TIMEOUT) return kv
  return new KvError(ErrorCode.TIMEOUT, `write outcome unknown (an earlier attempt may have applied it; retry with the same request id): ${kv?.message ?? String(error)}`)
}
