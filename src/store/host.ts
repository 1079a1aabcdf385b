/**
 * StoreHost: the multi-Raft side of a node. It keeps the set of shard replicas this node hosts
 * in line with the routing table (creating a replica when meta places one here, bootstrapping
 * it only when this raft id is one of the shard's founders), and serves the internal `store.*`
 * methods the proxies and the meta leader call. Every shard shares the node's one engine and
 * one RaftDriver (one write and one fsync per iteration for all of them).
 *
 * A replica that routing no longer places here (it was replaced: meta records the new replica
 * set only after the Raft membership change committed) is dropped: its group is removed with
 * its Raft state and its data, request ids and slot record are deleted from the engine.
 * NB: a crash between the group's removal and the end of the data deletion leaves the rest of
 * the data as keys no replica reads (space, not correctness) until the node is wiped.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import type { RaftDriver } from '../raftstore/driver.js'
import { EngineRaftStorage } from '../raftstore/log-storage.js'
import type { DataLocation } from '../raftstore/log-files.js'
import type { Routing } from '../meta/routing.js'
import { ShardMachine } from './machine.js'
import { ShardKeys } from './keys.js'

/** DROP_BATCH_KEYS: most keys deleted per engine batch when a replica's data is dropped. */
const DROP_BATCH_KEYS = 1024

/** deleteShardData deletes a shard replica's data, request ids and slot record; returns the keys deleted. */
export async function deleteShardData(engine: Engine, keys: ShardKeys): Promise<number> {
  let deleted = 0
  for (const [gte, lt] of [[keys.data, keys.dataEnd], [keys.ids, keys.requestEnd]] as const) {
    for (;;) {
      // A fresh iterator per batch: the previous batch's deletes are then not seen again.
      const iterator = engine.iterator({ gte, lt, values: false })
      let batch: Array<[Buffer, Buffer]>
      try {
        batch = await iterator.nextBatch(DROP_BATCH_KEYS)
      } finally {
        await iterator.close()
      }
      if (batch.length === 0) break
      await engine.batch(batch.map(([key]) => ({ type: 'del' as const, key })))
      deleted += batch.length
    }
  }
  await engine.del(keys.slots)
  return deleted
}

/** StoreHost owns the shard replicas of one node. */
export class StoreHost {
  readonly machines = new Map<number, ShardMachine>()
  private readonly creating = new Map<number, Promise<void>>()
  private routingVersion = 0

  constructor(
    private readonly driver: RaftDriver,
    private readonly engine: Engine,
    private readonly raftId: number,
    private readonly log: (message: string, details: Record<string, unknown>) => void,
    /** locateData: the node's RaftLogFiles.locate when large values are pointed into the log (NodeConfig.logValues). */
    private readonly locateData?: (data: Uint8Array) => DataLocation | undefined,
  ) {}

  /** reconcile opens every replica routing places on this node that is not open yet, and drops those it no longer places here. */
  async reconcile(routing: Routing): Promise<void> {
    // Heartbeats are sequential, but a table older than one already acted on must not undo it.
    if (routing.version < this.routingVersion) return
    this.routingVersion = routing.version
    const wanted = routing.shards.filter((s) => s.replicas.includes(this.raftId) || s.learners.includes(this.raftId))
    // Only a shard's first replica set bootstraps it: a replica placed later (epoch > 1), even on a
    // founder whose earlier replica was dropped, starts empty and is sent a snapshot.
    await Promise.all(wanted.map((shard) => this.ensure(shard.id, shard.epoch === 1 ? shard.founders : [])))
    const keep = new Set(wanted.map((shard) => shard.id))
    const known = new Set(routing.shards.map((shard) => shard.id))
    for (const shardId of [...this.machines.keys()]) {
      if (known.has(shardId) && !keep.has(shardId)) await this.drop(shardId)
    }
  }

  /** drop stops hosting a replica that left its group and deletes its Raft state and data from the engine. */
  private async drop(shardId: number): Promise<void> {
    this.machines.delete(shardId)
    await this.driver.removeGroup(shardId, { destroy: true })
    const deleted = await deleteShardData(this.engine, new ShardKeys(shardId))
    this.log('shard replica removed and its data deleted', { shard: shardId, keys: deleted })
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
    const machine = new ShardMachine(this.engine, shardId, undefined, this.locateData)
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
