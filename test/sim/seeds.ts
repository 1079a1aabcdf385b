/**
 * Shared body of the seed-sweep test files: runs a range of seeds and fails with the formatted
 * report (seed, invariant, trace tail, replay command) of every violating seed.
 */
import assert from 'node:assert/strict'
import { formatFailure, runSeed, RUN_DEFAULTS } from './simulator.js'

/** runSeedRange runs seeds [from, from + count) with the default run size and asserts none violates an invariant. */
export function runSeedRange(from: number, count: number): void {
  const failures: string[] = []
  for (let seed = from; seed < from + count; seed++) {
    const result = runSeed(seed, RUN_DEFAULTS)
    if (result.violation !== undefined) failures.push(formatFailure(result))
  }
  assert.equal(failures.length, 0, `${failures.length} of ${count} seeds violated an invariant:\n${failures.slice(0, 3).join('\n\n')}`)
}
