// The shard machine with log values: a large value decoded from an entry the Raft log located is
// written as a pointer into the log file, and the apply output waits until the log says those
// bytes are durable (ApplyOutput.beforeWrite); values of entries it did not locate go the blob way.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { BlobEngine, decodeLogPointer } from '../../src/engine/blob-engine.js'
import { MemoryEngine } from '../../src/engine/memory.js'
import type { Entry } from '../../src/raft/types.js'
import { fileName, type DataLocation } from '../../src/raftstore/log-files.js'
import { isShardDataKey, ShardKeys } from '../../src/store/keys.js'
import { ShardMachine, encodeShardCommand } from '../../src/store/machine.js'
import { ALL_SLOTS, requestId } from './replica.js'
import { settled } from '../promises.js'

test('a located value is written as a pointer into its log file, and its write waits for the log sync; an unlocated one goes to a blob file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-machine-lv-'))
  try {
    const value = Buffer.alloc(5000, 7)
    value.write('located', 0)
    const other = Buffer.alloc(5000, 9)
    const entries: Entry[] = [
      { term: 1, index: 11, type: 'normal', data: encodeShardCommand({ t: 'write', id: requestId(1), ops: [[0, Buffer.from('a'), value]] }) },
      { term: 1, index: 12, type: 'normal', data: encodeShardCommand({ t: 'write', id: requestId(2), ops: [[0, Buffer.from('b'), other]] }) },
    ]
    // The "log file": the first entry's data at offset 100, as RaftLogFiles would have written it.
    const logData = Buffer.from(entries[0]!.data)
    const file = Buffer.alloc(100 + logData.length + 50)
    logData.copy(file, 100)
    writeFileSync(join(dir, fileName(3)), file)
    let synced!: () => void
    const durable = new Promise<void>((resolve) => (synced = resolve))
    const locateData = (data: Uint8Array): DataLocation | undefined => (data === entries[0]!.data ? { file: 3, offset: 100, durable } : undefined)
    const inner = new MemoryEngine()
    const engine = new BlobEngine(inner, { dir: join(dir, 'blobs'), thresholdBytes: 4096, separable: isShardDataKey, gcIntervalMs: 0, logValues: { paths: (n) => [join(dir, fileName(n))], indexPrefix: Buffer.from([0x00, 0x6c, 0x76]), keptDir: join(dir, 'kept') } })
    await engine.open()
    const machine = new ShardMachine(engine, 2, undefined, locateData)
    await machine.load()
    const claimed = await machine.apply([{ term: 1, index: 10, type: 'normal', data: encodeShardCommand({ t: 'claim', slots: ALL_SLOTS }) }])
    await engine.batch(claimed.ops)
    const output = await machine.apply(entries)
    assert.ok(output.beforeWrite !== undefined)
    assert.equal(await settled(output.beforeWrite), false, 'the write waits for the log sync')
    synced()
    await output.beforeWrite // and the blob sync of the unlocated value
    await engine.batch(output.ops)
    const keys = new ShardKeys(2)
    const stored = await inner.get(keys.dataKey(Buffer.from('a')))
    const pointer = decodeLogPointer(stored!)
    assert.ok(pointer !== undefined, 'a log pointer')
    assert.equal(pointer.file, 3)
    assert.equal(file.subarray(pointer.offset, pointer.offset + pointer.length).toString('latin1', 0, 7), 'located')
    assert.ok((await engine.get(keys.dataKey(Buffer.from('a'))))!.equals(value))
    assert.ok((await engine.get(keys.dataKey(Buffer.from('b'))))!.equals(other))
    assert.equal(engine.stats.pointedIntoLog, 1)
    assert.equal(engine.stats.separated, 1, 'the unlocated value went to a blob file')
    await engine.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a value whose log bytes are synced already gets no beforeWrite: its apply is not held back behind the next log sync', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-machine-lv-'))
  try {
    const value = Buffer.alloc(5000, 3)
    const entry: Entry = { term: 1, index: 11, type: 'normal', data: encodeShardCommand({ t: 'write', id: requestId(1), ops: [[0, Buffer.from('a'), value]] }) }
    writeFileSync(join(dir, fileName(4)), Buffer.from(entry.data))
    const engine = new BlobEngine(new MemoryEngine(), { dir: join(dir, 'blobs'), thresholdBytes: 4096, separable: isShardDataKey, gcIntervalMs: 0, logValues: { paths: (n) => [join(dir, fileName(n))], indexPrefix: Buffer.from([0x00, 0x6c, 0x76]), keptDir: join(dir, 'kept') } })
    await engine.open()
    const machine = new ShardMachine(engine, 2, undefined, (data) => (data === entry.data ? { file: 4, offset: 0, durable: undefined } : undefined))
    await machine.load()
    await engine.batch((await machine.apply([{ term: 1, index: 10, type: 'normal', data: encodeShardCommand({ t: 'claim', slots: ALL_SLOTS }) }])).ops)
    const output = await machine.apply([entry])
    assert.equal(output.beforeWrite, undefined)
    await engine.batch(output.ops)
    assert.equal(engine.stats.pointedIntoLog, 1)
    assert.ok((await engine.get(new ShardKeys(2).dataKey(Buffer.from('a'))))!.equals(value))
    await engine.close()
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
})
