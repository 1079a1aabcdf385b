// Log pointers: values that already lie in a Raft log file, pointed at instead of copied into a
// blob file. Reads through every path (get, getMany, iterators, sizes) out of a real file with
// other bytes around the values; the index keys and logFileReferenced; the write waiting for the
// log bytes' sync; a log file renamed into another directory; a missing file and corrupted bytes
// refused as KV_ERR_CORRUPTION; the blob path unchanged when no location is given; and blob GC
// treating a log pointer as a plain value even when its file number names a blob file too.
import assert from 'node:assert/strict'
import fs from 'node:fs'
import { syncBuiltinESMExports } from 'node:module'
import { closeSync, existsSync, openSync, readSync, renameSync, truncateSync, writeFileSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { BlobEngine, decodeLogPointer, decodePointer, logIndexKey, type BlobEngineOptions, type LogValueLocation } from '../../src/engine/blob-engine.js'
import { LogValueFiles } from '../../src/engine/log-values.js'
import { crc32 } from '../../src/crc32.js'
import { raw, rocks, withDir } from './blob-fixtures.js'

const INDEX_PREFIX = Buffer.from([0xfe, 0x4c])
/** Data keys start with 'd/'; the index keys (0xfe...) are not separable. */
const separable = (key: Buffer) => key.length > 2 && key[0] === 0x64 && key[1] === 0x2f
const rlogName = (file: number) => `${String(file).padStart(6, '0')}.rlog`
/** paths: the log directory first, then the directory a log file may be renamed into. */
const candidates = (dir: string) => (file: number) => [join(dir, 'raft-log', rlogName(file)), join(dir, 'archive', rlogName(file))]
const logValuesOption = (dir: string): BlobEngineOptions['logValues'] => ({ paths: candidates(dir), indexPrefix: INDEX_PREFIX, keptDir: join(dir, 'archive') })

const blobEngine = (dir: string, options: Partial<BlobEngineOptions> = {}) =>
  new BlobEngine(rocks(dir), { dir: join(dir, 'blobs'), thresholdBytes: 1024, separable, gcIntervalMs: 0, logValues: logValuesOption(dir), ...options })



/** inDir runs `body` in a fresh directory holding raft-log/ and the kept directory. */
const inDir = (body: (dir: string) => Promise<void>) => withDir('distkv-log-values-', body, ['raft-log', 'archive'])
const value = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff))
const key = (name: string) => Buffer.from(`d/${name}`)

/** writeLogFile writes log file `file` into raft-log/: `values` at the returned offsets, other bytes before, between and after them. */
function writeLogFile(dir: string, file: number, values: Buffer[], at?: number[]): number[] {
  const parts: Buffer[] = []
  const offsets: number[] = []
  let size = 0
  values.forEach((v, i) => {
    const gap = at === undefined ? 100 + i * 13 : at[i]! - size
    assert.ok(gap >= 0)
    parts.push(Buffer.alloc(gap, 0xaa))
    offsets.push(size + gap)
    parts.push(v)
    size += gap + v.length
  })
  parts.push(Buffer.alloc(77, 0x55))
  writeFileSync(join(dir, 'raft-log', rlogName(file)), Buffer.concat(parts))
  return offsets
}

/** locator answers prepare()'s locate for the given buffers (by identity), like the log layer does for an entry's values. */
function locator(where: Map<Buffer, LogValueLocation>): { locate: (v: Buffer) => LogValueLocation | undefined; asked: Buffer[] } {
  const asked: Buffer[] = []
  return { asked, locate: (v) => (asked.push(v), where.get(v)) }
}

function deferred(): { promise: Promise<void>; resolve: () => void; reject: (error: Error) => void } {
  let resolve!: () => void
  let reject!: (error: Error) => void
  const promise = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
  return { promise, resolve, reject }
}

const turns = async (n = 5) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve))
}

test('values located in a log file read back through get, getMany, iterators and sizes; the engine holds tag-0x02 pointers and index keys', async () => {
  await inDir(async (dir) => {
    const a = value(5000, 1)
    const b = value(70_000, 2)
    const [offA, offB] = writeLogFile(dir, 7, [a, b])
    const engine = blobEngine(dir)
    await engine.open()
    const { locate } = locator(new Map([[a, { file: 7, offset: offA!, durable: undefined }], [b, { file: 7, offset: offB!, durable: undefined }]]))
    const prepared = engine.prepare([{ type: 'put', key: key('a'), value: a }, { type: 'put', key: key('b'), value: b }, { type: 'put', key: key('c'), value: Buffer.from('small') }], locate)
    assert.equal(prepared.durable, undefined, 'nothing to wait for: the log bytes are durable already')
    assert.equal(prepared.ops.length, 5, 'two pointers, two index puts, the small value')
    await engine.batch(prepared.ops, { sync: true })
    assert.deepEqual(await engine.get(key('a')), a)
    assert.deepEqual(await engine.get(key('b')), b)
    assert.deepEqual(await engine.getMany([key('c'), key('b'), key('none'), key('a')]), [Buffer.from('small'), b, undefined, a])
    assert.deepEqual(await engine.sizes([key('a'), key('b'), key('c'), key('none')]), [5000, 70_000, 5, undefined])
    const rows = await engine.iterator({ gte: Buffer.from('d/'), lt: Buffer.from('d0') }).nextBatch(10)
    assert.deepEqual(rows, [[key('a'), a], [key('b'), b], [key('c'), Buffer.from('small')]])
    const reversed = await engine.iterator({ gte: Buffer.from('d/'), lt: Buffer.from('d0'), reverse: true, limit: 2 }).nextBatch(10)
    assert.deepEqual(reversed, [[key('c'), Buffer.from('small')], [key('b'), b]])
    assert.equal(engine.stats.pointedIntoLog, 2)
    assert.equal(engine.stats.pointedIntoLogBytes, 75_000)
    assert.equal(engine.stats.separated, 0, 'nothing was copied into a blob file')
    assert.equal(engine.log.fileSize(engine.log.activeFile), 0)
    assert.equal(await engine.logFileReferenced(7), true)
    assert.equal(await engine.logFileReferenced(6), false)
    assert.equal(await engine.logFileReferenced(8), false)
    await engine.close()
    const stored = (await raw(dir, key('a')))!
    assert.equal(stored.length, 27)
    assert.equal(stored[8], 0x02)
    assert.equal(decodePointer(stored), undefined, 'never a blob ref')
    assert.deepEqual(decodeLogPointer(stored), { file: 7, offset: offA, length: 5000, crc: crc32(a) })
    assert.deepEqual(await raw(dir, logIndexKey(INDEX_PREFIX, 7, offA!)), key('a'))
    assert.deepEqual(await raw(dir, logIndexKey(INDEX_PREFIX, 7, offB!)), key('b'))
    assert.deepEqual(logIndexKey(INDEX_PREFIX, 7, offA!), Buffer.concat([INDEX_PREFIX, Buffer.from([0, 0, 0, 7]), Buffer.from([0, 0, 0, 0, 0, offA!])]))
    // Reopened: the pointers still resolve.
    const again = blobEngine(dir)
    await again.open()
    assert.deepEqual(await again.get(key('b')), b)
    assert.equal(await again.logFileReferenced(7), true)
    await again.close()
    // The same instance reopened reads log files again.
    await again.open()
    assert.deepEqual(await again.get(key('a')), a)
    await again.close()
  })
})

test('a write carrying log pointers waits for their durable promise (and for a blob sync of the same prepare)', async () => {
  await inDir(async (dir) => {
    const a = value(5000, 3)
    const [offA] = writeLogFile(dir, 9, [a])
    const blobbed = value(3000, 4)
    const engine = blobEngine(dir)
    await engine.open()
    const synced = deferred()
    const { locate } = locator(new Map([[a, { file: 9, offset: offA!, durable: synced.promise }]]))
    const prepared = engine.prepare([{ type: 'put', key: key('a'), value: a }, { type: 'put', key: key('blobbed'), value: blobbed }], locate)
    assert.equal(engine.stats.separated, 1, 'the value without a location went to a blob file')
    let written = false
    const writing = engine.batch(prepared.ops, { sync: true }).then(() => (written = true))
    let durable = false
    void prepared.durable!.then(() => (durable = true))
    await turns()
    assert.equal(written, false, 'the write waits for the log bytes')
    assert.equal(durable, false, 'durable combines the blob sync with the log sync')
    assert.equal(await engine.get(key('a')), undefined)
    assert.equal(await engine.get(key('blobbed')), undefined, 'the whole batch waits')
    assert.equal(await engine.logFileReferenced(9), true, 'a prepared pointer not written yet counts as a reference')
    synced.resolve()
    await writing
    assert.equal(durable, true)
    assert.deepEqual(await engine.get(key('a')), a)
    assert.deepEqual(await engine.get(key('blobbed')), blobbed)
    assert.equal(await engine.logFileReferenced(9), true)
    // A failed log sync fails the write; nothing of it is visible.
    const failed = deferred()
    const b = value(4000, 5)
    const [offB] = writeLogFile(dir, 10, [b])
    const second = engine.prepare([{ type: 'put', key: key('b'), value: b }], locator(new Map([[b, { file: 10, offset: offB!, durable: failed.promise }]])).locate)
    const failing = engine.batch(second.ops, { sync: true })
    failed.reject(new Error('log sync failed'))
    await assert.rejects(failing, /log sync failed/)
    assert.equal(await engine.get(key('b')), undefined)
    await engine.close()
  })
})

test('a log file renamed into the second directory before the first read and between reads still reads; missing files and bad bytes are KV_ERR_CORRUPTION', async () => {
  await inDir(async (dir) => {
    const a = value(5000, 6)
    const b = value(6000, 7)
    const [offA] = writeLogFile(dir, 11, [a])
    const [offB] = writeLogFile(dir, 12, [b])
    const engine = blobEngine(dir)
    await engine.open()
    const { locate } = locator(new Map([[a, { file: 11, offset: offA!, durable: undefined }], [b, { file: 12, offset: offB!, durable: undefined }]]))
    const prepared = engine.prepare([{ type: 'put', key: key('a'), value: a }, { type: 'put', key: key('b'), value: b }], locate)
    await engine.batch(prepared.ops, { sync: true })
    const [inLog, inArchive] = candidates(dir)(11)
    // Renamed before any read: found in the second directory.
    renameSync(inLog!, inArchive!)
    assert.deepEqual(await engine.get(key('a')), a)
    // Read once (its descriptor cached), then renamed: still read.
    assert.deepEqual(await engine.get(key('b')), b)
    assert.equal(engine.logValues!.openFds, 2, 'both descriptors cached')
    renameSync(candidates(dir)(12)[0]!, candidates(dir)(12)[1]!)
    assert.deepEqual(await engine.get(key('b')), b)
    // A flipped byte in a cached file: the checksum refuses it.
    const fd = openSync(inArchive!, 'r+')
    const byte = Buffer.alloc(1)
    readSync(fd, byte, 0, 1, offA! + 100)
    writeSync(fd, Buffer.from([byte[0]! ^ 0xff]), 0, 1, offA! + 100)
    closeSync(fd)
    await assert.rejects(engine.get(key('a')), (error: { code?: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'KV_ERR_CORRUPTION')
      assert.deepEqual([error.details?.file, error.details?.offset], [11, offA])
      return true
    })
    await assert.rejects(engine.getMany([key('b'), key('a')]), { code: 'KV_ERR_CORRUPTION' })
    const iterator = engine.iterator({ gte: Buffer.from('d/'), lt: Buffer.from('d0') })
    await assert.rejects(iterator.nextBatch(10), { code: 'KV_ERR_CORRUPTION' })
    await iterator.close()
    // Cut short: a short read is refused too.
    truncateSync(candidates(dir)(12)[1]!, offB! + 10)
    await assert.rejects(engine.get(key('b')), { code: 'KV_ERR_CORRUPTION' })
    // A pointer into a file that is in no candidate directory.
    const c = value(2000, 8)
    const lost = engine.prepare([{ type: 'put', key: key('c'), value: c }], () => ({ file: 13, offset: 40, durable: undefined }))
    await engine.batch(lost.ops, { sync: true })
    await assert.rejects(engine.get(key('c')), (error: { code?: string; message: string; details?: Record<string, unknown> }) => {
      assert.equal(error.code, 'KV_ERR_CORRUPTION')
      assert.deepEqual([error.details?.file, error.details?.offset], [13, 40])
      assert.match(error.message, /log file 13 is missing/)
      return true
    })
    await engine.close()
  })
})

test('LogValueFiles: a rename racing the lookup is found on the second pass; concurrent reads over more files than descriptors all read right and the table stays bounded', async () => {
  await inDir(async (dir) => {
    const values = Array.from({ length: 6 }, (_, i) => value(300_000, 10 + i))
    const offsets = values.map((v, i) => writeLogFile(dir, 20 + i, [v])[0]!)
    const ref = (i: number) => ({ file: 20 + i, offset: offsets[i]!, length: values[i]!.length, crc: crc32(values[i]!) })
    // File 20 sits in archive/; during the first pass it moves back into raft-log/ just after
    // raft-log/ was tried: both candidates miss once.
    const [inLog, inArchive] = candidates(dir)(20)
    renameSync(inLog!, inArchive!)
    let calls = 0
    const racing = new LogValueFiles((file) => {
      if (file !== 20 || calls++ > 0) return candidates(dir)(file)
      const paths = [inLog!]
      Object.defineProperty(paths, 1, { enumerable: true, get: () => (renameSync(inArchive!, inLog!), inArchive!) })
      return paths
    })
    assert.deepEqual(await racing.read(ref(0)), values[0])
    assert.equal(calls, 2, 'found on the second pass')
    await racing.close()
    await assert.rejects(racing.read(ref(0)), { code: 'KV_ERR_CLOSED' })
    racing.open()
    assert.deepEqual(await racing.read(ref(0)), values[0])
    await racing.close()
    // Two descriptors for six files, many reads at once: each read gets its bytes.
    const files = new LogValueFiles(candidates(dir), { fdsMax: 2 })
    const reads = Array.from({ length: 60 }, (_, n) => n % 6)
    const got = await Promise.all(reads.map((i) => files.read(ref(i))))
    got.forEach((v, n) => assert.deepEqual(v, values[reads[n]!]))
    assert.ok(files.openFds <= 2, `${files.openFds} cached`)
    // Sequential reads cycling through more files than the table holds.
    for (let round = 0; round < 3; round++) for (let i = 0; i < 6; i++) assert.deepEqual(await files.read(ref(i)), values[i])
    assert.equal(files.openFds, 2)
    files.forget(25)
    assert.equal(files.openFds, 1)
    await files.close()
    assert.equal(files.openFds, 0)
  })
})

test('LogValueFiles: a descriptor evicted while a read uses it is closed only after that read', async () => {
  await inDir(async (dir) => {
    const values = Array.from({ length: 3 }, (_, i) => value(50_000, 60 + i))
    const offsets = values.map((v, i) => writeLogFile(dir, 40 + i, [v])[0]!)
    const ref = (i: number) => ({ file: 40 + i, offset: offsets[i]!, length: values[i]!.length, crc: crc32(values[i]!) })
    const files = new LogValueFiles(candidates(dir), { fdsMax: 1 })
    assert.deepEqual(await files.read(ref(0)), values[0])
    // Hold the next pread (of file 40's cached descriptor) until the other reads evicted it.
    const realRead = fs.read
    const gate = deferred()
    let held = false
    fs.read = ((...args: Parameters<typeof fs.read>) => {
      if (held) return (realRead as (...a: unknown[]) => void)(...args)
      held = true
      void gate.promise.then(() => (realRead as (...a: unknown[]) => void)(...args))
    }) as typeof fs.read
    syncBuiltinESMExports()
    try {
      const slow = files.read(ref(0))
      await turns()
      assert.ok(held, 'the read of file 40 is in flight')
      assert.deepEqual(await files.read(ref(1)), values[1])
      assert.deepEqual(await files.read(ref(2)), values[2])
      assert.equal(files.openFds, 1)
      gate.resolve()
      assert.deepEqual(await slow, values[0], 'its descriptor was still open')
    } finally {
      fs.read = realRead
      syncBuiltinESMExports()
    }
    assert.deepEqual(await files.read(ref(0)), values[0], 'opened again')
    await files.close()
  })
})

test('without a location, below the threshold, or without logValues: values go to blob files or stay inline as before', async () => {
  await inDir(async (dir) => {
    const big = value(5000, 20)
    const [offBig] = writeLogFile(dir, 30, [big])
    const everywhere = () => ({ file: 30, offset: offBig!, durable: undefined })
    const engine = blobEngine(dir)
    await engine.open()
    const small = value(1023, 21)
    const unlocated = locator(new Map())
    const first = engine.prepare([{ type: 'put', key: key('unlocated'), value: big }], unlocated.locate)
    assert.equal(unlocated.asked.length, 1)
    const asked: Buffer[] = []
    const second = engine.prepare([{ type: 'put', key: key('small'), value: small }], (v) => (asked.push(v), everywhere()))
    assert.equal(asked.length, 0, 'locate is not asked about a value below the threshold')
    assert.equal(second.durable, undefined)
    assert.deepEqual(second.ops, [{ type: 'put', key: key('small'), value: small }])
    // A small value that looks like a log pointer is escaped, never mistaken for one.
    const lookalike = Buffer.concat([Buffer.from([0xb1, 0x0b, 0x5e, 0x9a, 0x7e, 0xa5, 0x00, 0xe1, 0x02]), Buffer.alloc(18)])
    await engine.batch([...first.ops, ...second.ops, { type: 'put', key: key('lookalike'), value: lookalike }], { sync: true })
    assert.equal(engine.stats.separated, 1)
    assert.equal(engine.stats.pointedIntoLog, 0)
    assert.deepEqual(await engine.get(key('unlocated')), big)
    assert.deepEqual(await engine.get(key('small')), small)
    assert.deepEqual(await engine.get(key('lookalike')), lookalike)
    assert.equal(await engine.logFileReferenced(30), false)
    await engine.close()
    assert.ok(decodePointer((await raw(dir, key('unlocated')))!) !== undefined, 'a blob pointer')
    assert.deepEqual(await raw(dir, key('small')), small)
    assert.equal(decodeLogPointer((await raw(dir, key('lookalike')))!), undefined)
    // No logValues: locate is never asked, values go to blob files, and log questions are refused.
    const plain = blobEngine(dir, { logValues: undefined })
    await plain.open()
    const asked2: Buffer[] = []
    const third = plain.prepare([{ type: 'put', key: key('plain'), value: big }], (v) => (asked2.push(v), everywhere()))
    assert.equal(asked2.length, 0)
    await plain.batch(third.ops, { sync: true })
    assert.equal(plain.stats.separated, 1)
    assert.deepEqual(await plain.get(key('plain')), big)
    await assert.rejects(plain.logFileReferenced(30), { code: 'KV_ERR_INVALID' })
    await plain.close()
    assert.ok(decodePointer((await raw(dir, key('plain')))!) !== undefined)
  })
})

test('blob GC treats a log pointer as a value even when it names the blob file and offset of a dead record', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir, { fileBytesMax: 64 * 1024 })
    await engine.open()
    for (const [i, name] of ['a', 'b', 'c', 'z'].entries()) await engine.put(key(name), value(20_000, 40 + i), { sync: true }) // z seals the first file
    const first = engine.log.files()[0]!
    assert.ok(engine.log.sealedFiles().includes(first))
    const records = []
    for await (const record of engine.log.walk(first)) records.push(record)
    const recordA = records.find((r) => r.key.equals(key('a')))!
    // Log file `first` (same number as the blob file) holds a's new value at the offset of a's blob record.
    const newer = value(20_000, 50)
    const pending = value(20_000, 51)
    const [offNewer, offPending] = writeLogFile(dir, first, [newer, pending], [recordA.offset, recordA.offset + 30_000])
    assert.equal(offNewer, recordA.offset)
    const overwrite = engine.prepare([{ type: 'put', key: key('a'), value: newer }], () => ({ file: first, offset: recordA.offset, durable: undefined }))
    await engine.batch(overwrite.ops, { sync: true })
    // A log pointer into "file first" prepared and not written: blob GC must not wait for it.
    engine.prepare([{ type: 'put', key: key('p'), value: pending }], () => ({ file: first, offset: offPending!, durable: undefined }))
    await engine.batch([{ type: 'del', key: key('b') }, { type: 'del', key: key('c') }], { sync: true })
    await engine.gc()
    assert.equal(engine.stats.filesRetired, 1, 'no live record: the blob file is retired')
    assert.equal(engine.stats.recordsRewritten, 0, 'a\'s log pointer is not taken for its old blob record')
    await engine.log.unlinked()
    assert.ok(!existsSync(engine.log.path(first)))
    assert.deepEqual(await engine.get(key('a')), newer)
    assert.deepEqual(await engine.get(key('z')), value(20_000, 43))
    await engine.close()
  })
})
