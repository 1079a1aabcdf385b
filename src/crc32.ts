/**
 * crc32: the IEEE CRC-32 (zlib's polynomial) of the checksums on disk: Raft log records
 * (src/raftstore) and blob records (src/engine). Three implementations of the same function, the
 * first that loads wins, so the on-disk format never depends on which one ran:
 *   1. `@node-rs/crc32` (prebuilt, carry-less multiply): ~9 GB/s on this machine's cores;
 *   2. node:zlib's `crc32` (Node >= 20.15): ~3.3-4 GB/s; Node's bundled zlib does not take its
 *      SIMD path for this call;
 *   3. a table loop, for older 20.x.
 * A file chunk is checksummed six times per MiB uploaded through a 3-replica cluster (the log
 * record and the blob record on each replica), which made (2) 8% of the server CPU of 4 MiB
 * uploads (perf, docs/files.md round 9); (1) takes a third of that time.
 */
import { createRequire } from 'node:module'
import zlib from 'node:zlib'

type Crc32 = (data: Uint8Array, initial?: number) => number

const CRC_TABLE = (() => {
  const table = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    table[n] = c >>> 0
  }
  return table
})()

/** crc32Table is the portable implementation (exported for the tests that compare all three). */
export function crc32Table(data: Uint8Array, initial = 0): number {
  let crc = (initial ^ 0xffffffff) >>> 0
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8)
  return (crc ^ 0xffffffff) >>> 0
}

function loadNative(): Crc32 | undefined {
  try {
    const loaded = createRequire(import.meta.url)('@node-rs/crc32') as { crc32?: Crc32 }
    return typeof loaded.crc32 === 'function' ? loaded.crc32 : undefined
  } catch {
    return undefined // no prebuilt binary for this platform: fall back
  }
}

/** crc32Native: `@node-rs/crc32` when its binary loaded, else undefined. */
export const crc32Native: Crc32 | undefined = loadNative()
/** crc32Zlib: node:zlib's crc32 when this Node has it, else undefined. */
export const crc32Zlib: Crc32 | undefined = (zlib as unknown as { crc32?: Crc32 }).crc32

/** crc32Implementation names the implementation in use (logs, benchmarks). */
export const crc32Implementation: 'native' | 'zlib' | 'table' = crc32Native !== undefined ? 'native' : crc32Zlib !== undefined ? 'zlib' : 'table'

const chosen: Crc32 = crc32Native ?? crc32Zlib ?? crc32Table

/** crc32 is the IEEE CRC-32 of `data`, continuing from `initial` (the CRC of the bytes before it). */
export function crc32(data: Uint8Array, initial = 0): number {
  return chosen(data, initial)
}
