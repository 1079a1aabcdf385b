// Child process for blob-power-loss.test.ts. Two modes:
//   node blob-power-loss-child.js workload DIR SEQ_BASE SEED
//     opens BlobEngine over RocksDB, both under withPowerLossFault / powerLossFaultOn (so
//     DISTKV_FAULT_POWER_LOSS decides), and writes until SIGKILL from 3 concurrent writers: synced
//     and unsynced puts, prepared batches (the shard machine's path), synced deletes, with small
//     blob files and a fast GC so files roll, get rewritten and unlinked while it runs. It prints
//     `T <key> <seq> <put|del>` before a write is issued and `A <key> <seq>` once it is durable (a
//     synced write resolved, or an unsynced one a later-issued synced write covered).
//   node blob-power-loss-child.js log DIR
//     appends one record to a BlobLog and syncs, appends a second without syncing, prints
//     `READY <json>` (both refs and what reads return) and waits for SIGKILL.
import { writeSync } from 'node:fs'
import { join } from 'node:path'
import { BlobEngine } from '../../src/engine/blob-engine.js'
import { BlobLog } from '../../src/engine/blob-log.js'
import type { EngineOp } from '../../src/engine/engine.js'
import { powerLossFaultOn, withPowerLossFault } from '../../src/engine/power-loss.js'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import { blobWorkload, workloadKey, workloadValue } from './blob-power-loss-values.js'

const say = (line: string) => writeSync(1, `${line}\n`)
const [mode, dir, seqBaseText, seedText] = process.argv.slice(2) as [string, string, string, string]

if (mode === 'log') {
  const log = new BlobLog(join(dir, 'blobs'), { powerLoss: powerLossFaultOn() })
  await log.open()
  const synced = log.append(Buffer.from('synced'), Buffer.alloc(5000, 's'))
  await log.sync()
  const unsynced = log.append(Buffer.from('unsynced'), Buffer.alloc(7000, 'u'))
  const reads = [(await log.read(synced)).toString('latin1', 0, 1), (await log.read(unsynced)).toString('latin1', 0, 1)]
  say(`READY ${JSON.stringify({ synced, unsynced, reads, held: log.powerLossStats.heldBytes })}`)
  setInterval(() => undefined, 60_000)
} else {
  const engine = new BlobEngine(withPowerLossFault(new RocksDbEngine({ dir: join(dir, 'db'), cacheBytes: 1024 * 1024, memtableBudgetBytes: 4 * 1024 * 1024, backgroundThreads: 1 })), {
    dir: join(dir, 'blobs'),
    thresholdBytes: blobWorkload.thresholdBytes,
    separable: () => true,
    fileBytesMax: blobWorkload.fileBytesMax,
    gcIntervalMs: 20,
    gcLiveFraction: 0.6,
    powerLoss: powerLossFaultOn(),
  })
  await engine.open()
  let seq = Number(seqBaseText)
  let state = Number(seedText) >>> 0 || 1
  /** random: xorshift32, so a failing seed replays the same choices. */
  const random = (n: number) => {
    state ^= state << 13
    state ^= state >>> 17
    state ^= state << 5
    state >>>= 0
    return state % n
  }
  /** unsyncedDone: unsynced writes that resolved; the next synced write issued makes them durable. */
  let unsyncedDone: Array<[string, number]> = []
  const ack = (done: Array<[string, number]>) => {
    for (const [key, n] of done) say(`A ${key} ${n}`)
  }
  const writer = async () => {
    for (;;) {
      const roll = random(100)
      const one = () => {
        const key = workloadKey(random(blobWorkload.keys))
        const n = ++seq
        const length = blobWorkload.lengths[random(blobWorkload.lengths.length)]!
        say(`T ${key} ${n} put`)
        return { key, n, op: { type: 'put', key: Buffer.from(key), value: workloadValue(key, n, length) } as EngineOp }
      }
      if (roll < 45) {
        const { key, n, op } = one()
        const covered = unsyncedDone
        unsyncedDone = []
        await engine.batch([op], { sync: true })
        ack([...covered, [key, n]])
      } else if (roll < 70) {
        const { key, n, op } = one()
        await engine.batch([op], { sync: false })
        unsyncedDone.push([key, n])
      } else if (roll < 90) {
        // The shard machine's path: separate at prepare, write the pointers in a later batch.
        const writes = [one(), one()]
        const covered = unsyncedDone
        unsyncedDone = []
        const prepared = engine.prepare(writes.map((w) => w.op))
        await engine.batch(prepared.ops, { sync: true })
        ack([...covered, ...writes.map((w): [string, number] => [w.key, w.n])])
      } else {
        const key = workloadKey(random(blobWorkload.keys))
        const n = ++seq
        say(`T ${key} ${n} del`)
        const covered = unsyncedDone
        unsyncedDone = []
        await engine.batch([{ type: 'del', key: Buffer.from(key) }], { sync: true })
        ack([...covered, [key, n]])
      }
    }
  }
  await Promise.all([writer(), writer(), writer()])
}
