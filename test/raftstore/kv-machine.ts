// A small key/value StateMachine for raftstore tests and bench/raft: `put key value` commands,
// data stored in the shared engine under the group's prefix, snapshots as msgpack pairs. Also a
// seeded random source so elections are reproducible.
// Commands are keyLength u16 | key (UTF-8) | value: built with one pooled allocation and applied
// without decoding (the value is written as a view of the entry), so the bench measures Raft
// rather than the state machine's codec.
import { pack, unpack } from 'msgpackr'
import type { Engine, EngineOp } from '../../src/engine/engine.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import type { Entry, Snapshot } from '../../src/raft/types.js'
import type { ApplyOutput, StateMachine } from '../../src/raftstore/driver.js'
import { groupPrefix } from '../../src/raftstore/records.js'

/** DATA_SUFFIX keeps this machine's keys apart from raftstore's (suffixes below 0x20 are reserved). */
const DATA_SUFFIX = 0x64
/** KEY_BYTES_MAX: a command's key length is a u16. */
const KEY_BYTES_MAX = 0xffff

/** putCommand encodes a put for KvMachine (a string key or value is stored as its UTF-8 bytes). */
export function putCommand(key: string | Uint8Array, value: string | Uint8Array): Uint8Array {
  const keyBytes = typeof key === 'string' ? Buffer.byteLength(key) : key.byteLength
  if (keyBytes > KEY_BYTES_MAX) throw new KvError(ErrorCode.KEY_TOO_LARGE, `key of ${keyBytes} bytes exceeds KEY_BYTES_MAX (${KEY_BYTES_MAX})`)
  const valueBytes = typeof value === 'string' ? Buffer.byteLength(value) : value.byteLength
  const command = Buffer.allocUnsafe(2 + keyBytes + valueBytes)
  command.writeUInt16BE(keyBytes, 0)
  if (typeof key === 'string') command.write(key, 2)
  else command.set(key, 2)
  if (typeof value === 'string') command.write(value, 2 + keyBytes)
  else command.set(value, 2 + keyBytes)
  return command
}

/** asBuffer views bytes (a snapshot's msgpack bin, or a string from an older snapshot) as a Buffer. */
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
      const command = asBuffer(entry.data)
      const keyBytes = command.length >= 2 ? command.readUInt16BE(0) : -1
      if (keyBytes < 0 || 2 + keyBytes > command.length) {
        // Not a putCommand: ignored alike on every replica, so they stay identical.
        results.push(null)
        continue
      }
      const key = Buffer.allocUnsafe(this.prefix.length + keyBytes)
      this.prefix.copy(key, 0)
      command.copy(key, this.prefix.length, 2, 2 + keyBytes)
      ops.push({ type: 'put', key, value: command.subarray(2 + keyBytes) })
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
