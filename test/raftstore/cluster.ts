// An in-process raftstore cluster for tests: one MemoryEngine (which can lose unsynced writes
// on crash) and one RaftLogFiles in a temporary directory (under the power-loss model, so a crash
// loses what it had not synced) per node, one RaftDriver and one KvMachine per group on each node,
// a LoopbackNetwork and a ManualTicker shared by all. Time only moves when the test ticks.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { MemoryEngine } from '../../src/engine/memory.js'
import type { Engine, EngineOp, WriteOptions } from '../../src/engine/engine.js'
import { RaftDriver, type DriverOptions } from '../../src/raftstore/driver.js'
import { EngineRaftStorage } from '../../src/raftstore/log-storage.js'
import { RaftLogFiles } from '../../src/raftstore/log-files.js'
import { ManualTicker } from '../../src/raftstore/ticker.js'
import { LoopbackNetwork } from '../../src/raftstore/transport.js'
import { KvMachine, seededRandom } from './kv-machine.js'

/** CountingEngine wraps an engine and counts batch writes (the group commit figure). */
export function countingEngine(engine: Engine, counter: { batches: number; syncBatches: number }): Engine {
  return new Proxy(engine, {
    get(target, property, receiver) {
      if (property === 'batch') {
        return (ops: EngineOp[], options?: WriteOptions) => {
          counter.batches++
          if (options?.sync === true) counter.syncBatches++
          return target.batch(ops, options)
        }
      }
      const value = Reflect.get(target, property, receiver)
      return typeof value === 'function' ? value.bind(target) : value
    },
  })
}

/** Cluster is a set of nodes hosting the same groups. */
export class Cluster {
  readonly network = new LoopbackNetwork()
  readonly ticker = new ManualTicker()
  readonly engines = new Map<number, MemoryEngine>()
  readonly drivers = new Map<number, RaftDriver>()
  readonly machines = new Map<string, KvMachine>()
  readonly writes = new Map<number, { batches: number; syncBatches: number }>()
  readonly logFiles = new Map<number, RaftLogFiles>()
  private readonly root = mkdtempSync(join(tmpdir(), 'distkv-raftstore-cluster-'))

  constructor(
    readonly nodeIds: number[],
    readonly groupIds: number[],
    private readonly options: Partial<DriverOptions> = {},
  ) {}

  /** start bootstraps every group on every node and starts the drivers. */
  async start(): Promise<void> {
    for (const id of this.nodeIds) {
      const engine = new MemoryEngine({ durability: 'lose-unsynced' })
      await engine.open()
      for (const groupId of this.groupIds) await EngineRaftStorage.bootstrap(engine, groupId, { voters: this.nodeIds, learners: [], votersOutgoing: [] })
      this.engines.set(id, engine)
      await this.startNode(id)
    }
  }

  /** addNode starts a node that is not in any group's initial membership (it joins by a conf change). */
  async addNode(id: number): Promise<RaftDriver> {
    const engine = new MemoryEngine({ durability: 'lose-unsynced' })
    await engine.open()
    this.engines.set(id, engine)
    return this.startNode(id)
  }

  /** startNode (re)starts node `id`'s driver on its engine, as a process start would. */
  async startNode(id: number, groupIds = this.groupIds): Promise<RaftDriver> {
    const engine = this.engines.get(id)!
    const counter = { batches: 0, syncBatches: 0 }
    this.writes.set(id, counter)
    let driver: RaftDriver | undefined
    const logFiles = await RaftLogFiles.open({ dir: join(this.root, `node-${id}`), powerLoss: true, liveEntries: (groupId) => driver?.liveEntries(groupId) ?? [] })
    this.logFiles.set(id, logFiles)
    driver = new RaftDriver({
      nodeId: id,
      engine: countingEngine(engine, counter),
      logFiles,
      transport: this.network.transport(id),
      ticker: this.ticker,
      random: seededRandom(id * 7919),
      raft: { electionTimeoutTicks: 10, heartbeatIntervalTicks: 2 },
      ...this.options,
    })
    await driver.start()
    for (const groupId of groupIds) {
      const machine = new KvMachine(() => engine, groupId)
      this.machines.set(`${id}/${groupId}`, machine)
      await driver.addGroup(groupId, machine)
    }
    this.drivers.set(id, driver)
    return driver
  }

  /** crashNode stops node `id` and drops what its engine and log files had not synced, as a power loss would. */
  async crashNode(id: number): Promise<void> {
    await this.drivers.get(id)!.close()
    this.drivers.delete(id)
    this.logFiles.get(id)!.crash()
    this.logFiles.delete(id)
    const engine = this.engines.get(id)!
    engine.crash()
    await engine.open()
  }

  /** stopNode closes node `id` cleanly (nothing is lost), as a process exit would. */
  async stopNode(id: number): Promise<void> {
    await this.drivers.get(id)!.close()
    this.drivers.delete(id)
    await this.logFiles.get(id)!.close()
    this.logFiles.delete(id)
  }

  /** openStorage opens a group's durable state on a stopped node, as its next start would see it. */
  async openStorage(id: number, groupId: number): Promise<EngineRaftStorage> {
    if (this.drivers.has(id)) throw new Error(`cluster: node ${id} is running; stop or crash it first`)
    const logFiles = await RaftLogFiles.open({ dir: join(this.root, `node-${id}`), powerLoss: true })
    try {
      return await EngineRaftStorage.open(this.engines.get(id)!, logFiles, groupId)
    } finally {
      await logFiles.close()
    }
  }

  machine(node: number, group: number): KvMachine {
    return this.machines.get(`${node}/${group}`)!
  }

  driver(node: number): RaftDriver {
    return this.drivers.get(node)!
  }

  /** settle lets queued messages and iterations run without advancing time. */
  async settle(): Promise<void> {
    for (let i = 0; i < 5; i++) {
      await new Promise((resolve) => setImmediate(resolve))
      await Promise.all([...this.drivers.values()].map((d) => d.whenIdle()))
    }
  }

  /** until ticks and settles until `condition` holds, failing after `roundsMax` rounds. */
  async until(what: string, condition: () => boolean | Promise<boolean>, roundsMax = 300): Promise<void> {
    for (let round = 0; round < roundsMax; round++) {
      await this.settle()
      if (await condition()) return
      this.ticker.tick()
    }
    throw new Error(`cluster: ${what} did not happen within ${roundsMax} ticks`)
  }

  /** leader returns the node that leads `groupId` (by its own account), if any. */
  leader(groupId: number): number | undefined {
    for (const [id, driver] of this.drivers) if (driver.status(groupId).role === 'leader') return id
    return undefined
  }

  /** elect makes `node` campaign for `groupId` and waits until it leads. */
  async elect(groupId: number, node: number): Promise<void> {
    this.driver(node).campaign(groupId)
    await this.until(`node ${node} leads group ${groupId}`, () => this.drivers.get(node)?.status(groupId).role === 'leader')
  }

  async close(): Promise<void> {
    for (const driver of this.drivers.values()) await driver.close()
    for (const logFiles of this.logFiles.values()) await logFiles.close()
    for (const engine of this.engines.values()) await engine.close()
    rmSync(this.root, { recursive: true, force: true })
  }
}
