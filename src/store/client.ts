/**
 * StoreClient: sends a request to the leader of a shard, given a routing table. It starts with
 * the leader hint, follows NOT_LEADER hints, and otherwise walks the shard's replicas.
 *
 * It makes ONE pass over the candidates and reports what happened, so its callers (the proxy's
 * retry loop, the meta leader's reconciler) decide about refreshing the routing table and
 * retrying. It tells apart failures where the request surely did not run (refused, could not
 * connect) from ones where it may have (the connection dropped or timed out after sending).
 */
import { ErrorCode, KvError, isKvError } from '../errors.js'
import type { PeerPool } from '../cluster/peers.js'
import type { Routing } from '../meta/routing.js'

/** StoreAttempt is the outcome of one pass: a result, or the last error and whether the request may have run. */
export type StoreAttempt = { ok: true; result: unknown } | { ok: false; error: KvError; maybeApplied: boolean }

/** DEFINITE_CODES are refusals that mean the request did not run on that replica. */
const DEFINITE_CODES = new Set<string>([ErrorCode.NOT_LEADER, ErrorCode.WRONG_SHARD, ErrorCode.STALE_EPOCH, ErrorCode.TOO_MANY_REQUESTS])

/**
 * PreEncoded is a request's params together with their wire body, built by the caller (the body
 * of `[method, params]`, see EachRequest): sent as it is to a remote replica, while an in-process
 * call takes `params`.
 */
export class PreEncoded {
  constructor(
    /** params: the in-process call's params, built only when the leader is in process. */
    readonly params: () => unknown,
    /** body: the wire body, as one buffer or as parts to be written one after another. */
    readonly body: () => Buffer | Buffer[],
  ) {}
}

/** StoreClient finds shard leaders and remembers where they were. */
export class StoreClient {
  private readonly leaders = new Map<number, number>()

  constructor(
    private readonly pool: PeerPool,
    /** local: this node's raft id and in-process store methods, when it has the store role. */
    private readonly local?: { raftId: number; call(method: string, params: unknown): Promise<unknown> },
  ) {}

  /** noteLeader records a leader learnt elsewhere (a routing table). */
  noteLeader(shardId: number, raftId: number): void {
    if (raftId !== 0) this.leaders.set(shardId, raftId)
  }

  /** leaderOf is the last known leader (raft id) of a shard, or 0. */
  leaderOf(shardId: number): number {
    return this.leaders.get(shardId) ?? 0
  }

  /** attempt tries the shard's leader (by hint, then each replica) once each. */
  async attempt(routing: Routing, shardId: number, method: string, params: unknown, options: { timeoutMs: number; requestId?: string }): Promise<StoreAttempt> {
    const shard = routing.shards.find((s) => s.id === shardId)
    if (shard === undefined) return { ok: false, error: new KvError(ErrorCode.WRONG_SHARD, `shard ${shardId} is not in routing version ${routing.version}`), maybeApplied: false }
    const address = (raftId: number) => routing.nodes.find((n) => n.raftId === raftId)?.rpc
    const first = this.leaders.get(shardId) ?? shard.leader
    const candidates = [...new Set([first, ...shard.replicas].filter((id) => id !== 0 && shard.replicas.includes(id)))]
    // Built only when every candidate failed: an Error captures a stack, and most attempts succeed.
    let lastError: KvError | undefined
    let maybeApplied = false
    const deadline = Date.now() + options.timeoutMs
    for (let i = 0; i < candidates.length; i++) {
      const raftId = candidates[i]!
      const where = address(raftId)
      const remaining = deadline - Date.now()
      if (where === undefined || remaining <= 0) continue
      try {
        const result = this.local !== undefined && this.local.raftId === raftId
          ? await this.local.call(method, params instanceof PreEncoded ? params.params() : params)
          : params instanceof PreEncoded
            ? await this.pool.requestBody(where, method, params.body(), { timeoutMs: remaining, requestId: options.requestId })
            : await this.pool.request(where, method, params, { timeoutMs: remaining, requestId: options.requestId })
        this.leaders.set(shardId, raftId)
        return { ok: true, result }
      } catch (error) {
        if (!isKvError(error)) throw error
        lastError = error
        if (error.code === ErrorCode.NOT_LEADER) {
          const hint = Number(error.details?.leader ?? 0)
          if (this.leaders.get(shardId) === raftId) this.leaders.delete(shardId)
          if (hint !== 0 && hint !== raftId && shard.replicas.includes(hint)) {
            this.leaders.set(shardId, hint)
            if (!candidates.slice(i + 1).includes(hint)) candidates.splice(i + 1, 0, hint)
          }
          continue
        }
        if (DEFINITE_CODES.has(error.code)) return { ok: false, error, maybeApplied }
        if (error.code === ErrorCode.UNAVAILABLE && error.details?.errno !== undefined) continue
        if (error.code === ErrorCode.UNAVAILABLE && error.details?.address !== undefined) continue
        if (error.code === ErrorCode.CLOSED || error.code === ErrorCode.TIMEOUT || error.code === ErrorCode.UNAVAILABLE) {
          // Sent, then lost: the replica may have proposed it before the connection failed.
          maybeApplied = true
          if (this.leaders.get(shardId) === raftId) this.leaders.delete(shardId)
          continue
        }
        return { ok: false, error, maybeApplied }
      }
    }
    return { ok: false, error: lastError ?? new KvError(ErrorCode.UNAVAILABLE, `shard ${shardId} has no reachable replica`, { shard: shardId }), maybeApplied }
  }
}
