/**
 * MetaClient: how any node (store, proxy, CLI) reaches the meta group's leader. It remembers
 * the last leader, follows NOT_LEADER hints, and otherwise tries every known meta member.
 *
 * Fault model: meta members die and leadership moves; a call tries each candidate at most
 * once per round and gives up with KV_ERR_UNAVAILABLE at its deadline.
 */
import { ErrorCode, KvError, isKvError } from '../errors.js'
import type { PeerPool } from '../cluster/peers.js'
import type { Routing } from './routing.js'

/** MetaClientOptions configures a MetaClient. */
export interface MetaClientOptions {
  pool: PeerPool
  /** seeds are meta members' addresses known from configuration, by raft id. */
  seeds: Map<number, string>
  timeoutMs: number
}

const ROUND_PAUSE_MS = 100

/** MetaClient calls meta methods on the current meta leader. */
export class MetaClient {
  private leaderAddress: string | undefined
  private readonly known: Map<number, string>

  constructor(private readonly options: MetaClientOptions) {
    this.known = new Map(options.seeds)
  }

  /** learn records the meta members of a routing table, so hints can be followed. */
  learn(routing: Routing): void {
    for (const node of routing.nodes) if (routing.metaVoters.includes(node.raftId)) this.known.set(node.raftId, node.rpc)
  }

  /** call sends `method` to the meta leader, following hints until `timeoutMs` has passed. */
  async call(method: string, params: unknown, timeoutMs = this.options.timeoutMs): Promise<unknown> {
    const deadline = Date.now() + timeoutMs
    let lastError: unknown
    for (;;) {
      const candidates = [...new Set([this.leaderAddress, ...this.known.values()].filter((a): a is string => a !== undefined))]
      for (let i = 0; i < candidates.length; i++) {
        const address = candidates[i]!
        const remaining = deadline - Date.now()
        if (remaining <= 0) break
        try {
          const result = await this.options.pool.request(address, method, params, { timeoutMs: Math.min(remaining, 5_000) })
          this.leaderAddress = address
          return result
        } catch (error) {
          lastError = error
          if (!isKvError(error)) throw error
          if (error.code === ErrorCode.NOT_LEADER) {
            const hint = this.known.get(Number(error.details?.leader))
            if (this.leaderAddress === address) this.leaderAddress = undefined
            if (hint !== undefined && hint !== address && !candidates.slice(i + 1).includes(hint)) candidates.splice(i + 1, 0, hint)
            continue
          }
          // UNKNOWN_METHOD: a member listed with the meta role that does not run it (yet).
          if (![ErrorCode.UNAVAILABLE, ErrorCode.CLOSED, ErrorCode.TIMEOUT, ErrorCode.UNKNOWN_METHOD].includes(error.code as never)) throw error
          if (this.leaderAddress === address) this.leaderAddress = undefined
        }
      }
      if (Date.now() + ROUND_PAUSE_MS >= deadline) {
        const why = lastError instanceof Error ? `: ${lastError.message}` : ''
        throw new KvError(ErrorCode.UNAVAILABLE, `meta group unreachable (no leader answered ${method} within ${timeoutMs} ms)${why}`, { quorumLost: true })
      }
      await new Promise((resolve) => setTimeout(resolve, ROUND_PAUSE_MS))
    }
  }
}
