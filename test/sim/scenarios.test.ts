// Directed scenarios through the simulator's cluster and checkers (no randomness in the
// schedule): the Raft paper's Figure 8, whose bug (a leader counting replicas of an entry from
// an earlier term to commit it, §5.4.2) needs a precise interleaving; random seeds reach it
// through the figure8 profile (profiles.ts), this schedule every time. The real core must come
// through it with every invariant intact.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Checker, SimViolation } from './checkers.js'
import { Cluster } from './cluster.js'
import { Network } from './network.js'
import { Random } from './random.js'
import { encodeCommand } from './state-machine.js'
import { Trace } from './trace.js'

function figure8Cluster(): Cluster {
  const random = new Random(8)
  const trace = new Trace({ tailLinesMax: 60 })
  // One entry per append and one append in flight: the leader ships an old entry and its no-op separately.
  const options = { electionTimeoutTicks: 1000, heartbeatIntervalTicks: 1, preVote: false, checkQuorum: false, snapshotEveryEntries: 1000, compactKeepEntries: 0, entryBytesMaxPerMessage: 1, inflightMessagesMax: 1, readyLoopsMax: 64 }
  const network = new Network(random.fork('network'), { delayMin: 1, delayMax: 1, lossProbability: 0, duplicateProbability: 0, packetsInFlightMax: 1000 })
  return new Cluster({ random, network, checker: new Checker(), trace, options, voters: [1, 2, 3] })
}

/** runUntil delivers packets one time unit at a time (nodes never tick) until `done` or `unitsMax`. */
function runUntil(cluster: Cluster, done: () => boolean, unitsMax = 50): boolean {
  for (let unit = 0; unit < unitsMax; unit++) {
    if (done()) return true
    cluster.now++
    for (let due = cluster.network.nextDue(cluster.now); due !== undefined; due = cluster.network.nextDue(cluster.now)) {
      cluster.deliver(due.packet, due.dropped)
    }
  }
  return done()
}

function isolate(cluster: Cluster, id: number): void {
  cluster.network.heal()
  cluster.network.partition([id], [1, 2, 3].filter((x) => x !== id))
}

/** campaignUntilLeader makes `id` campaign (a bounded number of times, each a higher term) until it leads. */
function campaignUntilLeader(cluster: Cluster, id: number, attempts = 4): boolean {
  for (let i = 0; i < attempts; i++) {
    cluster.input(id, 'campaign', (r) => r.campaign())
    if (runUntil(cluster, () => cluster.status(id)?.role === 'leader', 10)) return true
  }
  return false
}

test('Figure 8 (§5.4.2): an entry from an earlier term is not committed by counting replicas', () => {
  const cluster = figure8Cluster()
  try {
    assert.ok(campaignUntilLeader(cluster, 1))
    runUntil(cluster, () => false, 10) // settle: everyone holds node 1's no-op
    isolate(cluster, 1)
    cluster.input(1, 'propose X', (r) => assert.equal(r.propose(encodeCommand({ key: 'k', value: 'X' })).ok, true))
    const xIndex = cluster.status(1)!.lastIndex
    // Node 2 wins the next term with node 3's vote, but its no-op never leaves it.
    cluster.network.heal()
    cluster.network.partition([1], [2, 3])
    cluster.input(2, 'campaign', (r) => r.campaign())
    assert.ok(runUntil(cluster, () => cluster.status(2)?.role === 'leader', 10))
    isolate(cluster, 2)
    // Node 1 (restarted, so no longer a stale leader) wins a later term with node 3 and
    // replicates X, from its old term, to node 3.
    cluster.crash(1)
    cluster.restart(1)
    assert.ok(campaignUntilLeader(cluster, 1))
    runUntil(cluster, () => cluster.status(1)!.commit >= xIndex, 20)
    // Cut node 1 off as soon as it commits X: its no-op of the new term may not have reached node 3.
    isolate(cluster, 1)
    // Node 2 (last term newer than node 3's if node 3 only has X) may now win with node 3's vote.
    cluster.crash(2)
    cluster.restart(2)
    campaignUntilLeader(cluster, 2)
    runUntil(cluster, () => false, 10)
    cluster.checkAfterStep()
  } catch (error) {
    if (error instanceof SimViolation) assert.fail(`${error.message}\n${cluster.trace.lines().join('\n')}`)
    throw error
  }
})
