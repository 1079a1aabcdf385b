/**
 * Router: the proxy's routing cache and retry loop. It keeps the latest routing table from
 * meta (refreshed periodically, and at once on any refusal) and runs each client request
 * against the leader of the shard that owns its keys, retrying across leader changes, slot
 * moves and node failures until the request timeout.
 *
 * Outcome rules (the proxy never reports a write that may have been applied as failed):
 *   - success from any attempt: success;
 *   - a definite refusal (bad input): that error at once;
 *   - out of time, and some attempt of a write may have run (sent, then the connection or the
 *     replica timed out): KV_ERR_TIMEOUT, "outcome unknown";
 *   - out of time otherwise (no leader, no quorum, no replica reachable): KV_ERR_UNAVAILABLE
 *     with `quorumLost`, which clients do not retry elsewhere.
 * Every attempt of one write carries the same write id (the client's request id), so a write
 * applied by an attempt whose answer was lost is answered, not applied again, by the next.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { MetaClient } from '../meta/client.js'
import { checkRouting, type Routing } from '../meta/routing.js'
import { slotOf } from '../meta/slots.js'
import type { StoreClient } from '../store/client.js'

/** RETRYABLE_CODES are refusals after which a fresher routing table or another leader may succeed. */
const RETRYABLE_CODES = new Set<string>([ErrorCode.NOT_LEADER, ErrorCode.WRONG_SHARD, ErrorCode.STALE_EPOCH, ErrorCode.UNAVAILABLE, ErrorCode.CLOSED, ErrorCode.TIMEOUT, ErrorCode.TOO_MANY_REQUESTS])
/** BACKOFF_MS_MAX bounds the pause between attempts, and so how late a new leader is noticed. */
const BACKOFF_MS_MAX = 100
/** attemptTimeoutMsMax bounds one attempt, so a dead leader costs at most this before trying another. */
const attemptTimeoutMsMax = 5_000

/** RouterOptions configures a Router. */
export interface RouterOptions {
  meta: MetaClient
  stores: StoreClient
  requestTimeoutMs: number
  refreshIntervalMs: number
}

/** Router routes requests by slot and retries them. */
export class Router {
  private routing: Routing | undefined
  private refreshing: Promise<Routing> | undefined
  private timer: NodeJS.Timeout | undefined

  constructor(private readonly options: RouterOptions) {}

  /** start begins periodic refreshes of the routing table. */
  start(): void {
    this.timer = setInterval(() => void this.refresh().catch(() => undefined), this.options.refreshIntervalMs)
    this.timer.unref()
  }

  /** stop ends the refreshes. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
  }

  /** requestTimeoutMs is how long one client request is tried. */
  get requestTimeoutMs(): number {
    return this.options.requestTimeoutMs
  }

  /** current is the cached table, fetched first if there is none or the cluster is not initialised yet. */
  async current(deadline = Date.now() + this.options.requestTimeoutMs): Promise<Routing> {
    if (this.routing !== undefined && this.routing.slots.length > 0) return this.routing
    for (;;) {
      try {
        const routing = await this.refresh(Math.max(1, deadline - Date.now()))
        if (routing.slots.length > 0) return routing
      } catch (error) {
        if (Date.now() >= deadline) throw error
      }
      if (Date.now() >= deadline) throw new KvError(ErrorCode.UNAVAILABLE, 'the cluster is not initialised yet', { quorumLost: true })
      await sleep(100)
    }
  }

  /** refresh fetches the routing table from meta (concurrent callers share one fetch). */
  refresh(timeoutMs = 2_000): Promise<Routing> {
    this.refreshing ??= this.options.meta.call('meta.routing', {}, timeoutMs)
      .then((value) => this.offer(checkRouting(value)))
      .finally(() => {
        this.refreshing = undefined
      })
    return this.refreshing
  }

  /**
   * offer takes a routing table read elsewhere (the node's heartbeat loop reads one at least every
   * second, so the periodic refresh can be rare): kept unless older than the cached one, and its
   * leader hints noted either way. Returns the cached table.
   */
  offer(routing: Routing): Routing {
    if (this.routing === undefined || routing.version >= this.routing.version) this.routing = routing
    this.options.meta.learn(routing)
    for (const shard of routing.shards) this.options.stores.noteLeader(shard.id, shard.leader)
    return this.routing
  }

  /** shardOfKey is the shard owning `key` in `routing`. */
  static shardOfKey(routing: Routing, key: Uint8Array): number {
    return routing.slots[slotOf(key)]!
  }

  /**
   * run sends `method` to the leader of the shard `pick` chooses (re-chosen on every attempt
   * from the then-current routing), retrying as the module comment says.
   */
  async run(pick: (routing: Routing) => number, method: string, params: (shard: number) => unknown, options: { write: boolean; deadline?: number }): Promise<unknown> {
    const deadline = options.deadline ?? Date.now() + this.options.requestTimeoutMs
    let maybeApplied = false
    let lastError: KvError | undefined
    let backoffMs = 5
    for (;;) {
      const remaining = deadline - Date.now()
      if (remaining <= 0) break
      let routing: Routing
      try {
        routing = await this.current(deadline)
      } catch (error) {
        lastError = error as KvError
        break
      }
      const shard = pick(routing)
      const attempt = await this.options.stores.attempt(routing, shard, method, params(shard), { timeoutMs: Math.min(remaining, attemptTimeoutMsMax) })
      if (attempt.ok) return attempt.result
      lastError = attempt.error
      maybeApplied ||= attempt.maybeApplied
      if (!RETRYABLE_CODES.has(attempt.error.code)) throw attempt.error
      if (attempt.error.code === ErrorCode.WRONG_SHARD || attempt.error.code === ErrorCode.STALE_EPOCH || attempt.error.code === ErrorCode.NOT_LEADER) {
        await this.refresh(Math.max(1, Math.min(1_000, deadline - Date.now()))).catch(() => undefined)
      }
      await sleep(Math.min(backoffMs, Math.max(0, deadline - Date.now())))
      backoffMs = Math.min(backoffMs * 2, BACKOFF_MS_MAX)
    }
    return this.giveUp(method, options.write && maybeApplied, lastError)
  }

  private giveUp(method: string, unknownOutcome: boolean, lastError: KvError | undefined): never {
    const why = lastError === undefined ? '' : `: ${lastError.message}`
    if (unknownOutcome) {
      throw new KvError(ErrorCode.TIMEOUT, `${method}: outcome unknown after ${this.options.requestTimeoutMs} ms (it may have been applied; retry with the same request id)${why}`, { requestTimeoutMs: this.options.requestTimeoutMs })
    }
    throw new KvError(ErrorCode.UNAVAILABLE, `${method}: no shard leader could serve it within ${this.options.requestTimeoutMs} ms${why}`, { quorumLost: true, requestTimeoutMs: this.options.requestTimeoutMs })
  }
}

/** sleep waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
