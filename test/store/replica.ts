// A shard state machine on a memory engine, applying commands as a replica's driver would
// (entries at increasing indexes, the apply output written to the engine): shared by the store
// tests and the fault suite's replica-hash test.
import { MemoryEngine } from '../../src/engine/memory.js'
import { SLOT_COUNT } from '../../src/meta/slots.js'
import type { Entry } from '../../src/raft/types.js'
import { ShardMachine, encodeShardCommand, type ShardCommand, type ShardResult } from '../../src/store/machine.js'

/** ALL_SLOTS lists every slot, for commands that take a slot set. */
export const ALL_SLOTS = Array.from({ length: SLOT_COUNT }, (_, i) => i)

/** requestId makes a 16-byte request id from a small number. */
export const requestId = (n: number): Buffer => Buffer.from(n.toString(16).padStart(32, '0'), 'hex')

/** ShardReplica is a machine, its engine, and `run`, which applies commands as the next entries. */
export interface ShardReplica {
  engine: MemoryEngine
  machine: ShardMachine
  run: (...commands: ShardCommand[]) => Promise<ShardResult[]>
}

/** shardReplica opens a replica of shard 2 on a fresh memory engine. */
export async function shardReplica(requestIdsMax?: number): Promise<ShardReplica> {
  const engine = new MemoryEngine()
  await engine.open()
  const machine = new ShardMachine(engine, 2, requestIdsMax)
  await machine.load()
  let index = 10
  const run = async (...commands: ShardCommand[]) => {
    const entries: Entry[] = commands.map((c) => ({ term: 1, index: ++index, type: 'normal', data: encodeShardCommand(c) }))
    const { ops, results } = await machine.apply(entries)
    await engine.batch(ops)
    return results as ShardResult[]
  }
  return { engine, machine, run }
}
