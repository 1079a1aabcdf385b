// Child process for power-loss.test.ts: opens RocksDB through withPowerLossFault (so
// DISTKV_FAULT_POWER_LOSS decides whether the power-loss cache is on), writes synced and unsynced
// keys, reads an unsynced one back, prints READY and waits for SIGKILL.
// Usage: node power-loss-child.js DIR
import { writeSync } from 'node:fs'
import { withPowerLossFault } from '../../src/engine/power-loss.js'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'

const [dir] = process.argv.slice(2) as [string]
const engine = withPowerLossFault(new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 4 * 1024 * 1024, backgroundThreads: 1 }))
await engine.open()
const text = (s: string) => Buffer.from(s)
await engine.put(text('a-synced'), text('1'), { sync: true })
await engine.put(text('b-unsynced-then-synced'), text('2'))
// A synced write makes every earlier write durable, as an fsync of the WAL does.
await engine.batch([{ type: 'put', key: text('c-synced'), value: text('3') }], { sync: true })
await engine.put(text('d-unsynced'), text('4'))
await engine.batch([{ type: 'del', key: text('a-synced') }, { type: 'put', key: text('e-unsynced'), value: text('5') }])
const seen = await engine.getMany([text('a-synced'), text('d-unsynced'), text('e-unsynced')])
writeSync(1, `READY ${JSON.stringify(seen.map((value) => value?.toString() ?? null))}\n`)
setInterval(() => undefined, 60_000)
