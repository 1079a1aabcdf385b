// GC of kept Raft log files (BlobEngine, logValues.keptDir): real log files in a kept directory,
// log pointers written into them, then gc(). A file nothing points into loses its index keys and
// is unlinked; a mostly dead one has its live values moved to blob files (compare and set against
// a racing write); a mostly live one only loses its stale index keys. A reader that began before
// the retirement keeps the file until it ends; a file with a prepared, unwritten pointer is left
// alone; a value GC cannot read leaves its file as it was; and all of it holds across a reopen.
import assert from 'node:assert/strict'
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { test } from 'node:test'
import { BlobEngine, decodeLogPointer, decodePointer, logIndexKey, type BlobEngineOptions } from '../../src/engine/blob-engine.js'
import { raw, rocks, withDir } from './blob-fixtures.js'

const INDEX_PREFIX = Buffer.from([0xfe, 0x4c])
/** Data keys start with 'd/'; the index keys (0xfe...) are not separable. */
const separable = (key: Buffer) => key.length > 2 && key[0] === 0x64 && key[1] === 0x2f
const rlogName = (file: number) => `${String(file).padStart(6, '0')}.rlog`
const keptDir = (dir: string) => join(dir, 'kept')
const keptPath = (dir: string, file: number) => join(keptDir(dir), rlogName(file))

const blobEngine = (dir: string, options: Partial<BlobEngineOptions> = {}) =>
  new BlobEngine(rocks(dir), {
    dir: join(dir, 'blobs'),
    thresholdBytes: 1024,
    separable,
    gcIntervalMs: 0,
    logGcFilesPerRun: 10,
    logValues: { paths: (file) => [join(dir, 'raft-log', rlogName(file)), keptPath(dir, file)], indexPrefix: INDEX_PREFIX, keptDir: keptDir(dir) },
    ...options,
  })



/** inDir runs `body` in a fresh directory holding raft-log/ and the kept directory. */
const inDir = (body: (dir: string) => Promise<void>) => withDir('distkv-log-values-gc-', body, ['raft-log', 'kept'])
const value = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (seed * 31 + i * 7) & 0xff))
const key = (name: string) => Buffer.from(`d/${name}`)

/** writeKeptFile writes kept log file `file`: `values` at the returned offsets, other bytes before, between and after them. */
function writeKeptFile(dir: string, file: number, values: Buffer[]): number[] {
  const parts: Buffer[] = []
  const offsets: number[] = []
  let size = 0
  values.forEach((v, i) => {
    const gap = 100 + i * 13
    parts.push(Buffer.alloc(gap, 0xaa))
    offsets.push(size + gap)
    parts.push(v)
    size += gap + v.length
  })
  parts.push(Buffer.alloc(77, 0x55))
  writeFileSync(keptPath(dir, file), Buffer.concat(parts))
  return offsets
}

/** pointInto writes log pointers for `names` to `values` at `offsets` of log file `file`. */
async function pointInto(engine: BlobEngine, file: number, names: string[], values: Buffer[], offsets: number[]): Promise<void> {
  const where = new Map(values.map((v, i) => [v, { file, offset: offsets[i]!, durable: undefined }]))
  const prepared = engine.prepare(names.map((name, i) => ({ type: 'put', key: key(name), value: values[i]! })), (v) => where.get(v))
  assert.equal(prepared.ops.length, 2 * names.length, 'every value got a log pointer and an index key')
  await engine.batch(prepared.ops, { sync: true })
}

/** keptValues writes kept file `file` holding `count` values of `length` bytes under keys `${prefix}0..` and points at them. */
async function keptValues(engine: BlobEngine, dir: string, file: number, prefix: string, count: number, length: number): Promise<{ names: string[]; values: Buffer[]; offsets: number[] }> {
  const names = Array.from({ length: count }, (_, i) => `${prefix}${i}`)
  const values = names.map((_, i) => value(length, file * 100 + i))
  const offsets = writeKeptFile(dir, file, values)
  await pointInto(engine, file, names, values, offsets)
  return { names, values, offsets }
}

/** indexOffsets lists the offsets of the index keys of log file `file` (read through the engine: index keys are not separable). */
async function indexOffsets(engine: BlobEngine, file: number): Promise<number[]> {
  const iterator = engine.iterator({ gte: logIndexKey(INDEX_PREFIX, file), lte: logIndexKey(INDEX_PREFIX, file, 2 ** 48 - 1) })
  try {
    const rows = await iterator.nextBatch(10_000)
    return rows.map(([k]) => k.readUIntBE(k.length - 6, 6))
  } finally {
    await iterator.close()
  }
}

test('a kept file whose pointers were all overwritten or deleted loses its index keys and is unlinked; other kept files are untouched', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const dead = await keptValues(engine, dir, 7, 'a', 4, 5000)
    const other = await keptValues(engine, dir, 8, 'b', 2, 5000)
    // Overwritten (inline, then by a pointer into another file) or deleted.
    const newer = value(6000, 99)
    await engine.batch([{ type: 'put', key: key('a0'), value: Buffer.from('small') }, { type: 'del', key: key('a1') }, { type: 'del', key: key('a3') }], { sync: true })
    const [offNewer] = writeKeptFile(dir, 9, [newer])
    await pointInto(engine, 9, ['a2'], [newer], [offNewer!])
    assert.equal(await engine.logFileReferenced(7), true, 'stale index keys still count before GC')
    const file8 = readFileSync(keptPath(dir, 8))
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(!existsSync(keptPath(dir, 7)), 'the dead kept file is unlinked')
    assert.deepEqual(await indexOffsets(engine, 7), [])
    assert.equal(await engine.logFileReferenced(7), false)
    assert.equal(engine.stats.logFilesRetired, 1)
    assert.equal(engine.stats.logRecordsRewritten, 0)
    assert.equal(engine.stats.logIndexKeysDropped, 4)
    // Files 8 and 9 are wholly live: untouched.
    assert.deepEqual(readFileSync(keptPath(dir, 8)), file8)
    assert.ok(existsSync(keptPath(dir, 9)))
    assert.deepEqual(await indexOffsets(engine, 8), other.offsets)
    assert.equal(await engine.logFileReferenced(8), true)
    assert.deepEqual(await engine.getMany([key('a0'), key('a1'), key('a2'), key('a3'), key('b0'), key('b1')]), [Buffer.from('small'), undefined, newer, undefined, ...other.values])
    assert.equal(engine.stats.logGcErrors, 0)
    assert.equal(dead.names.length, 4)
    await engine.close()
  })
})

test('without a kept directory GC has nothing to do', async () => {
  await inDir(async (dir) => {
    rmSync(keptDir(dir), { recursive: true })
    const engine = blobEngine(dir)
    await engine.open()
    await engine.put(key('x'), value(5000, 1), { sync: true })
    await engine.gc()
    assert.equal(engine.stats.logGcErrors, 0)
    assert.equal(engine.stats.logFilesRetired, 0)
    assert.deepEqual(await engine.get(key('x')), value(5000, 1))
    await engine.close()
  })
})

test('a mostly dead kept file: its few live values move to blob files and read back byte for byte; the file and its index keys go', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const { names, values } = await keptValues(engine, dir, 7, 'k', 10, 10_000)
    // All but k3 and k8 overwritten or deleted.
    await engine.batch(names.filter((_, i) => i !== 3 && i !== 8).map((name, i) => (i % 2 === 0 ? { type: 'del', key: key(name) } : { type: 'put', key: key(name), value: value(3000, 50 + i) })), { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(!existsSync(keptPath(dir, 7)))
    assert.equal(engine.stats.logFilesRetired, 1)
    assert.equal(engine.stats.logRecordsRewritten, 2)
    assert.equal(engine.stats.logBytesRewritten, 20_000)
    assert.deepEqual(await indexOffsets(engine, 7), [])
    assert.equal(await engine.logFileReferenced(7), false)
    assert.deepEqual(await engine.get(key('k3')), values[3])
    assert.deepEqual(await engine.getMany([key('k8'), key('k3')]), [values[8], values[3]])
    const rows = await engine.iterator({ gte: key('k3'), lte: key('k8') }).nextBatch(100)
    assert.deepEqual(rows.find(([k]) => k.equals(key('k3')))?.[1], values[3])
    assert.deepEqual(rows.find(([k]) => k.equals(key('k8')))?.[1], values[8])
    await engine.close()
    for (const name of ['k3', 'k8']) {
      const stored = (await raw(dir, key(name)))!
      assert.equal(decodeLogPointer(stored), undefined)
      assert.ok(decodePointer(stored) !== undefined, `${name} now holds a blob pointer`)
    }
  })
})

test('a mostly live kept file stays; only its stale index keys are dropped', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const { offsets, values } = await keptValues(engine, dir, 7, 'k', 4, 10_000)
    const before = readFileSync(keptPath(dir, 7))
    await engine.del(key('k1'), { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.deepEqual(readFileSync(keptPath(dir, 7)), before)
    assert.deepEqual(await indexOffsets(engine, 7), [offsets[0], offsets[2], offsets[3]])
    assert.equal(engine.stats.logIndexKeysDropped, 1)
    assert.equal(engine.stats.logRecordsRewritten, 0)
    assert.equal(engine.stats.logFilesRetired, 0)
    assert.equal(await engine.logFileReferenced(7), true)
    assert.deepEqual(await engine.getMany([key('k0'), key('k1'), key('k2'), key('k3')]), [values[0], undefined, values[2], values[3]])
    await engine.close()
    assert.ok(decodeLogPointer((await raw(dir, key('k0')))!) !== undefined, 'still a log pointer')
  })
})

test('a write racing the rewrite keeps its value (compare and set); the other live value moves', async () => {
  await inDir(async (dir) => {
    let engine: BlobEngine
    let raced = 0
    const racing = async () => {
      if (raced++ === 0) await engine.put(key('k3'), Buffer.from('newer'), { sync: true })
    }
    engine = blobEngine(dir, { beforeGcCommit: racing })
    await engine.open()
    const { values } = await keptValues(engine, dir, 7, 'k', 5, 10_000)
    await engine.batch([0, 1, 2].map((i) => ({ type: 'del', key: key(`k${i}`) })), { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.equal(raced, 1, 'the hook ran between the copies and the re-pointing')
    assert.equal(engine.stats.logFilesRetired, 1)
    assert.equal(engine.stats.logRecordsRewritten, 1, 'k3 was not re-pointed: a newer write holds it')
    assert.ok(!existsSync(keptPath(dir, 7)))
    assert.equal((await engine.get(key('k3')))?.toString(), 'newer')
    assert.deepEqual(await engine.get(key('k4')), values[4])
    await engine.close()
    assert.deepEqual(await raw(dir, key('k3')), Buffer.from('newer'))
  })
})

test('a kept file is unlinked only after an iterator and a get that began before its retirement end', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const { values } = await keptValues(engine, dir, 7, 'k', 3, 10_000)
    const reader = engine.iterator({ gte: key('k0'), lte: key('k2') })
    // A get holding its read token across GC: it looked its pointer up, and its read waits until GC is done.
    const realResolve = engine.resolve.bind(engine)
    let release!: () => void
    const held = new Promise<void>((resolve) => (release = resolve))
    let started!: () => void
    const resolving = new Promise<void>((resolve) => (started = resolve))
    engine.resolve = async (stored: Buffer) => {
      started()
      await held
      return realResolve(stored)
    }
    const slowGet = engine.get(key('k1'))
    await resolving
    engine.resolve = realResolve
    await engine.batch([0, 1, 2].map((i) => ({ type: 'del', key: key(`k${i}`) })), { sync: true })
    await engine.gc()
    assert.equal(engine.stats.logFilesRetired, 1)
    await new Promise((resolve) => setTimeout(resolve, 20))
    assert.ok(existsSync(keptPath(dir, 7)), 'older readers may still read it')
    release()
    assert.deepEqual(await slowGet, values[1], 'the get begun before reads its value')
    assert.ok(existsSync(keptPath(dir, 7)), 'the iterator is still open')
    const rows = await reader.nextBatch(10)
    assert.deepEqual(rows.map(([, v]) => v), values, 'the iterator reads its snapshot\'s values')
    await reader.close()
    await engine.log.unlinked()
    assert.ok(!existsSync(keptPath(dir, 7)), 'unlinked once both ended')
    assert.equal(engine.logValues!.openFds, 0, 'its descriptor was closed')
    assert.equal(await engine.get(key('k1')), undefined)
    await engine.close()
  })
})

test('a kept file with a prepared, unwritten log pointer into it is left alone until that pointer is written', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const big = value(60_000, 5)
    const small = [value(2000, 1), value(2000, 2)]
    const offsets = writeKeptFile(dir, 7, [...small, big])
    await pointInto(engine, 7, ['s0', 's1'], small, offsets.slice(0, 2))
    await engine.batch([{ type: 'del', key: key('s0') }, { type: 'del', key: key('s1') }], { sync: true })
    // To the index, every record of file 7 is dead; a prepared pointer into it is not written yet.
    const prepared = engine.prepare([{ type: 'put', key: key('big'), value: big }], () => ({ file: 7, offset: offsets[2]!, durable: undefined }))
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(existsSync(keptPath(dir, 7)), 'left alone')
    assert.deepEqual(await indexOffsets(engine, 7), offsets.slice(0, 2), 'not even its stale index keys are touched')
    assert.equal(engine.stats.logFilesRetired + engine.stats.logIndexKeysDropped, 0)
    await engine.batch(prepared.ops, { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(existsSync(keptPath(dir, 7)), 'mostly live now: kept')
    assert.deepEqual(await indexOffsets(engine, 7), [offsets[2]], 'the stale index keys went')
    assert.deepEqual(await engine.get(key('big')), big)
    await engine.close()
  })
})

test('a live value GC cannot read (corrupted bytes) leaves its kept file, index keys and pointers as they were', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const { offsets } = await keptValues(engine, dir, 7, 'k', 4, 10_000)
    await engine.batch([0, 1, 2].map((i) => ({ type: 'del', key: key(`k${i}`) })), { sync: true })
    const bytes = readFileSync(keptPath(dir, 7))
    bytes[offsets[3]! + 10] = bytes[offsets[3]! + 10]! ^ 0xff
    writeFileSync(keptPath(dir, 7), bytes)
    await engine.gc()
    await engine.log.unlinked()
    assert.equal(engine.stats.logGcErrors, 1)
    assert.equal(engine.stats.logFilesRetired, 0)
    assert.ok(existsSync(keptPath(dir, 7)))
    assert.deepEqual(await indexOffsets(engine, 7), offsets)
    await assert.rejects(engine.get(key('k3')), { code: 'KV_ERR_CORRUPTION' })
    await engine.close()
    assert.equal(decodeLogPointer((await raw(dir, key('k3')))!)?.offset, offsets[3])
  })
})

test('across a reopen: log values still read, and gc() still moves, drops and unlinks', async () => {
  await inDir(async (dir) => {
    const first = blobEngine(dir)
    await first.open()
    const seven = await keptValues(first, dir, 7, 'a', 4, 10_000)
    const eight = await keptValues(first, dir, 8, 'b', 2, 10_000)
    await first.close()
    const engine = blobEngine(dir)
    await engine.open()
    assert.deepEqual(await engine.getMany(seven.names.map(key)), seven.values)
    assert.deepEqual(await engine.getMany(eight.names.map(key)), eight.values)
    // File 7 mostly dead (a3 lives), file 8 wholly dead.
    await engine.batch([...['a0', 'a1', 'a2', 'b0', 'b1'].map((name) => ({ type: 'del' as const, key: key(name) }))], { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(!existsSync(keptPath(dir, 7)) && !existsSync(keptPath(dir, 8)))
    assert.equal(engine.stats.logFilesRetired, 2)
    assert.equal(engine.stats.logRecordsRewritten, 1)
    await engine.close()
    // The same instance reopened, and a fresh one: the moved value reads back.
    await engine.open()
    assert.deepEqual(await engine.get(key('a3')), seven.values[3])
    await engine.close()
    const third = blobEngine(dir)
    await third.open()
    assert.deepEqual(await third.get(key('a3')), seven.values[3])
    assert.equal(await third.logFileReferenced(7), false)
    assert.equal(await third.logFileReferenced(8), false)
    await third.close()
  })
})

test('one value written under two keys in one prepare: the second key gets a blob copy, so GC of the file cannot strand it', async () => {
  await inDir(async (dir) => {
    const engine = blobEngine(dir)
    await engine.open()
    const shared = value(10_000, 3)
    const [offset] = writeKeptFile(dir, 7, [shared])
    const prepared = engine.prepare([{ type: 'put', key: key('one'), value: shared }, { type: 'put', key: key('two'), value: shared }], () => ({ file: 7, offset: offset!, durable: undefined }))
    assert.equal(engine.stats.pointedIntoLog, 1)
    assert.equal(engine.stats.separated, 1, 'the second key\'s value went to a blob file')
    await engine.batch(prepared.ops, { sync: true })
    // The index key names 'one'; once 'one' is deleted nothing in the index points into file 7.
    await engine.del(key('one'), { sync: true })
    await engine.gc()
    await engine.log.unlinked()
    assert.ok(!existsSync(keptPath(dir, 7)))
    assert.deepEqual(await engine.get(key('two')), shared)
    await engine.close()
  })
})
