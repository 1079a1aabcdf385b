// The thread-pool WAL sync of the RocksDB engine: the fdatasync really hits the WAL after the
// write (strace), the event loop turns while synced writes wait, rounds coalesce, and the
// WalSyncer's listing, rotation, failure and option checks.
import assert from 'node:assert/strict'
import { spawn, spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, unlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { RocksDbEngine, type WalSyncMode } from '../../src/engine/rocksdb.js'
import { checkWalOptions, WalSyncer, walFileName } from '../../src/engine/wal-sync.js'

const childScript = fileURLToPath(new URL('./rocksdb-wal-child.js', import.meta.url))
const straceMissing = spawnSync('strace', ['-V']).error !== undefined ? 'strace is not installed (apt-get install -y strace)' : false

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'distkv-walsync-')))
  t.after(() => rmSync(dir, { recursive: true, force: true }))
  return dir
}

/** openedEngine opens an engine in a fresh directory and closes it before the directory goes. */
async function openedEngine(t: { after(fn: () => Promise<void> | void): void }, walSync: WalSyncMode): Promise<{ engine: RocksDbEngine; dir: string }> {
  const dir = realpathSync(mkdtempSync(join(tmpdir(), 'distkv-walsync-')))
  const engine = openEngine(dir, walSync)
  t.after(async () => {
    await engine.close()
    rmSync(dir, { recursive: true, force: true })
  })
  await engine.open()
  return { engine, dir }
}

function openEngine(dir: string, walSync: WalSyncMode): RocksDbEngine {
  return new RocksDbEngine({ dir, walSync, cacheBytes: 1024 * 1024, memtableBudgetBytes: 4 * 1024 * 1024, backgroundThreads: 1 })
}

/** SysEvent is one traced system call: who made it, on which path, and where it began and returned. */
interface SysEvent {
  tid: number
  call: string
  path: string
  text: string
  start: number
  end: number
}

/** parseStrace reads `strace -f -y` output, pairing `<unfinished ...>` with its `resumed` line. */
function parseStrace(output: string): SysEvent[] {
  const events: SysEvent[] = []
  const open = new Map<string, SysEvent>()
  output.split('\n').forEach((line, index) => {
    const resumed = /^(\d+)\s+<\.\.\. (\w+) resumed>/.exec(line)
    if (resumed !== null) {
      const event = open.get(`${resumed[1]}:${resumed[2]}`)
      if (event !== undefined) event.end = index
      return
    }
    const call = /^(\d+)\s+(\w+)\((\d+)<([^>]*)>(.*)$/.exec(line)
    if (call === null) return
    const event = { tid: Number(call[1]), call: call[2]!, path: call[4]!, text: call[5]!, start: index, end: index }
    if (line.endsWith('<unfinished ...>')) {
      event.end = Number.POSITIVE_INFINITY
      open.set(`${event.tid}:${event.call}`, event)
    }
    events.push(event)
  })
  return events
}

async function traceChild(dir: string, mode: WalSyncMode): Promise<SysEvent[]> {
  const traceFile = join(dir, '..', `${dir.split('/').pop()}.strace`)
  const args = ['-f', '-y', '-s', '64', '-e', 'trace=fdatasync,fsync,write', '-o', traceFile, process.execPath, childScript, join(dir, 'db'), mode]
  const child = spawn('strace', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()))
  const timer = setTimeout(() => child.kill('SIGKILL'), 50_000)
  const code = await new Promise<number | null>((resolve) => child.on('exit', resolve))
  clearTimeout(timer)
  try {
    assert.equal(code, 0, `traced child failed: ${stderr}`)
    return parseStrace(readFileSync(traceFile, 'utf8'))
  } finally {
    rmSync(traceFile, { force: true })
  }
}

function marker(events: SysEvent[], text: string): SysEvent {
  const found = events.find((event) => event.call === 'write' && event.text.includes(`MARK ${text}`))
  assert.ok(found, `marker ${text} not traced`)
  return found
}

/** checkSyncedWrite asserts: a WAL write, then a completed fdatasync of that WAL, between two markers. */
function checkSyncedWrite(events: SysEvent[], from: SysEvent, to: SysEvent, mainTid: number, mode: WalSyncMode): string {
  const window = events.filter((event) => event.start > from.start && event.start < to.start)
  const walWrite = window.find((event) => event.call === 'write' && /\/\d{6,}\.log$/.test(event.path))
  assert.ok(walWrite, 'no write(2) to a WAL file between the markers')
  assert.equal(walWrite.tid, mainTid, 'the binding writes on the JavaScript thread')
  const sync = window.find((event) => event.call === 'fdatasync' && event.path === walWrite.path && event.start > walWrite.end)
  assert.ok(sync, `no fdatasync of ${walWrite.path} after its write`)
  assert.ok(sync.end < to.start, 'the write resolved before its fdatasync returned')
  if (mode === 'threadpool') {
    assert.notEqual(sync.tid, mainTid, 'fdatasync ran on the JavaScript thread')
    assert.ok(!window.some((event) => event.tid === mainTid && /sync/.test(event.call)), 'the JavaScript thread synced something')
  } else {
    assert.equal(sync.tid, mainTid, "'native' fdatasyncs inside DB::Write on the JavaScript thread")
  }
  return walWrite.path
}

for (const mode of ['threadpool', 'native'] as const) {
  test(`rocksdb walSync ${mode}: strace shows the WAL write, then its fdatasync (${mode === 'threadpool' ? 'thread pool' : 'JS thread'}), then the ack; also after a WAL rotation`, { skip: straceMissing }, async (t) => {
    const dir = tempDir(t)
    const events = await traceChild(dir, mode)
    const begin = marker(events, 'begin')
    const mainTid = Number(/MARK begin (\d+)/.exec(begin.text)![1])
    const firstWal = checkSyncedWrite(events, begin, marker(events, 'synced'), mainTid, mode)
    const rotated = marker(events, 'rotated')
    const newest = Number(/MARK rotated (\d+)/.exec(rotated.text)![1])
    const secondWal = checkSyncedWrite(events, rotated, marker(events, 'synced2'), mainTid, mode)
    assert.ok(secondWal.endsWith(`/${walFileName(newest)}`) && secondWal !== firstWal, `second synced write went to ${secondWal}`)
    if (mode === 'threadpool') {
      // The new WAL's directory entry is made durable before the write is acknowledged. RocksDB's
      // flush threads fsync the directory too, so the syncer's own counter must have moved.
      const synced2 = marker(events, 'synced2')
      const window = events.filter((event) => event.start > rotated.start && event.end < synced2.start)
      assert.ok(window.some((event) => event.call === 'fsync' && event.path === join(dir, 'db')), 'no fsync of the WAL directory after the rotation')
      const dirSyncs = (event: SysEvent) => Number(/dirSyncs=(\d+)/.exec(event.text)![1])
      assert.ok(dirSyncs(synced2) > dirSyncs(rotated), 'the WAL syncer did not fsync the directory for the new WAL')
    }
  })
}

for (const mode of ['threadpool', 'native'] as const) {
  test(`rocksdb walSync ${mode}: ${mode === 'threadpool' ? 'the event loop turns while every' : 'no event loop turn while any'} synced batch waits`, async (t) => {
    const { engine } = await openedEngine(t, mode)
    let turns = 0
    let ticking = true
    const tick = (): void => {
      turns++
      if (ticking) setImmediate(tick)
    }
    setImmediate(tick)
    const turnsWhileWaiting: number[] = []
    for (let round = 0; round < 10; round++) {
      await Promise.all(Array.from({ length: 8 }, async (_, i) => {
        const before = turns
        await engine.put(Buffer.from(`k${round}-${i}`), Buffer.from('v'), { sync: true })
        turnsWhileWaiting.push(turns - before)
      }))
    }
    ticking = false
    if (mode === 'threadpool') assert.ok(turnsWhileWaiting.every((n) => n >= 1), `some synced write blocked the loop: ${turnsWhileWaiting}`)
    else assert.ok(turnsWhileWaiting.some((n) => n === 0), 'native synced writes should complete without a loop turn')
  })
}

test('rocksdb walSync threadpool: concurrent synced writes share rounds; sync() runs a round only after a write', async (t) => {
  const { engine, dir } = await openedEngine(t, 'threadpool')
  const stats = engine.walSyncStats!
  const started = stats.roundsStarted
  await Promise.all(Array.from({ length: 64 }, (_, i) => engine.put(Buffer.from(`key${i}`), Buffer.from('v'), { sync: true })))
  assert.ok(stats.roundsStarted - started <= 2, `64 concurrent synced puts took ${stats.roundsStarted - started} rounds`)

  // Nothing written since the last round: sync() needs no round of its own.
  const before = stats.roundsStarted
  await engine.sync()
  await Promise.all([engine.sync(), engine.sync()])
  assert.equal(stats.roundsStarted, before, 'sync() with no write since the last round started one')
  await engine.put(Buffer.from('unsynced'), Buffer.from('v'))
  await engine.sync()
  assert.equal(stats.roundsStarted, before + 1, 'sync() after an unsynced write must run a round')
  await engine.close()
  const reopened = openEngine(dir, 'threadpool')
  await reopened.open()
  try {
    assert.deepEqual(await reopened.get(Buffer.from('key63')), Buffer.from('v'))
  } finally {
    await reopened.close()
  }
})

test('rocksdb walSync threadpool: every acknowledged synced put survives SIGKILL of the writing process', { timeout: 60_000 }, async (t) => {
  const dir = tempDir(t)
  const child = spawn(process.execPath, [childScript, join(dir, 'db'), 'threadpool', 'until-killed'], { stdio: ['ignore', 'pipe', 'inherit'] })
  t.after(() => child.kill('SIGKILL'))
  const acked: number[] = []
  let buffered = ''
  await new Promise<void>((resolve, reject) => {
    child.on('exit', (code) => reject(new Error(`writer exited early with ${code}`)))
    child.stdout.on('data', (chunk: Buffer) => {
      buffered += chunk.toString()
      const lines = buffered.split('\n')
      buffered = lines.pop()!
      for (const line of lines) acked.push(Number(/^ACK (\d+)$/.exec(line)![1]))
      if (acked.length >= 300) resolve()
    })
  })
  child.removeAllListeners('exit')
  const exited = new Promise((resolve) => child.on('exit', resolve))
  child.kill('SIGKILL')
  await exited
  // NB: the page cache survives a process crash, so this checks recovery and acknowledgement
  // order, not the fdatasync itself (the strace test does that).
  const engine = openEngine(join(dir, 'db'), 'threadpool')
  await engine.open()
  try {
    const values = await engine.getMany(acked.map((n) => Buffer.from(`acked-${n}`)))
    assert.deepEqual(acked.filter((_, i) => values[i] === undefined), [], 'acknowledged puts lost')
  } finally {
    await engine.close()
  }
})

test('WalSyncer: syncs every listed WAL at or above the floor, survives deleted WALs, fails for good on a broken directory', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, walFileName(3)), 'a')
  writeFileSync(join(dir, walFileName(9)), 'b')
  writeFileSync(join(dir, 'MANIFEST-000010'), 'not a wal')
  const syncer = new WalSyncer(dir)
  const written = async (): Promise<void> => {
    syncer.noteWrite()
    await syncer.sync()
  }
  await syncer.sync()
  assert.equal(syncer.stats.roundsStarted, 0, 'no write noted: nothing to sync')
  await written()
  assert.deepEqual({ ...syncer.stats }, { roundsStarted: 1, roundsCompleted: 1, filesSynced: 2, dirSyncs: 1, listings: 1 })
  // A rotation: 9 is sealed and 3 obsolete; the floor reaches 12 only two rounds later.
  writeFileSync(join(dir, walFileName(12)), 'c')
  unlinkSync(join(dir, walFileName(3)))
  await written()
  assert.deepEqual({ ...syncer.stats }, { roundsStarted: 2, roundsCompleted: 2, filesSynced: 4, dirSyncs: 2, listings: 2 })
  await written()
  assert.equal(syncer.stats.filesSynced, 6, 'the floor is 9, the newest WAL of two rounds ago')
  await written()
  assert.equal(syncer.stats.filesSynced, 7, 'only WAL 12 is at or above the floor now')
  assert.equal(syncer.stats.dirSyncs, 2, 'the directory is fsynced only when a newer WAL appears')
  unlinkSync(join(dir, walFileName(9)))
  unlinkSync(join(dir, walFileName(12)))
  await assert.rejects(written(), { code: 'KV_ERR_INTERNAL', message: /no RocksDB WAL file/ })
  writeFileSync(join(dir, walFileName(13)), 'd')
  await assert.rejects(written(), { code: 'KV_ERR_INTERNAL' }, 'a failed syncer stays failed')
  await syncer.close()

  const closed = new WalSyncer(dir)
  await closed.close()
  await assert.rejects(closed.sync(), { code: 'KV_ERR_CLOSED' })
  const missing = new WalSyncer(join(dir, 'absent'))
  missing.noteWrite()
  await assert.rejects(missing.sync(), { code: 'KV_ERR_INTERNAL', message: /ENOENT/ })
})

test('WalSyncer: with walVersion, a round reuses the last listing until the version changes', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, walFileName(4)), 'a')
  let version = 1
  const syncer = new WalSyncer(dir, { walVersion: () => String(version) })
  const written = async (): Promise<void> => {
    syncer.noteWrite()
    await syncer.sync()
  }
  await written()
  await written()
  assert.deepEqual({ ...syncer.stats }, { roundsStarted: 2, roundsCompleted: 2, filesSynced: 2, dirSyncs: 1, listings: 1 })
  // Proof that the listing was reused: a WAL the version does not announce is not seen.
  writeFileSync(join(dir, walFileName(7)), 'b')
  await written()
  assert.equal(syncer.stats.filesSynced, 3, 'only WAL 4 was synced')
  version++
  await written()
  assert.equal(syncer.stats.listings, 2)
  assert.equal(syncer.stats.filesSynced, 5, 'a new version lists again: WALs 4 and 7')
  assert.equal(syncer.stats.dirSyncs, 2, 'and fsyncs the directory for the new WAL')
  await syncer.close()
})

test('rocksdb walSync threadpool: rounds list the WAL directory only after RocksDB switched memtables', async (t) => {
  const { engine } = await openedEngine(t, 'threadpool')
  const stats = engine.walSyncStats!
  for (let i = 0; i < 5; i++) await engine.put(Buffer.from(`key${i}`), Buffer.from('v'), { sync: true })
  assert.equal(stats.roundsStarted, 5)
  assert.equal(stats.listings, 1, 'no memtable switch, so one listing served every round')
  // 1 MiB write buffers: a few MiB of writes switch memtables, and with them the WAL.
  const value = Buffer.alloc(64 * 1024, 7)
  for (let i = 0; i < 64; i++) await engine.put(Buffer.from(`fill-${i}`), value)
  await engine.put(Buffer.from('after'), Buffer.from('v'), { sync: true })
  assert.equal(stats.listings, 2, 'the switch made the next round list again')
  assert.ok(stats.dirSyncs >= 2, 'and fsync the directory for the new WAL')
})

test('WalSyncer: a write noted while a round runs waits for the next round; callers share rounds', async (t) => {
  const dir = tempDir(t)
  writeFileSync(join(dir, walFileName(5)), 'a')
  const syncer = new WalSyncer(dir)
  syncer.noteWrite()
  const first = syncer.sync()
  assert.equal(syncer.stats.roundsStarted, 1, 'the first sync starts a round at once')
  // No write since that round started: it is enough.
  let covered = 0
  const same = syncer.sync().then(() => (covered = syncer.stats.roundsCompleted))
  syncer.noteWrite()
  let roundsAtSecond = 0
  const seconds = Array.from({ length: 10 }, () => syncer.sync().then(() => (roundsAtSecond = syncer.stats.roundsCompleted)))
  await Promise.all([first, same, ...seconds])
  assert.equal(covered, 1, 'a sync with no newer write shares the running round')
  assert.equal(roundsAtSecond, 2, 'a write noted during round 1 resolved only after round 2')
  assert.equal(syncer.stats.roundsStarted, 2, 'ten callers shared one next round')
  syncer.noteWrite()
  const third = syncer.sync()
  syncer.noteWrite()
  await third
  await new Promise((resolve) => setImmediate(resolve))
  await syncer.sync()
  assert.equal(syncer.stats.roundsStarted, 4, 'a write noted during a round is not covered by that round')
  await syncer.close()
})

test('checkWalOptions: refuses RocksDB options that would break the thread-pool sync argument, naming the option', async (t) => {
  const dir = tempDir(t)
  const options = (recycle: number) => `[Version]\n  rocksdb_version=9.0\n[DBOptions]\n  manual_wal_flush=false\n  recycle_log_file_num=${recycle}\n  two_write_queues=false\n  enable_pipelined_write=false\n  WAL_ttl_seconds=0\n  WAL_size_limit_MB=0\n[CFOptions "default"]\n  recycle_log_file_num=7\n`
  writeFileSync(join(dir, 'OPTIONS-000007'), options(0))
  await checkWalOptions(dir)
  writeFileSync(join(dir, 'OPTIONS-000012'), options(4))
  await assert.rejects(checkWalOptions(dir), { code: 'KV_ERR_INVALID', message: /recycle_log_file_num=0/ })
  const empty = join(dir, 'empty')
  mkdirSync(empty)
  await assert.rejects(checkWalOptions(empty), { code: 'KV_ERR_INTERNAL' })
})

test('rocksdb walSync: the option and DISTKV_ROCKSDB_WAL_SYNC are validated', () => {
  assert.throws(() => new RocksDbEngine({ dir: '/tmp/x', walSync: 'fast' as WalSyncMode }), { code: 'KV_ERR_INVALID', message: /walSync/ })
  assert.equal(new RocksDbEngine({ dir: '/tmp/x' }).walSync, process.env.DISTKV_ROCKSDB_WAL_SYNC || 'threadpool')
  const saved = process.env.DISTKV_ROCKSDB_WAL_SYNC
  try {
    process.env.DISTKV_ROCKSDB_WAL_SYNC = 'native'
    assert.equal(new RocksDbEngine({ dir: '/tmp/x' }).walSync, 'native')
    assert.equal(new RocksDbEngine({ dir: '/tmp/x', walSync: 'threadpool' }).walSync, 'threadpool')
    process.env.DISTKV_ROCKSDB_WAL_SYNC = 'sometimes'
    assert.throws(() => new RocksDbEngine({ dir: '/tmp/x' }), { code: 'KV_ERR_INVALID', message: /DISTKV_ROCKSDB_WAL_SYNC/ })
  } finally {
    if (saved === undefined) delete process.env.DISTKV_ROCKSDB_WAL_SYNC
    else process.env.DISTKV_ROCKSDB_WAL_SYNC = saved
  }
})
