// RaftLogFiles in real temp directories: every record type across reopen, suffix replacement,
// compaction past the last entry, snapshots, destroy with checkpoints, rotation and GC (a file
// pinned by an idle group until its rewrite), torn tails at every byte, corruption in a sealed
// file, unsynced writes held for the next synced one (O_DSYNC), direct writes, the power-loss model, and a seeded random walk against a model of the durable state.
import assert from 'node:assert/strict'
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { ErrorCode, KvError } from '../../src/errors.js'
import type { Entry, HardState } from '../../src/raft/types.js'
import { RaftLogFiles, fileName, preallocateSyncBytesMax, type DataLocation, type LogFilesOptions, type LogRecord, type RecoveredGroup } from '../../src/raftstore/log-files.js'
import { DIRECT_ALIGN, directWriteBytesMin, tailAfter } from '../../src/raftstore/log-files/direct.js'
import { dataByReferenceBytesMin, encodeRecord, recordBytes, referencedBytes, writeParts, type DataGap, type EncodableItem } from '../../src/raftstore/log-files/codec.js'
import { seededRandom } from './kv-machine.js'
import { settled } from '../promises.js'

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'distkv-logfiles-'))
}

function entry(index: number, term: number, bytes = 16, fill = index): Entry {
  return { index, term, type: index % 7 === 0 ? 'confChange' : 'normal', data: Buffer.alloc(bytes, fill & 0xff) }
}

function run(from: number, to: number, term: number, bytes = 16): Entry[] {
  const out: Entry[] = []
  for (let i = from; i <= to; i++) out.push(entry(i, term, bytes))
  return out
}

function open(dir: string, options: Partial<LogFilesOptions> = {}): Promise<RaftLogFiles> {
  return RaftLogFiles.open({ dir, powerLoss: false, ...options })
}

function preparedFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith('.rlog-prepared'))
}

function rlogFiles(dir: string): string[] {
  return readdirSync(dir).filter((name) => name.endsWith('.rlog')).sort()
}

/** plain turns entries into comparable objects (Buffer vs Uint8Array data). */
function plain(group: RecoveredGroup | undefined): unknown {
  if (group === undefined) return undefined
  return { hardState: group.hardState, truncated: group.truncated, entries: group.entries.map((e) => ({ ...e, data: Buffer.from(e.data).toString('hex') })) }
}

function expected(hardState: HardState, truncated: { index: number; term: number }, entries: Entry[]): unknown {
  return plain({ hardState, truncated, entries })
}

const HS0 = { term: 0, vote: 0, commit: 0 }

test('every record type round-trips across reopen', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir)
    await log.write([
      { type: 'hardState', groupId: 1, hardState: { term: 3, vote: 2, commit: 4 } },
      { type: 'entries', groupId: 1, entries: run(1, 6, 3) },
      { type: 'entries', groupId: 2, entries: run(1, 3, 1) },
      { type: 'entries', groupId: 3, entries: run(1, 2, 1) },
      { type: 'entries', groupId: Number.MAX_SAFE_INTEGER, entries: [entry(1, 2 ** 40)] },
    ], true)
    await log.write([
      { type: 'compact', groupId: 1, index: 2, term: 3 },
      { type: 'snapshot', groupId: 2, index: 50, term: 4 },
      { type: 'destroy', groupId: 3 },
    ], true)
    await log.close()
    log = await open(dir)
    assert.deepEqual(log.recoveredGroupIds().sort((a, b) => a - b), [1, 2, Number.MAX_SAFE_INTEGER])
    assert.deepEqual(plain(log.takeRecovered(1)), expected({ term: 3, vote: 2, commit: 4 }, { index: 2, term: 3 }, run(3, 6, 3)))
    assert.deepEqual(plain(log.takeRecovered(2)), expected(HS0, { index: 50, term: 4 }, []))
    assert.deepEqual(plain(log.takeRecovered(Number.MAX_SAFE_INTEGER)), expected(HS0, { index: 0, term: 0 }, [entry(1, 2 ** 40)]))
    assert.equal(log.takeRecovered(3), undefined)
    assert.equal(log.takeRecovered(1), undefined, 'taken once')
    assert.deepEqual(log.recoveredGroupIds(), [])
    // Appends continue after reopen.
    await log.write([{ type: 'entries', groupId: 2, entries: run(51, 52, 5) }], true)
    await log.close()
    log = await open(dir)
    assert.deepEqual(plain(log.takeRecovered(2)), expected(HS0, { index: 50, term: 4 }, run(51, 52, 5)))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('entries replace the log from their first index (suffix conflict), entries at or below truncated are skipped', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir)
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 10, 1) }], false)
    await log.write([{ type: 'entries', groupId: 1, entries: run(6, 7, 2) }], false)
    await log.write([{ type: 'compact', groupId: 1, index: 3, term: 1 }, { type: 'entries', groupId: 1, entries: run(2, 8, 3) }], true)
    await log.close()
    log = await open(dir)
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 3, term: 1 }, run(4, 8, 3)))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('compact past the last entry empties the log; snapshot drops every entry', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir)
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 5, 1) }, { type: 'entries', groupId: 2, entries: run(1, 5, 1) }], false)
    await log.write([{ type: 'compact', groupId: 1, index: 9, term: 2 }, { type: 'snapshot', groupId: 2, index: 3, term: 1 }], true)
    await log.close()
    log = await open(dir)
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 9, term: 2 }, []))
    assert.deepEqual(plain(log.takeRecovered(2)), expected(HS0, { index: 3, term: 1 }, []))
    // The log goes on after the compaction point.
    await log.write([{ type: 'entries', groupId: 1, entries: run(10, 11, 2) }, { type: 'entries', groupId: 2, entries: run(4, 4, 2) }], true)
    await log.close()
    log = await open(dir)
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 9, term: 2 }, run(10, 11, 2)))
    assert.deepEqual(plain(log.takeRecovered(2)), expected(HS0, { index: 3, term: 1 }, run(4, 4, 2)))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('bad records are KV_ERR_INVALID and write nothing', async () => {
  const dir = tempDir()
  try {
    const log = await open(dir)
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 3, 1) }], true)
    const bad: LogRecord[][] = [
      [{ type: 'entries', groupId: 1, entries: run(5, 6, 1) }], // a gap after 3
      [{ type: 'entries', groupId: 1, entries: [entry(4, 1), entry(6, 1)] }],
      [{ type: 'entries', groupId: 1, entries: [] }],
      [{ type: 'entries', groupId: 0, entries: run(1, 1, 1) }],
      [{ type: 'compact', groupId: 1, index: 2, term: 1 }, { type: 'compact', groupId: 1, index: 1, term: 1 }],
      [{ type: 'hardState', groupId: 1, hardState: { term: -1, vote: 0, commit: 0 } }],
      [{ type: 'entries', groupId: 1, entries: run(4, 4, 1) }, { type: 'entries', groupId: 1, entries: run(6, 6, 1) }],
    ]
    for (const records of bad) await assert.rejects(log.write(records, true), (error: unknown) => error instanceof KvError && error.code === ErrorCode.INVALID, JSON.stringify(records))
    await log.close()
    const again = await open(dir)
    assert.deepEqual(plain(again.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, run(1, 3, 1)))
    await again.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

/** busyRound appends one large entry to `groupId` and compacts all but it, so its older files die. */
function busyRound(groupId: number, index: number): LogRecord[] {
  return [
    { type: 'entries', groupId, entries: [entry(index, 1, 300)] },
    { type: 'compact', groupId, index: index - 1, term: 1 },
    { type: 'hardState', groupId, hardState: { term: 1, vote: 1, commit: index } },
  ]
}

test('rotation: GC deletes dead files; an idle group pins its file until liveEntries rewrites it', async () => {
  const dir = tempDir()
  try {
    // Small enough to rewrite: under fileBytesMax / logRewriteFraction (64 bytes here).
    const idle = run(1, 2, 1, 4)
    let log = await open(dir, { fileBytesMax: 1024 })
    await log.write([{ type: 'entries', groupId: 1, entries: idle }], true)
    let next = 1
    for (; next <= 30; next++) await log.write(busyRound(2, next), true)
    await log.unlinked()
    assert.ok(log.activeFile >= 5, `rotated: active ${log.activeFile}`)
    assert.ok(log.stats.filesDeleted >= 3, `deleted ${log.stats.filesDeleted}`)
    assert.equal(log.stats.rewrites, 0)
    assert.ok(existsSync(join(dir, '000001.rlog')), 'the idle group pins file 1 without liveEntries')
    assert.equal(rlogFiles(dir).length, log.stats.files)
    assert.ok(log.stats.files <= 4, `files ${rlogFiles(dir).join(',')}`)
    await log.close()

    // With liveEntries the idle group is rewritten at a rotation and file 1 goes.
    log = await open(dir, { fileBytesMax: 1024, liveEntries: (groupId) => (groupId === 1 ? idle : []) })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, idle))
    for (const end = next + 12; next <= end; next++) await log.write(busyRound(2, next), true)
    await log.unlinked()
    assert.ok(log.stats.rewrites >= 1, `rewrites ${log.stats.rewrites}`)
    assert.ok(!existsSync(join(dir, '000001.rlog')), `file 1 deleted: ${rlogFiles(dir).join(',')}`)
    await log.close()
    log = await open(dir, { fileBytesMax: 1024 })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, idle))
    assert.deepEqual(plain(log.takeRecovered(2)), expected({ term: 1, vote: 1, commit: next - 1 }, { index: next - 2, term: 1 }, [entry(next - 1, 1, 300)]))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('preallocation: rotations take files written full of zeros, sealed files are cut to their records, a preallocated last file reopens in place', async () => {
  const dir = tempDir()
  try {
    // Junk under the prepared name (an earlier process died while preparing) is never taken as is.
    writeFileSync(join(dir, 'next-0.rlog-prepared'), Buffer.alloc(100, 7))
    const warnings: unknown[] = []
    const logger: LogFilesOptions['logger'] = (level, message) => void (level === 'warn' && warnings.push(message))
    let log = await open(dir, { fileBytesMax: 4096, logger })
    await log.write(busyRound(3, 1), true)
    await log.prepared()
    assert.deepEqual(preparedFiles(dir), [], 'nothing is prepared while the active file is under half full (and leftovers are gone)')
    await log.write([{ type: 'entries', groupId: 4, entries: run(1, 5, 1, 400) }, { type: 'compact', groupId: 4, index: 5, term: 1 }], true)
    await log.prepared()
    assert.equal(preparedFiles(dir).length, 1)
    assert.equal(statSync(join(dir, preparedFiles(dir)[0]!)).size, 4096, 'the next file is prepared to fileBytesMax')
    assert.ok(readFileSync(join(dir, preparedFiles(dir)[0]!)).every((byte) => byte === 0), 'full of zeros')
    let next = 2
    for (; next <= 40; next++) {
      await log.write(busyRound(3, next), true)
      await log.prepared()
    }
    assert.ok(log.stats.preallocated >= 2, `rotations took prepared files: ${log.stats.preallocated}`)
    const active = join(dir, `${String(log.activeFile).padStart(6, '0')}.rlog`)
    assert.equal(statSync(active).size, 4096, 'the active file keeps its preallocated length')
    await log.close()
    assert.deepEqual(preparedFiles(dir), [], 'close removes the prepared file')
    // The active file's zeros are its end.
    log = await open(dir, { fileBytesMax: 4096, logger })
    assert.deepEqual(warnings, [], 'no torn-tail warning for preallocated space')
    assert.deepEqual(plain(log.takeRecovered(3)), expected({ term: 1, vote: 1, commit: next - 1 }, { index: next - 2, term: 1 }, [entry(next - 1, 1, 300)]))
    assert.equal(statSync(active).size, 4096, 'reopening keeps the length')
    await log.write(busyRound(3, next), true)
    // Group 9's entries keep this file alive (no liveEntries: never rewritten), so every later open reads it.
    await log.write([{ type: 'entries', groupId: 9, entries: run(1, 2, 1) }], true)
    assert.equal(statSync(active).size, 4096, 'appends after reopening land in place')
    await log.close()
    // A smaller fileBytesMax seals the preallocated file long before its zeros are used: it is cut
    // to its records (a zero tail in a sealed file would be KV_ERR_CORRUPTION at the next open).
    log = await open(dir, { fileBytesMax: 1024, logger })
    assert.deepEqual(plain(log.takeRecovered(3)), expected({ term: 1, vote: 1, commit: next }, { index: next - 1, term: 1 }, [entry(next, 1, 300)]))
    const sealedFirst = log.activeFile
    for (next++; log.activeFile === sealedFirst; next++) await log.write(busyRound(3, next), true)
    await log.close()
    log = await open(dir, { fileBytesMax: 1024, logger })
    assert.deepEqual(plain(log.takeRecovered(3)), expected({ term: 1, vote: 1, commit: next - 1 }, { index: next - 2, term: 1 }, [entry(next - 1, 1, 300)]))
    assert.deepEqual(plain(log.takeRecovered(9)), expected(HS0, { index: 0, term: 0 }, run(1, 2, 1)))
    await log.close()
    assert.deepEqual(warnings, [])

    // Off: files grow as written and nothing is prepared.
    const plainDir = tempDir()
    try {
      log = await open(plainDir, { fileBytesMax: 4096, preallocate: false })
      for (let i = 1; i <= 20; i++) await log.write(busyRound(3, i), true)
      await log.prepared()
      assert.equal(log.stats.preallocated, 0)
      assert.deepEqual(preparedFiles(plainDir), [])
      await log.close()
    } finally {
      rmSync(plainDir, { recursive: true, force: true })
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('preallocation is skipped after large synced writes (preallocateSyncBytesMax) and resumes when they are small again', async () => {
  const dir = tempDir()
  try {
    const fileBytesMax = 1024 * 1024
    let log = await open(dir, { fileBytesMax })
    const large = preallocateSyncBytesMax + 1000
    let index = 1
    for (let i = 0; i < 3; i++, index++) await log.write([{ type: 'entries', groupId: 1, entries: [entry(index, 1, large)] }], true)
    await log.prepared()
    assert.deepEqual(preparedFiles(dir), [], 'past half full, but the syncs were large: nothing prepared')
    assert.equal(log.stats.preallocationsSkipped, 1)
    // Rotation into a plain file; small synced writes there bring preallocation back.
    for (; log.activeFile === 1; index++) await log.write([{ type: 'entries', groupId: 1, entries: [entry(index, 1, large)] }], true)
    assert.equal(log.stats.preallocated, 0)
    while (log.stats.bytes < fileBytesMax * 1.6) await log.write([{ type: 'entries', groupId: 1, entries: [entry(index++, 1, 8 * 1024)] }], true)
    await log.prepared()
    assert.equal(preparedFiles(dir).length, 1, 'small syncs: the next file is prepared')
    assert.equal(log.stats.preallocationsSkipped, 1)
    await log.close()
    log = await open(dir, { fileBytesMax })
    assert.equal(log.takeRecovered(1)?.entries.length, index - 1)
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('preallocation when every write rotates: each asks for the next file at once, rotations keep taking prepared files, the log reopens whole', async () => {
  const dir = tempDir()
  try {
    // Each write is over half of fileBytesMax: it rotates and asks for the next file at once.
    let log = await open(dir, { fileBytesMax: 1024 })
    let index = 1
    for (let round = 0; round < 60; round++, index++) {
      const records: LogRecord[] = [{ type: 'entries', groupId: 5, entries: [entry(index, 1, 700)] }, { type: 'compact', groupId: 5, index: index - 1, term: 1 }, { type: 'hardState', groupId: 5, hardState: { term: 1, vote: 1, commit: index } }]
      // Half the rounds pipelined: the next write is queued before this one's rotation ran.
      if (round % 2 === 0) void log.write(records, true)
      else await log.write(records, true)
    }
    await log.write([], true)
    assert.ok(log.stats.preallocated >= 10, `rotations took prepared files: ${log.stats.preallocated}`)
    await log.close()
    log = await open(dir, { fileBytesMax: 1024 })
    assert.deepEqual(plain(log.takeRecovered(5)), expected({ term: 1, vote: 1, commit: index - 1 }, { index: index - 2, term: 1 }, [entry(index - 1, 1, 700)]))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a destroyed group whose records sit in a kept file is not resurrected (checkpoint resets the groups)', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { fileBytesMax: 1024 })
    // File 1: group 5 (to be destroyed) and group 6 (idle, pins file 1).
    await log.write([{ type: 'entries', groupId: 5, entries: run(1, 3, 1, 100) }, { type: 'entries', groupId: 6, entries: run(1, 2, 1) }], true)
    let index = 1
    while (log.activeFile === 1) await log.write(busyRound(7, index++), true)
    // The destroy lands in file 2, which dies once group 7 moves on.
    await log.write([{ type: 'destroy', groupId: 5 }], true)
    while (log.activeFile <= 3) await log.write(busyRound(7, index++), true)
    await log.unlinked()
    assert.ok(existsSync(join(dir, '000001.rlog')), 'file 1 kept (group 6)')
    assert.ok(!existsSync(join(dir, '000002.rlog')), `file 2 (with the destroy) deleted: ${rlogFiles(dir).join(',')}`)
    await log.close()
    log = await open(dir, { fileBytesMax: 1024 })
    assert.deepEqual(log.recoveredGroupIds().sort(), [6, 7])
    assert.deepEqual(plain(log.takeRecovered(6)), expected(HS0, { index: 0, term: 0 }, run(1, 2, 1)))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a torn last record, cut at every byte, recovers the state before it; later writes append after the cut', async () => {
  const dir = tempDir()
  const copy = tempDir()
  try {
    const log = await open(dir)
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 3, 1) }, { type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 2 } }], true)
    const before = statSync(join(dir, '000001.rlog')).size
    await log.write([{ type: 'entries', groupId: 1, entries: run(4, 5, 1) }, { type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 5 } }], true)
    await log.close()
    const after = statSync(join(dir, '000001.rlog')).size
    for (let cut = before; cut < after; cut++) {
      rmSync(copy, { recursive: true, force: true })
      cpSync(dir, copy, { recursive: true })
      truncateSync(join(copy, '000001.rlog'), cut)
      // A tail of zeros only (the first bytes of a length) reads as preallocated space: the records end there, nothing is cut.
      const zeroTail = readFileSync(join(copy, '000001.rlog')).subarray(before).every((byte) => byte === 0)
      const warnings: unknown[] = []
      let reopened = await open(copy, { logger: (level, message, details) => void (level === 'warn' && warnings.push({ message, details })) })
      assert.deepEqual(plain(reopened.takeRecovered(1)), expected({ term: 1, vote: 1, commit: 2 }, { index: 0, term: 0 }, run(1, 3, 1)), `cut at ${cut}`)
      assert.equal(statSync(join(copy, '000001.rlog')).size, zeroTail ? cut : before, `file truncated to the last good record (cut ${cut})`)
      assert.equal(warnings.length, cut > before && !zeroTail ? 1 : 0, `a warning for a torn tail (cut ${cut})`)
      await reopened.write([{ type: 'entries', groupId: 1, entries: run(4, 4, 2) }], true)
      await reopened.close()
      reopened = await open(copy)
      assert.deepEqual(plain(reopened.takeRecovered(1)), expected({ term: 1, vote: 1, commit: 2 }, { index: 0, term: 0 }, [...run(1, 3, 1), entry(4, 2)]), `after the cut at ${cut}`)
      await reopened.close()
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
    rmSync(copy, { recursive: true, force: true })
  }
})

test('a flipped byte in a sealed file is KV_ERR_CORRUPTION naming the file and offset; one mid-way through the last file cuts it there', async () => {
  const dir = tempDir()
  try {
    const log = await open(dir, { fileBytesMax: 1024 })
    let index = 1
    while (log.activeFile < 3) {
      await log.write([{ type: 'entries', groupId: 1, entries: run(index, index + 1, 1, 100) }], true)
      index += 2
    }
    await log.write([{ type: 'entries', groupId: 1, entries: run(index, index + 1, 1, 100) }], true)
    await log.write([{ type: 'entries', groupId: 1, entries: run(index + 2, index + 3, 1, 100) }], true)
    await log.close()
    const sealed = join(dir, '000001.rlog')
    const original = readFileSync(sealed)
    const damaged = Buffer.from(original)
    damaged[300]! ^= 0x10
    writeFileSync(sealed, damaged)
    await assert.rejects(open(dir, { fileBytesMax: 1024 }), (error: unknown) => {
      assert.ok(error instanceof KvError && error.code === ErrorCode.CORRUPTION, String(error))
      assert.match(error.message, /000001\.rlog.*offset \d+/)
      return true
    })
    writeFileSync(sealed, original)
    // The last file: a power cut may keep a later unsynced write and tear an earlier one, so any
    // damage there is a torn tail, cut with everything after it (none of it was ever synced).
    const last = join(dir, '000003.rlog')
    const lastOriginal = readFileSync(last)
    const lastDamaged = Buffer.from(lastOriginal)
    lastDamaged[60]! ^= 0x10
    writeFileSync(last, lastDamaged)
    const warnings: string[] = []
    const cut = await open(dir, { fileBytesMax: 1024, logger: (_level, message) => warnings.push(message) })
    assert.ok(cut.takeRecovered(1)!.entries.length < index + 3, 'the records from the damaged one on are gone')
    assert.match(warnings.join('\n'), /torn write/)
    await cut.close()
    assert.ok(readFileSync(last).length < lastOriginal.length, 'the file was cut at the damage')
    writeFileSync(last, lastOriginal)
    const reopened = await open(dir, { fileBytesMax: 1024 })
    assert.equal(reopened.takeRecovered(1)!.entries.length, index + 3)
    await reopened.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a missing file holding live entries is KV_ERR_CORRUPTION', async () => {
  const dir = tempDir()
  try {
    const log = await open(dir, { fileBytesMax: 1024 })
    let index = 1
    while (log.activeFile < 3) {
      await log.write([{ type: 'entries', groupId: 1, entries: run(index, index, 1, 300) }], true)
      index++
    }
    await log.close()
    rmSync(join(dir, '000002.rlog'))
    await assert.rejects(open(dir, { fileBytesMax: 1024 }), (error: unknown) => error instanceof KvError && error.code === ErrorCode.CORRUPTION && /missing entry/.test(error.message))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('pipelined writes of varied sizes (encode buffers reused between writes) round-trip in order', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { fileBytesMax: 1024 * 1024 })
    const pending: Promise<void>[] = []
    const all: Entry[] = []
    let index = 1
    for (let i = 0; i < 200; i++) {
      const count = 1 + (i % 5)
      const entries = Array.from({ length: count }, (_, k) => entry(index + k, 1 + (i >> 4), 4096 + ((i * 37 + k * 11) % 900) * 16, i + k))
      all.push(...entries)
      index += count
      pending.push(log.write([{ type: 'entries', groupId: 1, entries }], i % 3 === 0))
      // Some writes are issued while the one before is on the thread pool (its buffer must not be reused yet).
      for (let tick = i % 4; tick > 0; tick--) await Promise.resolve()
      if (i % 7 === 6) await Promise.all(pending.splice(0))
    }
    await Promise.all(pending)
    assert.ok(log.activeFile > 1, 'rotated')
    await log.close()
    log = await open(dir, { fileBytesMax: 1024 * 1024 })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, all))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('codec: a record with large entry data left out (gaps) and written as parts is byte for byte the copied record', () => {
  const items: EncodableItem[] = [
    { type: 'hardState', groupId: 7, hardState: { term: 2, vote: 1, commit: 3 } },
    { type: 'entries', groupId: 7, entries: [entry(1, 2, 10), entry(2, 2, dataByReferenceBytesMin - 1), entry(3, 2, dataByReferenceBytesMin), entry(4, 2, 0), entry(5, 2, 300_000)] },
    { type: 'entries', groupId: 8, entries: [entry(9, 1, dataByReferenceBytesMin + 5)] },
    { type: 'compact', groupId: 7, index: 1, term: 2 },
  ]
  for (const at of [0, 13]) {
    const size = recordBytes(items)
    const copied = Buffer.alloc(at + size)
    assert.equal(encodeRecord(copied, items, at), at + size)
    const referenced = referencedBytes(items)
    assert.equal(referenced, dataByReferenceBytesMin + 300_000 + dataByReferenceBytesMin + 5)
    const buffer = Buffer.alloc(at + size - referenced)
    const gaps: DataGap[] = []
    assert.equal(encodeRecord(buffer, items, at, gaps), buffer.length)
    assert.equal(gaps.length, 3)
    assert.ok(Buffer.concat(writeParts(buffer, gaps)).equals(copied), `record at ${at}`)
  }
})

test('large entries are written from their own buffers (not copied) and round-trip across rotation, held writes and reopen', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { fileBytesMax: 1024 * 1024 })
    const pending: Promise<void>[] = []
    const all = new Map<number, Entry[]>([[1, []], [2, []]])
    const next = new Map<number, number>([[1, 1], [2, 1]])
    let byReference = 0
    for (let i = 0; i < 120; i++) {
      const groupId = i % 9 === 8 ? 2 : 1
      const index = next.get(groupId)!
      const sizes = [16, dataByReferenceBytesMin + i * 97, 3000, i % 2 === 0 ? 200_000 : dataByReferenceBytesMin - 1].slice(0, 1 + (i % 4))
      const entries = sizes.map((bytes, k) => entry(index + k, 1, bytes, i + k))
      for (const e of entries) if (e.data.byteLength >= dataByReferenceBytesMin) byReference += e.data.byteLength
      all.get(groupId)!.push(...entries)
      next.set(groupId, index + entries.length)
      // Unsynced writes are held (as parts) for the next synced one.
      pending.push(log.write([{ type: 'entries', groupId, entries }], i % 3 === 0))
      for (let tick = i % 4; tick > 0; tick--) await Promise.resolve()
      if (i % 5 === 4) await Promise.all(pending.splice(0))
    }
    await Promise.all(pending)
    await log.sync()
    assert.ok(log.activeFile > 3, 'rotated')
    assert.ok(log.stats.bytesByReference >= byReference, 'large data went by reference (rewrites of idle groups add more)')
    await log.close()
    log = await open(dir, { fileBytesMax: 1024 * 1024 })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, all.get(1)!))
    assert.deepEqual(plain(log.takeRecovered(2)), expected(HS0, { index: 0, term: 0 }, all.get(2)!))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('direct writes: large synced writes go past the page cache, aligned and zero-padded; the bytes match buffered writes; the log reopens whole, mid-file and after rotations', async () => {
  const dirs = { direct: tempDir(), buffered: tempDir(), copy: tempDir() }
  try {
    const fileBytesMax = 1024 * 1024
    const logs = { direct: await open(dirs.direct, { fileBytesMax, preallocate: false, directWrites: true }), buffered: await open(dirs.buffered, { fileBytesMax, preallocate: false, directWrites: false }) }
    const all: Entry[] = []
    let index = 1
    let large = 0
    // Small synced writes, large synced ones of odd sizes (some after held unsynced ones), by reference or copied.
    const sizes = [100, 300_001, 17, directWriteBytesMin, 5000, 700_123, 1, 2_000_000, 33, 400_000, 400_000, 12, 1_000_003]
    for (const [i, bytes] of sizes.entries()) {
      const entries = [entry(index, 1, bytes, i)]
      index++
      all.push(...entries)
      const sync = i % 5 !== 4
      if (sync && bytes >= directWriteBytesMin) large++
      for (const log of Object.values(logs)) await log.write([{ type: 'entries', groupId: 1, entries }], sync)
      if (i === 5) {
        // Mid-file, right after a direct write: the file ends in zero padding up to an aligned length, as after a crash.
        const path = join(dirs.direct, fileName(logs.direct.activeFile))
        assert.equal(statSync(path).size % DIRECT_ALIGN, 0, 'a direct write ends aligned')
        cpSync(dirs.direct, dirs.copy, { recursive: true })
      }
    }
    await logs.direct.sync()
    await logs.buffered.sync()
    assert.equal(logs.direct.stats.directWrites, large, 'every large synced write went direct')
    assert.equal(logs.buffered.stats.directWrites, 0)
    assert.ok(logs.direct.activeFile > 2, 'rotated')
    await logs.direct.close()
    await logs.buffered.close()
    // Sealed files end at their last record (padding cut), byte for byte as written buffered; the active file may keep zeros.
    assert.deepEqual(rlogFiles(dirs.direct), rlogFiles(dirs.buffered))
    for (const name of rlogFiles(dirs.direct)) {
      const direct = readFileSync(join(dirs.direct, name))
      const buffered = readFileSync(join(dirs.buffered, name))
      const active = name === rlogFiles(dirs.direct).at(-1)
      if (!active) assert.equal(direct.length, buffered.length, `${name}: sealed, cut to its records`)
      assert.ok(direct.subarray(0, buffered.length).equals(buffered), `${name}: same bytes`)
      assert.ok(direct.subarray(buffered.length).every((byte) => byte === 0), `${name}: zeros after the records`)
    }
    for (const dir of [dirs.direct, dirs.buffered]) {
      const log = await open(dir, { fileBytesMax })
      assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, all))
      await log.close()
    }
    // The copy taken mid-file replays up to the write before it, its zero padding read as the end.
    const warnings: unknown[] = []
    // (Reopened with room to spare: the next writes stay in the replayed file instead of rotating.)
    const copy = await open(dirs.copy, { fileBytesMax: 8 * fileBytesMax, logger: (level, message) => void (level === 'warn' && warnings.push(message)) })
    assert.deepEqual(plain(copy.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, all.slice(0, 6)))
    assert.deepEqual(warnings, [], 'padding is not a torn tail')
    // Writing on after reopening: the tail is unknown until a write crosses an aligned offset, then direct writes resume.
    await copy.write([{ type: 'entries', groupId: 1, entries: [entry(7, 1, 500_000, 7)] }], true)
    await copy.write([{ type: 'entries', groupId: 1, entries: [entry(8, 1, 500_000, 8)] }], true)
    assert.equal(copy.stats.directWrites, 1)
    await copy.close()
    const reopened = await open(dirs.copy, { fileBytesMax })
    assert.deepEqual(plain(reopened.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, [...all.slice(0, 6), entry(7, 1, 500_000, 7), entry(8, 1, 500_000, 8)]))
    await reopened.close()
  } finally {
    for (const dir of Object.values(dirs)) rmSync(dir, { recursive: true, force: true })
  }
})

test('direct: tailAfter keeps the bytes from the aligned offset below the end, across parts and the previous tail', () => {
  const bytes = Buffer.from(Array.from({ length: 3 * DIRECT_ALIGN }, (_, i) => (i * 7) & 0xff))
  for (const [start, cuts] of [[0, [10, 5000, 9000]], [4000, [4090, 4100]], [100, [101]], [DIRECT_ALIGN, [2 * DIRECT_ALIGN]]] as const) {
    const tail = bytes.subarray(start - (start % DIRECT_ALIGN), start)
    const parts: Buffer[] = []
    let at: number = start
    for (const cut of cuts) {
      parts.push(bytes.subarray(at, cut))
      at = cut
    }
    const end = at
    assert.deepEqual(tailAfter(tail, parts, end), bytes.subarray(end - (end % DIRECT_ALIGN), end), `start ${start}, cuts ${cuts}`)
    if (end - (end % DIRECT_ALIGN) < start) assert.equal(tailAfter(undefined, parts, end), undefined, 'needs the unknown tail')
  }
})

for (const locateBytesMin of [undefined, 1000]) test(`locate${locateBytesMin === undefined ? '' : ' (locateBytesMin 1000)'}: entry data is at its place in its file; durable settles with the sync that covers its write`, async () => {
  const dir = tempDir()
  try {
    const log = await open(dir, { fileBytesMax: 512 * 1024, ...(locateBytesMin === undefined ? {} : { locateBytesMin }) })
    const located: Array<{ data: Uint8Array; at: DataLocation }> = []
    let index = 1
    for (let i = 0; i < 24; i++) {
      const entries = [entry(index, 1, 100, i), entry(index + 1, 1, dataByReferenceBytesMin + i * 1001, i), entry(index + 2, 1, dataByReferenceBytesMin - 1, i)]
      index += 3
      const synced = i % 3 !== 1
      const written = log.write([{ type: 'entries', groupId: 1, entries }], synced)
      assert.equal(log.locate(entries[0]!.data), undefined, 'short data is not located')
      if (locateBytesMin === undefined) assert.equal(log.locate(entries[2]!.data), undefined, 'one byte under dataByReferenceBytesMin')
      else located.push({ data: entries[2]!.data, at: log.locate(entries[2]!.data)! })
      const at = log.locate(entries[1]!.data)!
      assert.ok(at !== undefined && at.durable !== undefined, 'a write not yet synced')
      located.push({ data: entries[1]!.data, at })
      await written
      if (synced) assert.equal(await settled(at.durable), true, `write ${i}: durable with its synced write`)
      else {
        assert.equal(await settled(at.durable), false, `write ${i}: an unsynced write is not durable`)
        assert.equal(log.locate(entries[1]!.data)!.durable === undefined, false)
        await log.sync()
        assert.equal(await settled(at.durable), true, `write ${i}: durable after the next sync`)
        assert.equal(log.locate(entries[1]!.data)!.durable, undefined, 'already durable')
      }
    }
    assert.ok(log.activeFile >= 3, 'rotated')
    await log.close()
    for (const { data, at } of located) {
      const bytes = readFileSync(join(dir, fileName(at.file))).subarray(at.offset, at.offset + data.byteLength)
      assert.ok(bytes.equals(data), `data at ${fileName(at.file)}:${at.offset}`)
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('locate: a crash rejects durable promises no sync covered (power-loss model)', async () => {
  const dir = tempDir()
  try {
    const log = await open(dir, { powerLoss: true })
    const synced = entry(1, 1, dataByReferenceBytesMin)
    const unsynced = entry(2, 1, dataByReferenceBytesMin)
    await log.write([{ type: 'entries', groupId: 1, entries: [synced] }], true)
    await log.write([{ type: 'entries', groupId: 1, entries: [unsynced] }], false)
    assert.equal(log.locate(synced.data)!.durable, undefined)
    const durable = log.locate(unsynced.data)!.durable!
    log.crash()
    await assert.rejects(durable, (error: unknown) => error instanceof KvError && error.code === ErrorCode.UNAVAILABLE)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('keepFile: a dead file it keeps moves whole into keptDir, one it refuses is deleted, one it cannot answer stays; a new log numbers after kept files', async () => {
  const dir = tempDir()
  const keptDir = join(dir, 'kept')
  const logDir = join(dir, 'log')
  try {
    const keep = new Set([2, 4])
    const asked: number[] = []
    const keepFile = async (file: number) => {
      asked.push(file)
      if (file === 3) throw new Error('no answer')
      return keep.has(file)
    }
    let log = await open(logDir, { fileBytesMax: 64 * 1024, keepFile, keptDir })
    const located = new Map<number, { data: Uint8Array; at: DataLocation }>()
    for (let index = 1; index <= 8; index++) {
      const large = entry(index, 1, dataByReferenceBytesMin, index)
      // Each write rotates (the file is full); the entry before it dies with the compaction.
      await log.write([{ type: 'entries', groupId: 2, entries: [large] }, { type: 'compact', groupId: 2, index: index - 1, term: 1 }], true)
      located.set(index, { data: large.data, at: log.locate(large.data)! })
    }
    await log.sync()
    await log.unlinked()
    assert.deepEqual(readdirSync(keptDir).sort(), ['000002.rlog', '000004.rlog'])
    assert.ok(rlogFiles(logDir).includes('000003.rlog'), 'left in place when keepFile throws')
    assert.ok(!rlogFiles(logDir).includes('000001.rlog') && !rlogFiles(logDir).includes('000005.rlog'), `deleted: ${rlogFiles(logDir).join(',')}`)
    assert.equal(log.stats.filesKept, 2)
    for (const { data, at } of located.values()) {
      if (!keep.has(at.file)) continue
      const bytes = readFileSync(join(keptDir, fileName(at.file))).subarray(at.offset, at.offset + data.byteLength)
      assert.ok(bytes.equals(data), `kept data at ${fileName(at.file)}:${at.offset}`)
    }
    assert.ok(asked.includes(1) && asked.includes(5), `asked about ${asked.join(',')}`)
    await log.close()
    // File 3 is dead and still there: the next open asks again.
    keep.add(3)
    asked.length = 0
    log = await open(logDir, { fileBytesMax: 64 * 1024, keepFile: async (file) => keep.has(file), keptDir })
    await log.unlinked()
    assert.ok(readdirSync(keptDir).includes('000003.rlog'))
    await log.close()
    // A log started from nothing never reuses a kept file's number.
    rmSync(logDir, { recursive: true })
    log = await open(logDir, { keepFile, keptDir })
    assert.equal(log.activeFile, 5)
    await log.close()
    await assert.rejects(open(logDir, { keepFile }), (error: unknown) => error instanceof KvError && error.code === ErrorCode.INVALID)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('without the power-loss model: unsynced writes are held for the next synced one, which writes both in one O_DSYNC write; past logHeldBytesMax they go at once and the next sync fdatasyncs', async () => {
  const dir = tempDir()
  try {
    // Not preallocated, so the file's size shows what reached it.
    let log = await open(dir, { preallocate: false })
    const file = join(dir, rlogFiles(dir)[0]!)
    await log.write([{ type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 0 } }], true)
    assert.deepEqual([log.stats.syncs, log.stats.fdatasyncs], [1, 0])
    const synced = statSync(file).size
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 3, 1) }], false)
    assert.equal(statSync(file).size, synced, 'an unsynced write is held, not written')
    await log.write([{ type: 'entries', groupId: 1, entries: run(4, 5, 1) }, { type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 5 } }], true)
    assert.ok(statSync(file).size > synced, 'the synced write wrote the held record too')
    assert.deepEqual([log.stats.syncs, log.stats.fdatasyncs], [2, 0], 'a file without unsynced bytes in it is synced by its O_DSYNC write alone')
    // Past logHeldBytesMax (1 MiB) an unsynced write reaches the file at once, so the next sync must fdatasync.
    const written = statSync(file).size
    await log.write([{ type: 'entries', groupId: 1, entries: run(6, 22, 1, 64 * 1024) }], false)
    assert.ok(statSync(file).size > written + 1024 * 1024, 'held bytes past logHeldBytesMax are written')
    await log.write([{ type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 22 } }], true)
    assert.deepEqual([log.stats.syncs, log.stats.fdatasyncs], [3, 1])
    await log.write([{ type: 'entries', groupId: 1, entries: run(23, 23, 1) }], false)
    await log.close()
    log = await open(dir, { preallocate: false })
    const entries = [...run(1, 5, 1), ...run(6, 22, 1, 64 * 1024), ...run(23, 23, 1)]
    assert.deepEqual(plain(log.takeRecovered(1)), expected({ term: 1, vote: 1, commit: 22 }, { index: 0, term: 0 }, entries), 'close wrote the held record')
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('power-loss model: crash() loses unsynced writes and keeps synced ones', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { powerLoss: true })
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 2, 1) }], true)
    await log.write([{ type: 'entries', groupId: 1, entries: run(3, 4, 1) }, { type: 'hardState', groupId: 1, hardState: { term: 1, vote: 0, commit: 4 } }], false)
    log.crash()
    log = await open(dir, { powerLoss: true })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, run(1, 2, 1)))
    await log.write([{ type: 'entries', groupId: 1, entries: run(3, 4, 2) }], false)
    await log.sync()
    await log.write([{ type: 'entries', groupId: 1, entries: run(5, 5, 2) }], true)
    log.crash()
    log = await open(dir, { powerLoss: true })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, [...run(1, 2, 1), ...run(3, 5, 2)]))
    // A clean close writes back what is held.
    await log.write([{ type: 'entries', groupId: 1, entries: run(6, 6, 2) }], false)
    await log.close()
    log = await open(dir, { powerLoss: true })
    assert.equal(log.takeRecovered(1)!.entries.length, 6)
    await log.close()
    // crash() is for the power-loss model only.
    log = await open(dir, { powerLoss: false })
    assert.throws(() => log.crash(), (error: unknown) => error instanceof KvError && error.code === ErrorCode.INVALID)
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('power-loss model: GC deletes a file only once the write that killed its entries is durable', async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { powerLoss: true, fileBytesMax: 1024 })
    await log.write([{ type: 'entries', groupId: 1, entries: run(1, 2, 1, 600) }], true)
    await log.write([{ type: 'entries', groupId: 2, entries: run(1, 1, 1) }], true)
    assert.equal(log.activeFile, 2)
    // The compaction that kills file 1 is issued while a synced write is in flight: that sync does not cover it.
    const synced = log.write([{ type: 'hardState', groupId: 2, hardState: { term: 1, vote: 1, commit: 1 } }], true)
    const unsynced = log.write([{ type: 'compact', groupId: 1, index: 2, term: 1 }], false)
    await Promise.all([synced, unsynced])
    await log.unlinked()
    assert.ok(existsSync(join(dir, '000001.rlog')), 'file 1 kept: its entries die only with an unsynced write')
    log.crash()
    log = await open(dir, { powerLoss: true, fileBytesMax: 1024 })
    assert.deepEqual(plain(log.takeRecovered(1)), expected(HS0, { index: 0, term: 0 }, run(1, 2, 1, 600)))
    await log.write([{ type: 'compact', groupId: 1, index: 2, term: 1 }], true)
    await log.unlinked()
    assert.ok(!existsSync(join(dir, '000001.rlog')), 'file 1 deleted once the compaction is durable')
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

for (const preallocate of [false, true]) {
test(`power-loss model: a rotation lost to a crash leaves its ${preallocate ? 'preallocated (all zeros)' : 'empty'} file; the file before it is kept until the new checkpoint is durable`, async () => {
  const dir = tempDir()
  try {
    let log = await open(dir, { powerLoss: true, fileBytesMax: 1024, preallocate })
    // File 1 ends up without live entries but holds group 1's hard and truncated state.
    await log.write([
      { type: 'entries', groupId: 1, entries: run(1, 2, 1, 600) },
      { type: 'hardState', groupId: 1, hardState: { term: 1, vote: 1, commit: 2 } },
      { type: 'compact', groupId: 1, index: 2, term: 1 },
    ], true)
    await log.prepared()
    await log.write([{ type: 'hardState', groupId: 1, hardState: { term: 2, vote: 1, commit: 2 } }], false) // rotates to file 2, held
    assert.equal(log.activeFile, 2)
    log.crash()
    const file2 = readFileSync(join(dir, '000002.rlog'))
    assert.equal(file2.length, preallocate ? 1024 : 0)
    assert.ok(file2.every((byte) => byte === 0))
    for (let reopen = 0; reopen < 2; reopen++) {
      log = await open(dir, { powerLoss: true, fileBytesMax: 1024, preallocate })
      await log.unlinked()
      assert.deepEqual(plain(log.takeRecovered(1)), expected({ term: 1, vote: 1, commit: 2 }, { index: 2, term: 1 }, []), `reopen ${reopen}`)
      log.crash()
    }
    log = await open(dir, { powerLoss: true, fileBytesMax: 1024 })
    await log.write([], true) // the header and checkpoint of file 2, synced: file 1 may go
    await log.unlinked()
    assert.ok(!existsSync(join(dir, '000001.rlog')), rlogFiles(dir).join(','))
    await log.close()
    log = await open(dir, { powerLoss: true, fileBytesMax: 1024 })
    assert.deepEqual(plain(log.takeRecovered(1)), expected({ term: 1, vote: 1, commit: 2 }, { index: 2, term: 1 }, []))
    await log.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
}

// --- Seeded random walk against a model of the durable state -----------------------------------


interface ModelGroup {
  hardState: HardState
  truncated: { index: number; term: number }
  entries: Entry[]
}
type Model = Map<number, ModelGroup>

function cloneModel(model: Model): Model {
  return new Map([...model].map(([id, g]) => [id, { hardState: g.hardState, truncated: g.truncated, entries: g.entries.slice() }]))
}

function applyModel(model: Model, record: LogRecord): void {
  if (record.type === 'destroy') return void model.delete(record.groupId)
  let group = model.get(record.groupId)
  if (group === undefined) model.set(record.groupId, (group = { hardState: HS0, truncated: { index: 0, term: 0 }, entries: [] }))
  if (record.type === 'hardState') group.hardState = record.hardState
  else if (record.type === 'entries') {
    const kept = record.entries.filter((e) => e.index > group.truncated.index)
    if (kept.length > 0) group.entries = [...group.entries.filter((e) => e.index < kept[0]!.index), ...kept]
  } else if (record.type === 'compact') {
    group.entries = group.entries.filter((e) => e.index > record.index)
    group.truncated = { index: record.index, term: record.term }
  } else {
    group.entries = []
    group.truncated = { index: record.index, term: record.term }
  }
}

function lastIndex(group: ModelGroup | undefined): number {
  return group === undefined ? 0 : group.entries.length > 0 ? group.entries[group.entries.length - 1]!.index : group.truncated.index
}

function randomRecord(random: () => number, model: Model, term: number): LogRecord {
  const groupId = 1 + Math.floor(random() * 4)
  const group = model.get(groupId)
  const last = lastIndex(group)
  const first = (group?.truncated.index ?? 0) + 1
  const roll = random()
  if (roll < 0.5) {
    // Extend, or replace a suffix (never below the first live index).
    const from = random() < 0.75 ? last + 1 : first + Math.floor(random() * (last - first + 2))
    const count = 1 + Math.floor(random() * 4)
    const entries: Entry[] = []
    // Now and then an entry large enough to be written by reference (dataByReferenceBytesMin), as a file chunk is.
    for (let i = 0; i < count; i++) entries.push(entry(from + i, term, random() < 0.03 ? dataByReferenceBytesMin + Math.floor(random() * 1000) : Math.floor(random() * 200), Math.floor(random() * 256)))
    return { type: 'entries', groupId, entries }
  }
  if (roll < 0.7) return { type: 'hardState', groupId, hardState: { term, vote: Math.floor(random() * 4), commit: last } }
  if (roll < 0.87) return { type: 'compact', groupId, index: (group?.truncated.index ?? 0) + Math.floor(random() * (last - first + 4)), term }
  if (roll < 0.95) return { type: 'snapshot', groupId, index: last + Math.floor(random() * 5), term }
  return { type: 'destroy', groupId }
}

function modelView(model: Model): unknown {
  return [...model.keys()].sort((a, b) => a - b).map((id) => [id, plain(model.get(id))])
}

test('random writes, syncs, crashes and reopens keep exactly the durable state (seeded)', async () => {
  const seeds = process.env.DISTKV_SEED !== undefined ? [Number(process.env.DISTKV_SEED)] : [1, 2, 3, Math.floor(Math.random() * 2 ** 31)]
  for (const seed of seeds) {
    const dir = tempDir()
    const replay = `DISTKV_SEED=${seed} node scripts/test.js test/raftstore/log-files`
    try {
      await randomWalk(seed, dir)
    } catch (error) {
      throw new Error(`seed ${seed} failed (replay: ${replay}): ${error instanceof Error ? error.stack : String(error)}`)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }
})

async function randomWalk(seed: number, dir: string): Promise<void> {
  const random = seededRandom(seed)
  let issued: Model = new Map()
  /** states[k]: the model after the k-th write since the last point everything was durable (states[0]). */
  let states: Model[] = [new Map()]
  let durable = 0
  // Odd seeds run without the power-loss model (real writes, reused encode buffers): clean closes only.
  const powerLoss = seed % 2 === 0
  const options = { dir, powerLoss, fileBytesMax: 1024 + Math.floor(random() * 2048), liveEntries: (groupId: number) => issued.get(groupId)?.entries ?? [] }
  let log = await RaftLogFiles.open(options)
  let term = 1
  for (let step = 0; step < 600; step++) {
    const roll = random()
    if (roll < 0.75) {
      // One to three writes in flight at once (a pipelined driver), then wait for all.
      const pending: Promise<void>[] = []
      let lastSynced = -1
      for (let w = random() < 0.7 ? 1 : 2 + Math.floor(random() * 2); w > 0; w--) {
        const records: LogRecord[] = []
        const next = cloneModel(issued)
        for (let n = 1 + Math.floor(random() * 3); n > 0; n--) {
          const record = randomRecord(random, next, term)
          records.push(record)
          applyModel(next, record)
        }
        const sync = random() < 0.3
        const fileBefore = log.activeFile
        pending.push(log.write(records, sync))
        // A rotation syncs the old file first: every earlier write is durable once this one ran.
        if (log.activeFile !== fileBefore) lastSynced = Math.max(lastSynced, states.length - 1)
        issued = next
        states.push(cloneModel(next))
        if (sync) lastSynced = states.length - 1
      }
      await Promise.all(pending)
      durable = Math.max(durable, lastSynced)
      if (random() < 0.1) term++
    } else if (roll < 0.82) {
      await log.sync()
      durable = states.length - 1
    } else {
      const crash = powerLoss && roll < 0.95
      if (crash) log.crash()
      else await log.close()
      // Deletions already on the thread pool finish (a kill would not stop them either); none start after crash().
      await log.unlinked()
      const expect = crash ? states[durable]! : issued
      log = await RaftLogFiles.open(options)
      const got = new Map<number, ModelGroup>()
      for (const id of log.recoveredGroupIds()) got.set(id, log.takeRecovered(id)!)
      assert.deepEqual(modelView(got), modelView(expect), `step ${step}: ${crash ? 'crash' : 'close'} then reopen`)
      issued = cloneModel(expect)
      states = [cloneModel(expect)]
      durable = 0
    }
  }
  await log.close()
}
