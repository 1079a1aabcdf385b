// The values blob-power-loss-child.ts writes and blob-power-loss.test.ts checks: each names its key,
// sequence number and length, and the rest is derived from them, so a read can be checked byte for
// byte without the child telling the parent the bytes.
import { createHash } from 'node:crypto'

/** blobWorkload sizes the child's workload: lengths straddle the threshold; files are small so they roll and GC runs. */
export const blobWorkload = {
  keys: 24,
  thresholdBytes: 4096,
  fileBytesMax: 256 * 1024,
  lengths: [100, 4095, 4096, 9000, 33_000, 70_000],
}

export function workloadKey(n: number): string {
  return `k${String(n).padStart(2, '0')}`
}

/** workloadValue is the value of write `seq` to `key`: a header `key seq length |` then SHA-256 blocks of it. */
export function workloadValue(key: string, seq: number, length: number): Buffer {
  const header = Buffer.from(`${key} ${seq} ${length} |`)
  const out = Buffer.alloc(length)
  header.copy(out, 0)
  for (let at = header.length, block = 0; at < length; at += 32, block++) createHash('sha256').update(`${key}/${seq}/${block}`).digest().copy(out, at)
  return out
}

/** parseWorkloadValue reads a value's header; undefined when it has none. */
export function parseWorkloadValue(value: Buffer): { key: string; seq: number; length: number } | undefined {
  const match = /^(k\d\d) (\d+) (\d+) \|/.exec(value.toString('latin1', 0, 40))
  return match === null ? undefined : { key: match[1]!, seq: Number(match[2]), length: Number(match[3]) }
}
