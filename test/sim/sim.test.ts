// The deterministic Raft simulator over the real core: determinism, then seeds 1..250 (the
// other half of the 500-seed sweep is in sim-more.test.ts, so the two run in parallel).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { runSeed } from './simulator.js'
import { runSeedRange } from './seeds.js'

test('same seed gives an identical trace; different seeds differ', () => {
  const a = runSeed(4242, { safetyTicks: 150, livenessElectionTimeouts: 40 })
  const b = runSeed(4242, { safetyTicks: 150, livenessElectionTimeouts: 40 })
  const c = runSeed(4243, { safetyTicks: 150, livenessElectionTimeouts: 40 })
  assert.equal(a.traceDigest, b.traceDigest)
  assert.equal(a.events, b.events)
  assert.ok(a.events > 1000, `a run should do real work (${a.events} events)`)
  assert.notEqual(a.traceDigest, c.traceDigest)
})

test('seeds 1..250 keep every invariant, then recover once healed', () => {
  runSeedRange(1, 250)
})
