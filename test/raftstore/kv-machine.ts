// A small key/value StateMachine for raftstore tests: `put key value` commands, data stored in
// the shared engine under the group's prefix, snapshots as msgpack pairs. Also a seeded random
// source so elections are reproducible.
import { pack, unpack } from 'msgpackr'
import type { Engine, EngineOp } from '../../src/engine/engine.js'
import type { Entry, Snapshot } from '../../src/raft/types.js'
import type { ApplyOutput, StateMachine } from '../../src/raftstore/driver.js'
import { groupPrefix } from '../../src/raftstore/records.js'

/** DATA_SUFFIX keeps this machine's keys apart from raftstore's (suffixes below 0x20 are reserved). */
const DATA_SUFFIX = 0x64

/** putCommand encodes a put for KvMachine; a binary value travels as msgpack bin and is stored without conversion. */
export function putCommand(key: string, value: string | Uint8Array): Uint8Array {
  return pack([key, value])
}

/** asBuffer views a decoded value (bin: a Buffer; str: a string) as bytes without copying a Buffer. */
function asBuffer(value: string | Uint8Array): Buffer {
  if (typeof value === 'string') return Buffer.from(value)
  return Buffer.isBuffer(value) ? value : Buffer.from(value.buffer, value.byteOffset, value.byteLength)
}

/** KvMachine applies puts to the engine; apply results are the entry's index. */
export class KvMachine implements StateMachine {
  readonly prefix: Buffer
  applies = 0

  constructor(
    private readonly engine: () => Engine,
    groupId: number,
  ) {
    this.prefix = Buffer.concat([groupPrefix(groupId), Buffer.from([DATA_SUFFIX])])
  }

  private key(key: string): Buffer {
    const out = Buffer.allocUnsafe(this.prefix.length + Buffer.byteLength(key))
    this.prefix.copy(out, 0)
    out.write(key, this.prefix.length)
    return out
  }

  async apply(entries: Entry[]): Promise<ApplyOutput> {
    this.applies++
    const ops: EngineOp[] = []
    const results: unknown[] = []
    for (const entry of entries) {
      const [key, value] = unpack(entry.data) as [string, string | Uint8Array]
      ops.push({ type: 'put', key: this.key(key), value: asBuffer(value) })
      results.push(entry.index)
    }
    return { ops, results }
  }

  /** get reads one key as written to the engine. */
  async get(key: string): Promise<string | undefined> {
    return (await this.engine().get(this.key(key)))?.toString()
  }

  /** dump returns every key/value of this group. */
  async dump(): Promise<Array<[string, string]>> {
    return (await this.pairs()).map(([k, v]) => [k, v.toString()])
  }

  /** pairs returns every key and value of this group, values as stored. */
  private async pairs(): Promise<Array<[string, Buffer]>> {
    const end = Buffer.from(this.prefix)
    end[end.length - 1]!++
    const iterator = this.engine().iterator({ gte: this.prefix, lt: end })
    const out: Array<[string, Buffer]> = []
    try {
      for (;;) {
        const batch = await iterator.nextBatch(1000)
        if (batch.length === 0) return out
        for (const [k, v] of batch) out.push([k.subarray(this.prefix.length).toString(), v])
      }
    } finally {
      await iterator.close()
    }
  }

  async snapshot(): Promise<Uint8Array> {
    return pack(await this.pairs())
  }

  async restore(snapshot: Snapshot): Promise<EngineOp[]> {
    const ops: EngineOp[] = (await this.pairs()).map(([k]) => ({ type: 'del', key: this.key(k) }))
    for (const [k, v] of unpack(snapshot.data) as Array<[string, string | Uint8Array]>) ops.push({ type: 'put', key: this.key(k), value: asBuffer(v) })
    return ops
  }
}

/** seededRandom is mulberry32: a reproducible RandomSource. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
