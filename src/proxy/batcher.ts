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
/** waveHoldMsMax: longest new writes wait for the groups in flight to land (see enqueue); a slow or failing shard delays the others' next groups by at most this. */
export const waveHoldMsMax = 10
/** waveFillMsMax: after a wave lands, longest the next one waits for its writers to come back (see release). */
export const waveFillMsMax = 2
/** waveGroupBytesMax: a group larger than this (a file chunk) is not waited for: its bytes, not a round's fixed costs, make its cost. */
export const waveGroupBytesMax = 256 * 1024

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
  /** wave: the last flush's small groups (waveGroupBytesMax) still in flight; writes arriving meanwhile wait for them (see enqueue). */
  private wave = 0
  private waveLeft = 0
  private waveWrites = 0
  private waveTimer: NodeJS.Timeout | undefined
  /** fillTarget: after a wave landed, the queue length at which the next flush goes without waiting for fillTimer (0: not filling). */
  private fillTarget = 0
  private fillTimer: NodeJS.Timeout | undefined
  /** stats: counts for tests and figures; waves: flushes that sent groups; held: writes that waited for a wave or its writers. */
  readonly stats = { waves: 0, groups: 0, writes: 0, held: 0 }

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

  /**
   * enqueue queues a write for the next flush. The flush runs at the end of the turn (every
   * write that arrived with this one, a whole frame, joins it), unless the last flush's small
   * groups are still in flight: then it waits for them to land (at most waveHoldMsMax), and
   * then for the writers they answer to come back (see release). Writes that arrive one by one
   * (HTTP requests, each on its own connection and turn) would otherwise go out in groups of one
   * or two, each a Raft proposal, a driver iteration and an fsync on three nodes of its own;
   * waiting makes them travel in waves, as one client's kv.multi frame does.
   */
  private enqueue(write: PendingWrite): void {
    this.queue.push(write)
    if (this.scheduled) return
    if (this.waveLeft > 0 || (this.fillTarget > 0 && this.queue.length < this.fillTarget)) {
      this.stats.held++
      return
    }
    this.schedule()
  }

  private schedule(): void {
    this.scheduled = true
    this.fillTarget = 0
    clearTimeout(this.fillTimer)
    this.fillTimer = undefined
    setImmediate(() => void this.flush())
  }

  /**
   * release ends the wait for wave `wave` (all its small groups landed, or waveHoldMsMax
   * passed). Its writers are answered now, and under a closed loop they write again within
   * moments: the next flush waits until as many writes are queued as the wave carried plus
   * those that waited for it, or waveFillMsMax, whichever comes first.
   */
  private release(wave: number): void {
    // Called once per wave: by its last landing group, or by waveTimer (cleared here) while groups are left.
    if (wave !== this.wave) return
    this.waveLeft = 0
    clearTimeout(this.waveTimer)
    this.waveTimer = undefined
    if (this.scheduled) return
    const target = this.waveWrites + this.queue.length
    this.fillTarget = target
    this.fillTimer = setTimeout(() => {
      this.fillTarget = 0
      this.fillTimer = undefined
      if (this.queue.length > 0 && !this.scheduled) this.schedule()
    }, waveFillMsMax)
    this.fillTimer.unref?.()
  }

  private async flush(): Promise<void> {
    this.scheduled = false
    const queue = this.queue
    this.queue = []
    this.stats.writes += queue.length
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
    const groups: PendingWrite[][] = []
    for (const writes of byShard.values()) for (const group of chunks(writes)) groups.push(group)
    // A new wave replaces the last one: writes from now on wait for this one's small groups only.
    const wave = ++this.wave
    this.stats.waves++
    this.stats.groups += groups.length
    clearTimeout(this.waveTimer)
    this.waveTimer = undefined
    this.waveLeft = 0
    this.waveWrites = 0
    for (const group of groups) {
      const small = group.reduce((bytes, write) => bytes + write.bytes, 0) <= waveGroupBytesMax
      if (small) {
        this.waveLeft++
        this.waveWrites += group.length
      }
      void this.send(group).finally(() => {
        // After waveHoldMsMax the wave was released already (waveLeft 0): nothing left to count.
        if (small && wave === this.wave && this.waveLeft > 0 && --this.waveLeft === 0) this.release(wave)
      })
    }
    if (this.waveLeft > 0) {
      this.waveTimer = setTimeout(() => this.release(wave), waveHoldMsMax)
      this.waveTimer.unref?.()
    }
  }

  /** send runs one group through the router (re-picking its shard from the first write's key on every attempt). */
  private async send(group: PendingWrite[]): Promise<void> {
    // Encoded once per way it travels: in process, the same bytes are the RPC parameter, the Raft
    // proposal and the log entry; to a remote leader, the body's parts carry large values by reference (EachRequest).
    const request = new EachRequest(group)
    const deadline = earliest(group)
    const key = group[0]!.ops[0]!.key
    let refused: unknown
    try {
      refused = await this.router.run((routing) => Router.shardOfKey(routing, key), 'store.write', (shard) => new PreEncoded(() => ({ shard, each: request.each }), () => request.body(shard)), { write: true, deadline })
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
