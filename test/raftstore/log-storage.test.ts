// EngineRaftStorage over log files and an engine (memory and RocksDB): round trip, restart
// recovery, suffix replacement, compaction gated on the engine's synced applied index, snapshot
// install, how open reconciles the two stores after a crash, and the import of a log stored in
// the engine's old layout. Torn and corrupt log files are log-files.test.ts's.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import type { Engine } from '../../src/engine/engine.js'
import { MemoryEngine } from '../../src/engine/memory.js'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import type { Entry } from '../../src/raft/types.js'
import { RaftLogFiles } from '../../src/raftstore/log-files.js'
import { BOOTSTRAP_INDEX, EngineRaftStorage, type StagedWrite } from '../../src/raftstore/log-storage.js'
import { appliedStateKey, encodeAppliedState, encodeHardState, encodeRun, encodeTruncatedState, entryKey, hardStateKey, truncatedStateKey } from '../../src/raftstore/records.js'

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

interface Harness {
  engine: Engine
  logFiles: RaftLogFiles
  /** write does what the driver's write does: synced engine ops first, then the log beside the other ops. */
  write(...staged: StagedWrite[]): Promise<void>
  /** open opens the group's storage (the log files hand each group's replayed state over once per open). */
  open(groupId?: number): Promise<EngineRaftStorage>
  /** restart closes both stores cleanly and opens them again, as a process restart would. */
  restart(): Promise<void>
  /** crash loses what neither store synced, as a power cut would (memory engine only). */
  crash(): Promise<void>
  cleanup(): Promise<void>
}

async function harness(kind: 'memory' | 'rocksdb'): Promise<Harness> {
  const root = mkdtempSync(join(tmpdir(), 'distkv-raftlog-'))
  const newEngine = (): Engine => kind === 'memory'
    ? new MemoryEngine({ durability: 'lose-unsynced' })
    : new RocksDbEngine({ dir: join(root, 'db'), cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 })
  const openLog = () => RaftLogFiles.open({ dir: join(root, 'log'), powerLoss: true })
  const h: Harness = {
    engine: newEngine(),
    logFiles: undefined as unknown as RaftLogFiles,
    async write(...staged) {
      const first = staged.filter((s) => s.syncEngine === true).flatMap((s) => s.ops)
      if (first.length > 0) await h.engine.batch(first, { sync: true })
      const log = staged.flatMap((s) => s.log ?? [])
      const ops = staged.filter((s) => s.syncEngine !== true).flatMap((s) => s.ops)
      await Promise.all([log.length > 0 ? h.logFiles.write(log, true) : undefined, ops.length > 0 ? h.engine.batch(ops, { sync: false }) : undefined])
      for (const s of staged) s.onDurable()
    },
    open: (groupId = GROUP) => EngineRaftStorage.open(h.engine, h.logFiles, groupId),
    async restart() {
      await h.logFiles.close()
      await h.engine.close()
      if (kind === 'rocksdb') h.engine = newEngine()
      await h.engine.open()
      h.logFiles = await openLog()
    },
    async crash() {
      assert.equal(kind, 'memory', 'only the memory engine models a crash')
      h.logFiles.crash()
      ;(h.engine as MemoryEngine).crash()
      await h.engine.open()
      h.logFiles = await openLog()
    },
    async cleanup() {
      await h.logFiles.close()
      await h.engine.close()
      rmSync(root, { recursive: true, force: true })
    },
  }
  await h.engine.open()
  h.logFiles = await openLog()
  return h
}

for (const kind of ['memory', 'rocksdb'] as const) {
  test(`${kind}: term, vote, log, commit and applied survive a restart`, async () => {
    const h = await harness(kind)
    try {
      assert.equal(await EngineRaftStorage.bootstrap(h.engine, GROUP, VOTERS), true)
      assert.equal(await EngineRaftStorage.bootstrap(h.engine, GROUP, VOTERS), false, 'bootstrap is idempotent')
      const storage = await h.open()
      assert.deepEqual(storage.initialState(), { hardState: { term: BOOTSTRAP_INDEX, vote: 0, commit: BOOTSTRAP_INDEX }, confState: VOTERS })
      assert.equal(storage.firstIndex(), BOOTSTRAP_INDEX + 1, 'a bootstrapped group starts behind an implicit snapshot')
      const append = storage.appendOps(entries(6, 10, 6))
      assert.equal(storage.lastIndex(), 5, 'memory changes only once the batch is durable')
      await h.write(append, storage.hardStateOps({ term: 6, vote: 3, commit: 9 }))
      await h.write(storage.appliedStateOps({ index: 8, term: 6, confState: VOTERS }))
      await h.restart()
      const reopened = await h.open()
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
    const h = await harness(kind)
    try {
      const storage = await h.open()
      await h.write(storage.appendOps(entries(1, 6, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 2 }))
      await h.write(storage.appendOps([entry(4, 3, 'new-4')]))
      assert.equal(storage.lastIndex(), 4)
      assert.equal(storage.term(4), 3)
      await h.restart()
      const reopened = await h.open()
      assert.equal(reopened.lastIndex(), 4, 'entries 5 and 6 are gone on disk too')
      assert.equal(Buffer.from(reopened.entries(4, 5, 1000)[0]!.data).toString(), 'new-4')
      assert.throws(() => reopened.appendOps([entry(2, 4)]), /overwrite the committed log/)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: compaction drops the applied prefix, only up to what the engine synced, and survives a restart`, async () => {
    const h = await harness(kind)
    try {
      const storage = await h.open()
      await h.write(storage.appendOps(entries(1, 10, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 8 }))
      await h.write(storage.appliedStateOps({ index: 8, term: 1, confState: VOTERS }))
      assert.throws(() => storage.compactOps(6), /not durably applied/, 'the applied state is not synced in the engine yet')
      await h.engine.sync()
      storage.engineSynced(8)
      assert.throws(() => storage.compactOps(9), /not durably applied/)
      const logBytes = storage.logBytes
      storage.setSnapshot({ meta: { index: 8, term: 1, confState: VOTERS }, data: Buffer.from('state@8') })
      await h.write(storage.compactOps(6))
      assert.equal(storage.firstIndex(), 7)
      assert.equal(storage.term(6), 1)
      assert.ok(storage.logBytes < logBytes)
      assert.equal(Buffer.from(storage.snapshot().data).toString(), 'state@8')
      await h.restart()
      const reopened = await h.open()
      assert.equal(reopened.firstIndex(), 7)
      assert.equal(reopened.lastIndex(), 10)
      assert.equal(reopened.term(6), 1)
      assert.equal(reopened.hasSnapshot, false, 'the driver must regenerate the snapshot after a restart')
      assert.equal(reopened.durableAppliedIndex, 8, 'what open reads from the engine is durable')
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: installing a snapshot replaces the log and moves applied`, async () => {
    const h = await harness(kind)
    try {
      const storage = await h.open()
      await h.write(storage.appendOps(entries(1, 3, 1)), storage.hardStateOps({ term: 1, vote: 2, commit: 1 }))
      const snapshot = { meta: { index: 20, term: 4, confState: VOTERS }, data: Buffer.from('leader state') }
      const install = storage.snapshotOps(snapshot)
      assert.equal(install.syncEngine, true, 'the engine holds the snapshot before the log drops the entries')
      await h.write(install, storage.hardStateOps({ term: 4, vote: 2, commit: 20 }), storage.appendOps([entry(21, 4)]))
      assert.equal(storage.firstIndex(), 21)
      assert.equal(storage.lastIndex(), 21)
      assert.equal(storage.snapshot(), snapshot)
      await h.restart()
      const reopened = await h.open()
      assert.equal(reopened.appliedIndex, 20)
      assert.equal(reopened.firstIndex(), 21)
      assert.equal(reopened.lastIndex(), 21)
      assert.equal(reopened.term(20), 4)
      assert.deepEqual(reopened.initialState().confState, VOTERS)
    } finally {
      await h.cleanup()
    }
  })

  test(`${kind}: a log stored in the engine's old layout is imported into the log files once, then deleted`, async () => {
    const h = await harness(kind)
    try {
      await h.engine.batch([
        { type: 'put', key: truncatedStateKey(GROUP), value: encodeTruncatedState({ index: 2, term: 1 }) },
        { type: 'put', key: hardStateKey(GROUP), value: encodeHardState({ term: 2, vote: 3, commit: 5 }) },
        { type: 'put', key: appliedStateKey(GROUP), value: encodeAppliedState({ index: 4, term: 2, confState: VOTERS }) },
        // A run straddling the compaction point, then one more.
        { type: 'put', key: entryKey(GROUP, 1), value: encodeRun([entry(1, 1), entry(2, 1), entry(3, 2)]) },
        { type: 'put', key: entryKey(GROUP, 4), value: encodeRun(entries(4, 6, 2)) },
      ], { sync: true })
      const imported = await h.open()
      assert.equal(imported.firstIndex(), 3)
      assert.equal(imported.lastIndex(), 6)
      assert.deepEqual(imported.initialState().hardState, { term: 2, vote: 3, commit: 5 })
      for (const key of [hardStateKey(GROUP), truncatedStateKey(GROUP), entryKey(GROUP, 1), entryKey(GROUP, 4)]) assert.equal(await h.engine.get(key), undefined, 'old keys are deleted')
      await h.restart()
      const reopened = await h.open()
      assert.deepEqual(reopened.entries(3, 7, 1e9).map((e) => [e.index, e.term, Buffer.from(e.data).toString()]), [[3, 2, 'cmd-3'], [4, 2, 'cmd-4'], [5, 2, 'cmd-5'], [6, 2, 'cmd-6']])
      assert.equal(reopened.appliedIndex, 4)
    } finally {
      await h.cleanup()
    }
  })
}

test('crash: the engine ahead of the log (an apply written beside a lost log write) restarts the log at the applied state', async () => {
  const h = await harness('memory')
  try {
    const storage = await h.open()
    await h.write(storage.appendOps(entries(1, 4, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 2 }))
    // Entries 5-6 and commit 6 arrive; the apply of 1-6 is written (and synced) but the log write is not synced.
    await h.engine.batch(storage.appliedStateOps({ index: 6, term: 2, confState: VOTERS }).ops, { sync: true })
    await h.logFiles.write([...storage.appendOps(entries(5, 6, 2)).log!, ...storage.hardStateOps({ term: 2, vote: 0, commit: 6 }).log!], false)
    await h.crash()
    const reopened = await h.open()
    assert.equal(reopened.appliedIndex, 6)
    assert.equal(reopened.firstIndex(), 7, 'the log restarts after the applied index')
    assert.equal(reopened.lastIndex(), 6)
    assert.equal(reopened.term(6), 2)
    assert.deepEqual(reopened.initialState().hardState, { term: 2, vote: 0, commit: 6 }, 'the term is raised with no vote')
    await h.restart()
    const again = await h.open()
    assert.equal(again.firstIndex(), 7, 'the restart was written to the log files')
    assert.deepEqual(again.initialState().hardState, { term: 2, vote: 0, commit: 6 })
  } finally {
    await h.cleanup()
  }
})

test('crash: unsynced applies are lost and replayed from the log; an applied state behind the compaction point is KV_ERR_CORRUPTION', async () => {
  const h = await harness('memory')
  try {
    const storage = await h.open()
    await h.write(storage.appendOps(entries(1, 10, 1)), storage.hardStateOps({ term: 1, vote: 1, commit: 10 }))
    await h.write(storage.appliedStateOps({ index: 4, term: 1, confState: VOTERS }))
    await h.engine.sync()
    storage.engineSynced(4)
    await h.write(storage.appliedStateOps({ index: 9, term: 1, confState: VOTERS }))
    await h.write(storage.compactOps(3))
    await h.crash()
    const reopened = await h.open()
    assert.equal(reopened.appliedIndex, 4, 'the unsynced apply is gone')
    assert.equal(reopened.firstIndex(), 4)
    assert.equal(reopened.lastIndex(), 10, 'entries 5-10 are there to apply again')
    // The rule's other side: a log compacted past what the engine holds cannot be repaired.
    await h.write(reopened.appliedStateOps({ index: 4, term: 1, confState: VOTERS }))
    reopened.engineSynced(8)
    await h.write(reopened.compactOps(8))
    await h.crash()
    await assert.rejects(h.open(), { code: 'KV_ERR_CORRUPTION', message: /behind the log's compaction point/ })
  } finally {
    await h.cleanup()
  }
})

test('groups sharing the log files and the engine are independent; bad ids are refused', async () => {
  const h = await harness('memory')
  try {
    const a = await h.open(1)
    const b = await h.open(2)
    await h.write(a.appendOps(entries(1, 3, 1)), b.appendOps(entries(1, 5, 2)))
    await h.restart()
    const a2 = await h.open(1)
    const b2 = await h.open(2)
    assert.equal(a2.lastIndex(), 3)
    assert.equal(b2.lastIndex(), 5)
    assert.equal(b2.term(5), 2)
    await assert.rejects(h.open(0), { code: 'KV_ERR_INVALID' })
  } finally {
    await h.cleanup()
  }
})
