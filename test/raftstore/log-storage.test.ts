// EngineRaftStorage on the memory and RocksDB engines: round trip, restart recovery, suffix
// replacement, compaction, snapshot install, and torn-tail / corruption handling at open.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { Engine } from '../../src/engine/engine.js'
import { MemoryEngine } from '../../src/engine/memory.js'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import type { Entry } from '../../src/raft/types.js'
import { BOOTSTRAP_INDEX, EngineRaftStorage, type StagedWrite } from '../../src/raftstore/log-storage.js'
import { appliedStateKey, crc32, entryKey, hardStateKey } from '../../src/raftstore/records.js'

const GROUP = 7
const VOTERS = { voters: [1, 2, 3], learners: [], votersOutgoing: [] }

function entry(index: number, term: number, text = `cmd-${index}`): Entry {
  return { index, term, type: 'normal', data: Buffer.from(text) }
}

function entries(from: number, to: number, term: number): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push(entry(i, term))
  return out
}

async function write(engine: Engine, ...staged: StagedWrite[]): Promise<void> {
  await engine.batch(staged.flatMap((s) => s.ops), { sync: true })
  for (const s of staged) s.onDurable()
}

interface Harness {
  engine: Engine
  /** restart closes the engine and opens it again, as a process restart would. */
  restart(): Promise<void>
  cleanup(): Promise<void>
}

const engines: Array<[string, () => Promise<Harness>]> = [
  ['memory', async () => {
    const engine = new MemoryEngine()
    await engine.open()
    return { engine, restart: async () => { await engine.close(); await engine.open() }, cleanup: () => engine.close() }
  }],
  ['rocksdb', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'distkv-raftlog-'))
    const h: Harness = {
      engine: new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 }),
      restart: async () => {
        await h.engine.close()
        h.engine = new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 })
        await h.engine.open()
      },
      cleanup: async () => {
        await h.engine.close()
        rmSync(dir, { recursive: true, force: true })
      },
    }
    await h.engine.open()
    return h
  }],
]

for (const [kind, make] of engines) {
  test(`${kind}: term, vote, log, commit and applied survive a restart`, async () => {
    const h = await make()
    try {
      assert.equal(await EngineRaftStorage.bootstrap(h.engine, GROUP, VOTERS), true)
      assert.equal(await EngineRaftStorage.bootstrap(h.engine, GROUP, VOTERS), false, 'bootstrap is idempotent')
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      assert.deepEqual(storage.initialState(), { hardState: { term: BOOTSTRAP_INDEX, vote: 0, commit: BOOTSTRAP_INDEX }, confState: VOTERS })
      assert.equal(storage.firstIndex(), BOOTSTRAP_INDEX + 1, 'a bootstrapped group starts behind an implicit snapshot')
      const append = storage.appendOps(entries(6, 10, 6))
      assert.equal(storage.lastIndex(), 5, 'memory changes only once the batch is durable')
      await write(h.engine, append, storage.hardStateOps({ term: 6, vote: 3, commit: 9 }))
      await write(h.engine, storage.appliedStateOps({ index: 8, term: 6, confState: VOTERS }))
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.deepEqual(reopened.initialState(), { hardState: { term: 6, vote: 3, commit: 9 }, confState: VOTERS })
      assert.equal(reopened.appliedIndex, 8)
      assert.equal(reopened.firstIndex(), 6)
      assert.equal(reopened.lastIndex(), 10)
      assert.equal(reopened.term(5), 5)
      assert.equal(reopened.term(10), 6)
      const read = reopened.entries(7, 11, Number.MAX_SAFE_INTEGER)
      assert.deepEqual(read.map((e) => [e.index, e.term, Buffer.from(e.data).toString()]), [7, 8, 9, 10].map((i) => [i, 6, `cmd-${i}`]))
      assert.equal(reopened.entries(6, 11, 1).length, 1, 'maxBytes limits but returns at least one entry')
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: an append that conflicts replaces the stored suffix`, async () => {
    const h = await make()
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.appendOps(entries(1, 6, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 2 }))
      await write(h.engine, storage.appendOps([entry(4, 3, 'new-4')]))
      assert.equal(storage.lastIndex(), 4)
      assert.equal(storage.term(4), 3)
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(reopened.lastIndex(), 4, 'entries 5 and 6 were deleted on disk too')
      assert.equal(Buffer.from(reopened.entries(4, 5, 1000)[0]!.data).toString(), 'new-4')
      assert.throws(() => reopened.appendOps([entry(2, 4)]), /overwrite the committed log/)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: a torn or corrupt tail above the commit index is dropped at open`, async () => {
    const h = await make()
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      // Three runs (one per append): [1, 4], [5], [6].
      await write(h.engine, storage.appendOps(entries(1, 4, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 3 }))
      await write(h.engine, storage.appendOps(entries(5, 5, 1)))
      await write(h.engine, storage.appendOps(entries(6, 6, 1)))
      const last = (await h.engine.get(entryKey(GROUP, 6)))!
      await h.engine.put(entryKey(GROUP, 6), last.subarray(0, last.length - 3)) // torn: a short write
      const fifth = Buffer.from((await h.engine.get(entryKey(GROUP, 5)))!)
      fifth[fifth.length - 1]! ^= 0x40 // a flipped bit
      await h.engine.put(entryKey(GROUP, 5), fifth)
      const warnings: unknown[] = []
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP, { logger: (_m, details) => warnings.push(details) })
      assert.equal(reopened.lastIndex(), 4, 'the log ends before the first damaged entry')
      assert.deepEqual(warnings, [{ groupId: GROUP, from: 5, keys: 2 }])
      assert.equal(await h.engine.get(entryKey(GROUP, 5)), undefined, 'damaged entries are deleted, never applied')
      assert.equal(await h.engine.get(entryKey(GROUP, 6)), undefined)
      const again = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(again.lastIndex(), 4)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: damage at or below the commit index fails the open with KV_ERR_CORRUPTION`, async () => {
    const h = await make()
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.appendOps(entries(1, 2, 1)))
      await write(h.engine, storage.appendOps(entries(3, 6, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 3 }))
      const third = Buffer.from((await h.engine.get(entryKey(GROUP, 3)))!)
      third[10]! ^= 0x01
      await h.engine.put(entryKey(GROUP, 3), third)
      await assert.rejects(EngineRaftStorage.open(h.engine, GROUP), { code: 'KV_ERR_CORRUPTION', message: /entry 3/ })
      await h.engine.del(entryKey(GROUP, 3))
      await assert.rejects(EngineRaftStorage.open(h.engine, GROUP), { code: 'KV_ERR_CORRUPTION' }, 'a missing committed entry is damage too')
      await h.engine.put(hardStateKey(GROUP), Buffer.from('garbage'))
      await assert.rejects(EngineRaftStorage.open(h.engine, GROUP), { code: 'KV_ERR_CORRUPTION', message: /hard state/ })
      await h.engine.put(appliedStateKey(GROUP), Buffer.from([0, 0, 0, 0]))
      await assert.rejects(EngineRaftStorage.open(h.engine, GROUP), { code: 'KV_ERR_CORRUPTION' })
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: compaction drops the applied prefix and survives a restart`, async () => {
    const h = await make()
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.appendOps(entries(1, 10, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 8 }))
      await write(h.engine, storage.appliedStateOps({ index: 8, term: 1, confState: VOTERS }))
      assert.throws(() => storage.compactOps(9), /not applied/)
      const logBytes = storage.logBytes
      storage.setSnapshot({ meta: { index: 8, term: 1, confState: VOTERS }, data: Buffer.from('state@8') })
      await write(h.engine, storage.compactOps(6))
      assert.equal(storage.firstIndex(), 7)
      assert.equal(storage.term(6), 1)
      assert.ok(storage.logBytes < logBytes)
      assert.equal(Buffer.from(storage.snapshot().data).toString(), 'state@8')
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(reopened.firstIndex(), 7)
      assert.equal(reopened.lastIndex(), 10)
      assert.equal(reopened.term(6), 1)
      assert.equal(reopened.hasSnapshot, false, 'the driver must regenerate the snapshot after a restart')
      assert.equal(await h.engine.get(entryKey(GROUP, 6)), undefined)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: one key per append (a run); compaction deletes whole runs; a conflict inside a partly compacted run`, async () => {
    const h = await make()
    const runKeys = async () => {
      const keys: number[] = []
      const iterator = h.engine.iterator({ gte: entryKey(GROUP, 0), lt: entryKey(GROUP, Number.MAX_SAFE_INTEGER) })
      for (let batch = await iterator.nextBatch(100); batch.length > 0; batch = await iterator.nextBatch(100)) for (const [key] of batch) keys.push(key.readUInt32BE(14))
      await iterator.close()
      return keys
    }
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.appendOps(entries(1, 4, 1)))
      await write(h.engine, storage.appendOps(entries(5, 10, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 7 }))
      assert.deepEqual(await runKeys(), [1, 5], 'each append is one key')
      await write(h.engine, storage.appliedStateOps({ index: 7, term: 1, confState: VOTERS }))
      await write(h.engine, storage.compactOps(6))
      assert.deepEqual(await runKeys(), [5], 'the run [1, 4] is wholly compacted; [5, 10] straddles the compaction point and stays')
      await write(h.engine, storage.appendOps([entry(9, 2, 'new-9')]))
      assert.deepEqual(await runKeys(), [7, 9], 'the straddling run is rewritten with its live entries before the conflict')
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(reopened.firstIndex(), 7)
      assert.equal(reopened.lastIndex(), 9)
      assert.deepEqual(reopened.entries(7, 10, 1e9).map((e) => [e.index, e.term, Buffer.from(e.data).toString()]), [[7, 1, 'cmd-7'], [8, 1, 'cmd-8'], [9, 2, 'new-9']])
      await write(h.engine, reopened.appendOps(entries(10, 12, 2)))
      await write(h.engine, reopened.appendOps([entry(11, 3, 'new-11')]))
      assert.deepEqual(await runKeys(), [7, 9, 10, 11], 'a conflict inside the last run keeps its prefix as a run of its own')
      await write(h.engine, reopened.appendOps([entry(11, 4, 'newer-11'), entry(12, 4)]))
      assert.deepEqual(await runKeys(), [7, 9, 10, 11], 'a conflict at the first entry of a run replaces that run under the same key')
      await h.restart()
      const again = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(again.lastIndex(), 12)
      assert.equal(again.term(11), 4)
      assert.equal(Buffer.from(again.entries(11, 12, 1e9)[0]!.data).toString(), 'newer-11')
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: a log written one entry per key (the format before runs) opens, grows and compacts`, async () => {
    const h = await make()
    const legacy = (e: Entry) => {
      const payload = Buffer.alloc(17 + e.data.byteLength)
      payload.writeUInt32BE(0, 0)
      payload.writeUInt32BE(e.term, 4)
      payload.writeUInt32BE(0, 8)
      payload.writeUInt32BE(e.index, 12)
      payload.set(e.data, 17)
      const record = Buffer.alloc(4 + payload.length)
      record.writeUInt32BE(crc32(payload), 0)
      payload.copy(record, 4)
      return record
    }
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.hardStateOps({ term: 2, vote: 1, commit: 4 }))
      for (const e of entries(1, 4, 2)) await h.engine.put(entryKey(GROUP, e.index), legacy(e))
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(reopened.lastIndex(), 4)
      assert.deepEqual(reopened.entries(1, 5, 1e9).map((e) => [e.index, e.term, Buffer.from(e.data).toString()]), [1, 2, 3, 4].map((i) => [i, 2, `cmd-${i}`]))
      await write(h.engine, reopened.appendOps(entries(5, 6, 2)), reopened.appliedStateOps({ index: 4, term: 2, confState: VOTERS }))
      await write(h.engine, reopened.compactOps(3))
      assert.equal(await h.engine.get(entryKey(GROUP, 3)), undefined, 'each old entry is a run of one, deleted when compacted')
      await h.restart()
      const again = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(again.firstIndex(), 4)
      assert.equal(again.lastIndex(), 6)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: installing a snapshot replaces the log and moves applied`, async () => {
    const h = await make()
    try {
      const storage = await EngineRaftStorage.open(h.engine, GROUP)
      await write(h.engine, storage.appendOps(entries(1, 3, 1)), storage.hardStateOps({ term: 1, vote: 2, commit: 1 }))
      const snapshot = { meta: { index: 20, term: 4, confState: VOTERS }, data: Buffer.from('leader state') }
      await write(h.engine, storage.snapshotOps(snapshot), storage.hardStateOps({ term: 4, vote: 2, commit: 20 }), storage.appendOps([entry(21, 4)]))
      assert.equal(storage.firstIndex(), 21)
      assert.equal(storage.lastIndex(), 21)
      assert.equal(storage.snapshot(), snapshot)
      await h.restart()
      const reopened = await EngineRaftStorage.open(h.engine, GROUP)
      assert.equal(reopened.appliedIndex, 20)
      assert.equal(reopened.firstIndex(), 21)
      assert.equal(reopened.lastIndex(), 21)
      assert.equal(reopened.term(20), 4)
      assert.deepEqual(reopened.initialState().confState, VOTERS)
      for (const i of [1, 2, 3]) assert.equal(await h.engine.get(entryKey(GROUP, i)), undefined)
    } finally {
      await h.cleanup()
    }
  })
}

test('groups on one engine are independent', async () => {
  const engine = new MemoryEngine()
  await engine.open()
  const a = await EngineRaftStorage.open(engine, 1)
  const b = await EngineRaftStorage.open(engine, 2)
  await write(engine, a.appendOps(entries(1, 3, 1)), b.appendOps(entries(1, 5, 2)))
  const a2 = await EngineRaftStorage.open(engine, 1)
  const b2 = await EngineRaftStorage.open(engine, 2)
  assert.equal(a2.lastIndex(), 3)
  assert.equal(b2.lastIndex(), 5)
  assert.equal(b2.term(5), 2)
  await assert.rejects(EngineRaftStorage.open(engine, 0), { code: 'KV_ERR_INVALID' })
  await engine.close()
})
