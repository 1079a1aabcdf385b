/**
 * The local-mode benchmark workload shared by every target: fixed keys, 1 KiB values, and a
 * pool that keeps a fixed number of operations in flight.
 */
import { randomBytes } from 'node:crypto'

/** Workload is the shape of one benchmark run. */
export interface Workload {
  keys: number
  valueBytes: number
  inflight: number
  getsPerWorker: number
}

/** defaultWorkload: 20,000 keys, 1 KiB values, 64 in flight per process. */
export const defaultWorkload: Workload = { keys: 20_000, valueBytes: 1024, inflight: 64, getsPerWorker: 20_000 }

/** keyOf names key `i`; fixed width so bytewise order is numeric order. */
export function keyOf(i: number): string {
  return `bench-${String(i).padStart(8, '0')}`
}

/** valuePool returns values to cycle through, so that not every put writes identical bytes. */
export function valuePool(valueBytes: number): Buffer[] {
  return Array.from({ length: 16 }, () => randomBytes(valueBytes))
}

/** runPool runs `count` operations with at most `inflight` outstanding; resolves when all are done. */
export async function runPool(count: number, inflight: number, operation: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0
  const lane = async (): Promise<void> => {
    while (next < count) await operation(next++)
  }
  await Promise.all(Array.from({ length: Math.min(inflight, count) }, lane))
}

/** Phase is one measured step a worker is told to run. */
export type Phase =
  | { kind: 'put'; sync: boolean; from: number; to: number }
  | { kind: 'get'; count: number; seed: number }

/** Target is the store a worker drives. */
export interface Target {
  put(key: string, value: Buffer, sync: boolean): Promise<void>
  get(key: string): Promise<unknown>
  close(): Promise<void>
}

/** runPhase runs one phase against a target. */
export async function runPhase(target: Target, phase: Phase, workload: Workload, values: Buffer[]): Promise<number> {
  if (phase.kind === 'put') {
    await runPool(phase.to - phase.from, workload.inflight, (i) => target.put(keyOf(phase.from + i), values[i % values.length]!, phase.sync))
    return phase.to - phase.from
  }
  // A cheap LCG: the key order must not depend on Math.random state shared with anything else.
  let state = phase.seed >>> 0
  await runPool(phase.count, workload.inflight, () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0
    return target.get(keyOf(state % workload.keys))
  })
  return phase.count
}
