/**
 * The file and index side of BlobEngine's GC of kept Raft log files (blob-engine.ts, module
 * comment, "GC"): which files the kept directory holds, how large one is, and the walk over the
 * index keys `indexPrefix | file u32 | offset u48 -> data key` of one file. What is live and what
 * is done about it is decided in BlobEngine, which owns the pointers and the write queue.
 */
import { readdir, stat } from 'node:fs/promises'
import { join } from 'node:path'
import type { Engine } from './engine.js'

/** logGcFilesPerRunDefault: kept log files one GC run examines. */
export const logGcFilesPerRunDefault = 2
/** KEPT_FILE_NAME: a Raft log file's name (src/raftstore/log-files.ts keeps the name when it moves a file). */
const KEPT_FILE_NAME = /^(\d{6,10})\.rlog$/
/** fileNumberMax: log pointers and index keys hold a u32 file number; a larger one names no file they can point into. */
const fileNumberMax = 0xffffffff
/** OFFSET_BYTES: the offset at the end of an index key (u48 BE). */
const OFFSET_BYTES = 6

/** keptFileName is the name of log file `file` in the kept directory. */
export function keptFileName(file: number): string {
  return `${String(file).padStart(6, '0')}.rlog`
}

/** keptFiles lists the numbers of the log files in `dir`, ascending; none when `dir` does not exist. */
export async function keptFiles(dir: string): Promise<number[]> {
  let names: string[]
  try {
    names = await readdir(dir)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return []
    throw error
  }
  return names
    .map((name) => KEPT_FILE_NAME.exec(name))
    .filter((m) => m !== null)
    .map((m) => Number(m[1]))
    .filter((file) => file <= fileNumberMax)
    .sort((a, b) => a - b)
}

/** keptFileSize is the size of kept file `file` in `dir`. */
export async function keptFileSize(dir: string, file: number): Promise<number> {
  return (await stat(join(dir, keptFileName(file)))).size
}

/** LogIndexEntry is one index key of a log file: the key itself, the offset it names and the data key it maps to. */
export interface LogIndexEntry {
  indexKey: Buffer
  offset: number
  key: Buffer
}

/**
 * walkLogIndex yields the index keys in [gte, lte] (one file's: logIndexKey(prefix, file) up to
 * offset 2^48-1) in batches of up to `batch`, read from one snapshot of the inner engine.
 */
export async function* walkLogIndex(inner: Engine, gte: Buffer, lte: Buffer, batch: number): AsyncGenerator<LogIndexEntry[]> {
  const iterator = inner.iterator({ gte, lte })
  try {
    for (;;) {
      const rows = await iterator.nextBatch(batch)
      if (rows.length === 0) return
      yield rows.map(([indexKey, key]) => ({ indexKey, offset: indexKey.readUIntBE(indexKey.length - OFFSET_BYTES, OFFSET_BYTES), key }))
    }
  } finally {
    await iterator.close()
  }
}
