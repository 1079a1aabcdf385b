/**
 * StoreHost: the multi-Raft side of a node. It keeps the set of shard replicas this node hosts
 * in line with the routing table (creating a replica when meta places one here, bootstrapping
 * it only when this raft id is one of the shard's founders), and serves the internal `store.*`
 * methods the proxies and the meta leader call. Every shard shares the node's one engine and
 * one RaftDriver (one write and one fsync per iteration for all of them).
 *
 * NB: a replica removed from a shard keeps its data here until the node restarts; raftstore has
 * no way yet to drop a group.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import type { RaftDriver } from '../raftstore/driver.js'
import { EngineRaftStorage } from '../raftstore/log-storage.js'
import type { Routing } from '../meta/routing.js'
import { ShardMachine } from './machine.js'

/** StoreHost owns the shard replicas of one node. */
export class StoreHost {
  readonly machines = new Map<number, ShardMachine>()
  private readonly creating = new Map<number, Promise<void>>()

  constructor(
    private readonly driver: RaftDriver,
    private readonly engine: Engine,
    private readonly raftId: number,
    private readonly log: (message: string, details: Record<string, unknown>) => void,
  ) {}

  /** reconcile opens every replica routing places on this node that is not open yet. */
  async reconcile(routing: Routing): Promise<void> {
    const wanted = routing.shards.filter((s) => s.replicas.includes(this.raftId) || s.learners.includes(this.raftId))
    await Promise.all(wanted.map((shard) => this.ensure(shard.id, shard.founders)))
  }

  private ensure(shardId: number, founders: number[]): Promise<void> {
    if (this.machines.has(shardId)) return Promise.resolve()
    let pending = this.creating.get(shardId)
    if (pending === undefined) {
      pending = this.open(shardId, founders).finally(() => this.creating.delete(shardId))
      this.creating.set(shardId, pending)
    }
    return pending
  }

  private async open(shardId: number, founders: number[]): Promise<void> {
    if (founders.includes(this.raftId)) {
      // Founders share the initial membership; a replica added later starts empty and gets a snapshot.
      const created = await EngineRaftStorage.bootstrap(this.engine, shardId, { voters: [...founders].sort((a, b) => a - b), learners: [], votersOutgoing: [] })
      if (created) this.log('shard bootstrapped', { shard: shardId, voters: founders })
    }
    const machine = new ShardMachine(this.engine, shardId)
    await machine.load()
    await this.driver.addGroup(shardId, machine)
    this.machines.set(shardId, machine)
    this.log('shard replica opened', { shard: shardId })
  }

  /** machine returns a hosted replica, or the refusal a proxy treats as "try another replica". */
  machine(shardId: number): ShardMachine {
    const machine = this.machines.get(shardId)
    if (machine === undefined) throw new KvError(ErrorCode.NOT_LEADER, `shard ${shardId} has no replica on this node`, { groupId: shardId, leader: 0 })
    return machine
  }

  /** leaders lists the shards this node leads (reported to meta with each heartbeat). */
  leaders(): number[] {
    const out: number[] = []
    for (const shardId of this.machines.keys()) if (this.driver.status(shardId).role === 'leader') out.push(shardId)
    return out
  }

  /** status reports each hosted replica's Raft state. */
  status(): Array<{ shard: number; role: string; leader: number; term: number; commit: number; applied: number; owned: number }> {
    return [...this.machines.entries()].map(([shard, machine]) => {
      const s = this.driver.status(shard)
      return { shard, role: s.role, leader: s.leader, term: s.term, commit: s.commit, applied: s.applied, owned: machine.owned.size }
    })
  }
}
