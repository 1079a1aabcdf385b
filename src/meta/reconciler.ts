/**
 * Reconciler: the meta leader's control loop. Each round it moves the cluster one step closer
 * to what the meta state says, through idempotent steps, so a new leader simply resumes:
 *   - initialise a new cluster from the static member list (once);
 *   - tell freshly created shards which slots they own;
 *   - replace replicas whose node came back with a new raft id (an emptied data directory), and
 *     finish replica replacements in progress (add new as learner, promote, remove old);
 *   - advance slot moves: freeze -> copy -> claim -> release -> flip -> cleanup -> done;
 *   - balance (balance.ts): replace replicas of nodes down longer than `downAfterMs`, even out
 *     replica counts after a node is added, and spread shard leaders over the live nodes.
 *
 * Fault model: any RPC may fail or time out; the round stops there and the next round (or the
 * next meta leader) retries the same step. Every step is safe to repeat.
 */
import { randomUUID } from 'node:crypto'
import type { MemberConfig } from '../cluster/config.js'
import type { StoreClient } from '../store/client.js'
import type { ShardCommand } from '../store/machine.js'
import { planBalance } from './balance.js'
import { buildRouting, type Routing } from './routing.js'
import type { MetaService } from './service.js'
import { META_GROUP_ID, type MoveRecord, type NodeRecord } from './state.js'

/** initWaitMs: how long a new cluster's first meta leader waits for every founding member before `init`. */
export const initWaitMs = 15_000

/** INGEST_REQUESTS_MAX: request ids carried by one ingest command (18 bytes each). */
const INGEST_REQUESTS_MAX = 50_000

/** leaderTransferIntervalMs: the least time between two leadership moves made for balance. */
export const leaderTransferIntervalMs = 10_000

/** ReconcilerOptions configures the loop. */
export interface ReconcilerOptions {
  members: MemberConfig[]
  shards: number
  replicas: number
  intervalMs: number
  rpcTimeoutMs: number
  downAfterMs: number
  /** balance: whether the meta leader rebalances replicas and leaders by itself. */
  balance: boolean
  log: (message: string, details: Record<string, unknown>) => void
}

/** Reconciler runs on every meta member and acts only while it leads. */
export class Reconciler {
  private timer: NodeJS.Timeout | undefined
  private running = false
  private leaderSinceMs = 0
  private lastTransferMs = 0

  constructor(
    private readonly meta: MetaService,
    private readonly stores: StoreClient,
    private readonly options: ReconcilerOptions,
  ) {}

  /** start begins the rounds. */
  start(): void {
    this.timer = setInterval(() => void this.round(), this.options.intervalMs)
    this.timer.unref()
  }

  /** stop ends the rounds. */
  stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer)
    this.timer = undefined
  }

  /** round runs one pass if this node leads meta and no pass is running. */
  async round(): Promise<void> {
    if (!this.meta.isLeader()) {
      this.leaderSinceMs = 0
      return
    }
    if (this.running) return
    if (this.leaderSinceMs === 0) this.leaderSinceMs = Date.now()
    this.running = true
    try {
      await this.step()
    } catch (error) {
      this.options.log('reconciler round failed; retrying next round', { error: (error as Error).message })
    } finally {
      this.running = false
    }
  }

  private get routing(): Routing {
    return buildRouting(this.meta.machine.state, this.meta.liveness)
  }

  private async step(): Promise<void> {
    const state = this.meta.machine.state
    if (state.clusterId === '') {
      await this.initialise()
      return
    }
    for (const shard of state.shards.filter((s) => !s.claimed)) {
      const slots = state.slots.flatMap((owner, slot) => (owner === shard.id ? [slot] : []))
      if (slots.length > 0) await this.shardCommand(shard.id, { t: 'claim', slots })
      await this.meta.propose({ type: 'shardClaimed', shard: shard.id })
    }
    await this.replaceLostIdentities()
    for (const replace of [...state.replacing]) {
      // A live old replica stays a voter until its successor is one (redundancy never drops).
      const oldAlive = state.nodes.some((n) => n.raftId === replace.old && this.isLive(n.id))
      const done = (await this.call(replace.shard, 'store.replace', { shard: replace.shard, old: replace.old, new: replace.new, oldAlive }, 25_000)) as { votersMin?: number } | null
      await this.meta.propose({ type: 'replaceDone', ...replace })
      this.options.log('replica replaced', { ...replace, oldAlive, votersMin: done?.votersMin })
    }
    for (const move of [...state.moves]) await this.advance(move)
    if (this.options.balance) await this.balance()
  }

  private async balance(): Promise<void> {
    const now = Date.now()
    const action = planBalance({ state: this.meta.machine.state, liveness: this.meta.liveness, nowMs: now, leaderSinceMs: this.leaderSinceMs, downAfterMs: this.options.downAfterMs })
    if (action === undefined) return
    if (action.type === 'remove') {
      await this.meta.propose({ type: 'removeNode', nodeId: action.nodeId })
      this.options.log('node removed after its replicas moved away', { node: action.nodeId })
      return
    }
    if (action.type === 'replace') {
      await this.meta.propose({ type: 'replaceStart', shard: action.shard, old: action.old, new: action.new })
      this.options.log('rebalancing a replica', { ...action })
      return
    }
    // A transfer shows in the leader hints a heartbeat later, and each costs its shard a short
    // pause: move at most one leader per leaderTransferIntervalMs, never on stale hints.
    if (now - this.lastTransferMs < leaderTransferIntervalMs || now - this.leaderSinceMs < leaderTransferIntervalMs) return
    this.lastTransferMs = now
    await this.call(action.shard, 'store.transferLeader', { shard: action.shard, to: action.to })
    this.meta.liveness.leaders.delete(action.shard)
    this.options.log('moving a shard leader', { shard: action.shard, to: action.to })
  }

  private async initialise(): Promise<void> {
    // Wait (a bounded time) for every founding member to report in: a member that starts after
    // `init` finds the cluster existing and must join under a new raft id, which works but
    // costs a replacement of each of its replicas.
    const everyoneSeen = this.options.members.every((m) => this.meta.liveness.lastSeenMs.has(m.id))
    if (!everyoneSeen && Date.now() - this.leaderSinceMs < initWaitMs) return
    const nodes: NodeRecord[] = this.options.members.map((m) => ({ id: m.id, raftId: m.id, rpc: m.rpc, http: undefined, roles: m.roles }))
    const metaVoters = this.meta.driver.status(META_GROUP_ID).confState.voters
    await this.meta.propose({ type: 'init', clusterId: randomUUID(), nodes, metaVoters, shards: this.options.shards, replicas: this.options.replicas })
    this.options.log('cluster initialised', { shards: this.options.shards, replicas: this.options.replicas })
  }

  /** replaceLostIdentities starts replacing each replica whose node now has a different raft id. */
  private async replaceLostIdentities(): Promise<void> {
    const state = this.meta.machine.state
    for (const node of state.nodes) {
      for (const old of node.former ?? []) {
        if (state.metaVoters.includes(old)) await this.replaceMetaVoter(old, node.raftId)
        for (const shard of state.shards) {
          if (!shard.replicas.includes(old) || shard.replicas.includes(node.raftId)) continue
          if (state.replacing.some((r) => r.shard === shard.id)) continue
          if (!this.isLive(node.id)) continue
          await this.meta.propose({ type: 'replaceStart', shard: shard.id, old, new: node.raftId })
          this.options.log('replacing a replica that lost its disk', { shard: shard.id, node: node.id, old, new: node.raftId })
        }
      }
    }
  }

  private async replaceMetaVoter(old: number, added: number): Promise<void> {
    const driver = this.meta.driver
    const conf = () => driver.status(META_GROUP_ID).confState
    if (conf().voters.includes(old)) await driver.proposeConfChange(META_GROUP_ID, { type: 'removeNode', nodeId: old })
    if (!conf().voters.includes(added) && !conf().learners.includes(added)) await driver.proposeConfChange(META_GROUP_ID, { type: 'addLearner', nodeId: added })
    const status = driver.status(META_GROUP_ID)
    if (conf().learners.includes(added) && (status.progress?.[added]?.match ?? 0) >= status.commit) {
      await driver.proposeConfChange(META_GROUP_ID, { type: 'addVoter', nodeId: added })
    }
    if (conf().voters.includes(added)) await this.meta.propose({ type: 'metaVoters', voters: conf().voters })
  }

  private isLive(nodeId: number): boolean {
    const seen = this.meta.liveness.lastSeenMs.get(nodeId)
    return seen !== undefined && Date.now() - seen < 3 * this.options.intervalMs + 2_000
  }

  private async advance(move: MoveRecord): Promise<void> {
    const log = (stage: string) => this.options.log('slot move', { move: move.id, stage, slots: move.slots.length, from: move.from, to: move.to })
    let stage = move.stage
    const next = async (to: MoveRecord['stage']) => {
      await this.meta.propose({ type: 'moveStage', id: move.id, stage: to })
      stage = to
      log(to)
    }
    if (stage === 'freeze') {
      await this.shardCommand(move.from, { t: 'freeze', slots: move.slots })
      await next('copy')
    }
    if (stage === 'copy') {
      await this.copy(move)
      await next('claim')
    }
    if (stage === 'claim') {
      await this.shardCommand(move.to, { t: 'claim', slots: move.slots })
      await next('release')
    }
    if (stage === 'release') {
      await this.shardCommand(move.from, { t: 'release', slots: move.slots })
      await next('flip')
    }
    if (stage === 'flip') await next('cleanup')
    if (stage === 'cleanup') {
      for (let more = true; more;) more = ((await this.shardCommand(move.from, { t: 'purge', slots: move.slots })) as { more?: boolean }).more === true
      await this.meta.propose({ type: 'moveDone', id: move.id })
      log('done')
    }
  }

  /** copy streams the moving slots' data from the source leader into the target by ingest commands. */
  private async copy(move: MoveRecord): Promise<void> {
    let after: Buffer | undefined
    for (;;) {
      const page = (await this.call(move.from, 'store.export', { shard: move.from, slots: move.slots, after })) as { pairs: Array<[Buffer, Buffer]>; next: Buffer | null; requests?: Buffer[] }
      const requests = page.requests ?? []
      // Request ids are bounded per shard (requestIdsMaxDefault), so they fit a few ingests.
      for (let i = 0; i < Math.max(1, Math.ceil(requests.length / INGEST_REQUESTS_MAX)) && (page.pairs.length > 0 || requests.length > 0); i++) {
        await this.shardCommand(move.to, { t: 'ingest', pairs: i === 0 ? page.pairs : [], requests: requests.slice(i * INGEST_REQUESTS_MAX, (i + 1) * INGEST_REQUESTS_MAX) })
      }
      if (page.next === null) return
      after = Buffer.from(page.next)
    }
  }

  private shardCommand(shard: number, command: ShardCommand): Promise<unknown> {
    return this.call(shard, 'store.command', { shard, command })
  }

  private async call(shard: number, method: string, params: unknown, timeoutMs = this.options.rpcTimeoutMs): Promise<unknown> {
    const attempt = await this.stores.attempt(this.routing, shard, method, params, { timeoutMs })
    if (!attempt.ok) throw attempt.error
    return attempt.result
  }
}
