// Seeds 251..500 of the simulator sweep (see sim.test.ts).
import { test } from 'node:test'
import { runSeedRange } from './seeds.js'

test('seeds 251..500 keep every invariant, then recover once healed', () => {
  runSeedRange(251, 250)
})
