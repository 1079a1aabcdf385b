// RaftDriver over the loopback transport with real RaftNode cores and memory engines:
// election, replication and apply on 3 nodes, linearizable reads, leader hints, a crash and
// restart losing unsynced writes, group commit across groups, compaction with snapshots, and
// a follower acknowledging before its engine write of apply output.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { EngineRaftStorage } from '../../src/raftstore/log-storage.js'
import { Cluster } from './cluster.js'
import { putCommand } from './kv-machine.js'

/** gate: a promise a test holds work on until it calls open() (open may be called again). */
function gate(): { opened: Promise<void>; open(): void } {
  let open!: () => void
  const opened = new Promise<void>((resolve) => (open = resolve))
  return { opened, open }
}

/** withGatedCluster runs `body` on a cluster of `nodeIds` whose leader (node 1) has committed one entry; the gate is opened before the cluster closes. */
async function withGatedCluster(nodeIds: number[], body: (cluster: Cluster, held: Promise<void>, open: () => void) => Promise<void>): Promise<void> {
  const cluster = new Cluster(nodeIds, [1])
  await cluster.start()
  const { opened, open } = gate()
  try {
    await cluster.elect(1, 1)
    await cluster.driver(1).propose(1, putCommand('first', '1'))
    await body(cluster, opened, open)
  } finally {
    open()
    await cluster.close()
  }
}

for (const leaderSendsBeforePersist of [true, false]) test(`3 nodes elect a leader, replicate and apply on every node; reads go through ReadIndex (leaderSendsBeforePersist ${leaderSendsBeforePersist})`, async () => {
  const cluster = new Cluster([1, 2, 3], [1], { leaderSendsBeforePersist })
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    const leader = cluster.driver(1)
    const results = await Promise.all([leader.propose(1, putCommand('a', '1')), leader.propose(1, putCommand('b', '2'))])
    assert.equal(typeof results[0], 'number', 'a proposal resolves with the state machine result (the entry index)')
    assert.equal(results[1], (results[0] as number) + 1)
    assert.equal(await cluster.machine(1, 1).get('a'), '1', 'applied on the leader when the proposal resolves')
    await cluster.until('followers apply', async () => (await cluster.machine(3, 1).get('b')) === '2' && (await cluster.machine(2, 1).get('b')) === '2')

    await leader.readIndex(1)
    await assert.rejects(cluster.driver(2).readIndex(1), { code: 'KV_ERR_NOT_LEADER' })
    await assert.rejects(cluster.driver(3).propose(1, putCommand('c', '3')), (error: { code: string; details: { leader: number } }) => {
      assert.equal(error.code, 'KV_ERR_NOT_LEADER')
      assert.equal(error.details.leader, 1, 'the refusal carries a leader hint')
      return true
    })
    await assert.rejects(leader.propose(99, putCommand('x', 'y')), { code: 'KV_ERR_INVALID' })
    await assert.rejects(leader.propose(1, new Uint8Array(9 * 1024 * 1024)), { code: 'KV_ERR_VALUE_TOO_LARGE', message: /proposalBytesMax/ })
  } finally {
    await cluster.close()
  }
})

test('a crashed follower recovers term, vote, log, commit and applied, and catches up', async () => {
  const cluster = new Cluster([1, 2, 3], [1])
  await cluster.start()
  try {
    await cluster.elect(1, 2)
    for (let i = 0; i < 5; i++) await cluster.driver(2).propose(1, putCommand(`k${i}`, `v${i}`))
    await cluster.until('node 3 applies k4', async () => (await cluster.machine(3, 1).get('k4')) === 'v4')
    const before = cluster.driver(3).status(1)
    await cluster.crashNode(3)
    const storage = await cluster.openStorage(3, 1)
    assert.equal(storage.hardState.term, before.term, 'term survives the crash')
    assert.equal(storage.hardState.vote, 2, 'vote survives the crash')
    assert.ok(storage.lastIndex() >= 6, 'the log survives the crash (no-op + 5 entries)')
    assert.ok(storage.appliedIndex <= storage.hardState.commit)

    await cluster.driver(2).propose(1, putCommand('while-down', 'yes'))
    await cluster.startNode(3)
    await cluster.until('node 3 catches up', async () => (await cluster.machine(3, 1).get('while-down')) === 'yes')
    assert.deepEqual(await cluster.machine(3, 1).dump(), await cluster.machine(2, 1).dump())
    assert.equal(cluster.leader(1), 2)
  } finally {
    await cluster.close()
  }
})

test('group commit: one engine write per iteration carries the readies of many groups', async () => {
  const groups = [1, 2, 3, 4]
  const cluster = new Cluster([1, 2, 3], groups)
  await cluster.start()
  try {
    for (const group of groups) await cluster.elect(group, 1)
    const leader = cluster.driver(1)
    const engineBefore = cluster.writes.get(1)!.batches
    const logBefore = { ...cluster.logFiles.get(1)!.stats }
    const statsBefore = { ...leader.stats }
    const proposals = groups.flatMap((group) => Array.from({ length: 5 }, (_, i) => leader.propose(group, putCommand(`g${group}-${i}`, 'v'))))
    await Promise.all(proposals)
    const engineWrites = cluster.writes.get(1)!.batches - engineBefore
    const writes = cluster.logFiles.get(1)!.stats.writes - logBefore.writes
    const syncs = cluster.logFiles.get(1)!.stats.syncs - logBefore.syncs
    const readies = leader.stats.readiesPersisted - statsBefore.readiesPersisted
    const iterations = leader.stats.iterations - statsBefore.iterations
    // Per iteration: ONE log write (and fsync) for the entries and hard state of every group, and
    // ONE engine batch for their apply output (no snapshot here, so nothing more).
    assert.ok(syncs <= iterations, `at most one synced log write per iteration (${syncs} synced writes, ${iterations} iterations)`)
    assert.ok(writes <= iterations, `at most one log write per iteration (${writes} writes, ${iterations} iterations)`)
    assert.ok(engineWrites <= iterations, `at most one engine write per iteration (${engineWrites} writes, ${iterations} iterations)`)
    for (const node of [2, 3]) {
      const stats = cluster.driver(node).stats
      assert.ok(stats.writes <= stats.iterations, `node ${node}: at most one write per iteration (${stats.writes} writes, ${stats.iterations} iterations)`)
    }
    assert.ok(writes < proposals.length, `proposals share writes (${proposals.length} proposals, ${writes} writes, ${readies} readies)`)
    assert.ok(leader.stats.readiesPerWriteMax >= groups.length, 'the proposals of all groups went out in one batch')
  } finally {
    await cluster.close()
  }
})

test('heartbeats of every group a node leads leave together: one batch per peer per interval, whenever each was elected', async () => {
  const groups = [1, 2, 3, 4]
  const interval = 4
  const cluster = new Cluster([1, 2, 3], groups, { raft: { electionTimeoutTicks: 40, heartbeatIntervalTicks: interval } })
  await cluster.start()
  try {
    // Elected one after another, a tick apart at least, so their own heartbeat clocks differ.
    for (const group of groups) {
      await cluster.elect(group, 1)
      cluster.ticker.tick()
      await cluster.settle()
    }
    for (let i = 0; i < 2 * interval; i++) {
      cluster.ticker.tick()
      await cluster.settle()
    }
    const before = cluster.network.batchesDelivered
    const intervals = 5
    for (let i = 0; i < intervals * interval; i++) {
      cluster.ticker.tick()
      await cluster.settle()
    }
    const batches = cluster.network.batchesDelivered - before
    // Per interval: one batch of 4 heartbeats to each follower and one batch of 4 answers back.
    assert.ok(batches <= intervals * 4, `${batches} batches in ${intervals} heartbeat intervals (at most ${intervals * 4}; up to ${intervals * 16} unaligned)`)
    assert.ok(batches >= intervals * 4 - 4, `heartbeats still flow (${batches} batches)`)
  } finally {
    await cluster.close()
  }
})

for (const deferCommitAppends of [true, false]) test(`a commit-only append waits for the next append or tick (deferCommitAppends ${deferCommitAppends})`, async () => {
  const cluster = new Cluster([1, 2, 3], [1], { deferCommitAppends })
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    await cluster.until('followers apply the no-op', () => [2, 3].every((node) => cluster.driver(node).status(1).applied === cluster.driver(1).status(1).commit))
    const leader = cluster.driver(1)
    const applied = async (key: string): Promise<boolean[]> => Promise.all([2, 3].map(async (node) => (await cluster.machine(node, 1).get(key)) === 'v'))
    const before = { ...leader.stats }
    await leader.propose(1, putCommand('a', 'v'))
    await cluster.settle()
    // No tick: the followers have 'a' in their logs; they learn it is committed only from the leader.
    assert.deepEqual(await applied('a'), [!deferCommitAppends, !deferCommitAppends], 'followers apply at once only without deferral')
    await leader.propose(1, putCommand('b', 'v'))
    await cluster.settle()
    assert.deepEqual(await applied('a'), [true, true], 'the next append carries the commit of the previous one')
    if (deferCommitAppends) {
      assert.equal(leader.stats.commitAppendsDeferred - before.commitAppendsDeferred, 4, 'one commit-only append held per follower per commit')
      assert.equal(leader.stats.commitAppendsSuperseded - before.commitAppendsSuperseded, 2, "the next append replaced the first commit's")
      assert.deepEqual(await applied('b'), [false, false])
      cluster.ticker.tick()
      await cluster.settle()
      assert.deepEqual(await applied('b'), [true, true], 'a quiet group tells its followers the commit one tick later')
    } else {
      assert.equal(leader.stats.commitAppendsDeferred, 0)
    }
  } finally {
    await cluster.close()
  }
})

test('a burst of proposals goes out as one append per follower, not one per proposal', async () => {
  const cluster = new Cluster([1, 2, 3], [1])
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    const leader = cluster.driver(1)
    // A committed entry first: followers then replicate (pipelined), no longer probe (one message at a time).
    await leader.propose(1, putCommand('first', 'v'))
    const sentBefore = leader.stats.messagesSent
    const proposals = Array.from({ length: 40 }, (_, i) => leader.propose(1, putCommand(`burst-${i}`, 'v')))
    await Promise.all(proposals)
    const sent = leader.stats.messagesSent - sentBefore
    // One append per follower carries the burst; its commit index follows in one more each (plus any heartbeats).
    assert.ok(sent < proposals.length, `${proposals.length} proposals took ${sent} messages`)
  } finally {
    await cluster.close()
  }
})

test('the log is compacted behind a snapshot and a lagging follower is caught up by one', async () => {
  const cluster = new Cluster([1, 2, 3], [1], { compaction: { compactLogEntriesMax: 20, logRetainEntries: 5 } })
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    cluster.network.isolate(3)
    for (let i = 0; i < 60; i++) await cluster.driver(1).propose(1, putCommand(`k${i}`, `v${i}`))
    assert.ok(cluster.driver(1).stats.compactions >= 1, 'the leader compacted its log')
    assert.equal(cluster.driver(1).stats.snapshotsGenerated, 0, 'compaction alone serialises no snapshot (generated on demand)')
    cluster.network.heal()
    await cluster.until('node 3 installs a snapshot', async () => (await cluster.machine(3, 1).get('k59')) === 'v59')
    assert.ok(cluster.driver(3).stats.snapshotsInstalled >= 1, 'node 3 was caught up by a snapshot, not the log')
    assert.ok(cluster.driver(1).stats.snapshotsGenerated >= 1, 'the leader generated the snapshot node 3 asked for')
    assert.deepEqual(await cluster.machine(3, 1).dump(), await cluster.machine(1, 1).dump())

    await cluster.crashNode(1)
    await cluster.startNode(1)
    await cluster.until('a leader after restarting the compacted node', () => cluster.leader(1) !== undefined)
    const leader = cluster.leader(1)!
    await cluster.driver(leader).propose(1, putCommand('after', 'restart'))
    await cluster.until('all apply after the restart', async () => (await cluster.machine(1, 1).get('after')) === 'restart')
  } finally {
    await cluster.close()
  }
})

test('soft compaction keeps the log short without cutting off a lagging live follower', async () => {
  const cluster = new Cluster([1, 2, 3], [1], { compaction: { compactLogEntriesMax: 1_000, compactLogEntriesSoft: 20, logRetainEntries: 5 } })
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    for (let i = 0; i < 60; i++) await cluster.driver(1).propose(1, putCommand(`k${i}`, `v${i}`))
    assert.ok(cluster.driver(1).stats.compactions >= 1, 'with every peer caught up the leader compacts past the soft threshold')
    const compactedTo = cluster.driver(1).status(1).applied
    cluster.network.isolate(3)
    for (let i = 60; i < 120; i++) await cluster.driver(1).propose(1, putCommand(`k${i}`, `v${i}`))
    cluster.network.heal()
    await cluster.until('node 3 catches up', async () => (await cluster.machine(3, 1).get('k119')) === 'v119')
    assert.equal(cluster.driver(3).stats.snapshotsInstalled, 0, `node 3 (behind since ${compactedTo}) was caught up from the log, not by a snapshot`)
    assert.equal(cluster.driver(1).stats.snapshotsGenerated, 0)
    assert.ok(cluster.driver(2).stats.compactions >= 1, 'a follower compacts past the soft threshold too')
  } finally {
    await cluster.close()
  }
})

test('requests are bounded and time out: pendingProposalsMax, requestTimeoutTicks', async () => {
  const cluster = new Cluster([1, 2, 3], [1], { limits: { pendingProposalsMax: 2, requestTimeoutTicks: 30 } })
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    const leader = cluster.driver(1)
    const first = [leader.propose(1, putCommand('a', '1')), leader.propose(1, putCommand('b', '2'))]
    await assert.rejects(leader.propose(1, putCommand('c', '3')), { code: 'KV_ERR_TOO_MANY_REQUESTS', message: /pendingProposalsMax/ })
    await Promise.all(first)

    cluster.network.isolate(1)
    const stuck = leader.propose(1, putCommand('lost', 'x'))
    const read = leader.readIndex(1)
    stuck.catch(() => {})
    read.catch(() => {})
    let settled = false
    void Promise.allSettled([stuck, read]).then(() => (settled = true))
    await cluster.until('the stuck requests fail', () => settled, 100)
    await assert.rejects(stuck, { code: 'KV_ERR_TIMEOUT', message: /requestTimeoutTicks|timed out/ })
    await assert.rejects(read, (error: { code: string }) => ['KV_ERR_TIMEOUT', 'KV_ERR_NOT_LEADER'].includes(error.code))
  } finally {
    await cluster.close()
  }
})

test('a node joins as a learner by conf change and receives the data', async () => {
  const cluster = new Cluster([1, 2, 3], [1])
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    await cluster.driver(1).propose(1, putCommand('before', 'join'))
    await cluster.addNode(4)
    const confState = await cluster.driver(1).proposeConfChange(1, { type: 'addLearner', nodeId: 4 })
    assert.deepEqual(confState.learners, [4])
    await cluster.until('the learner has the data', async () => (await cluster.machine(4, 1).get('before')) === 'join')
    await cluster.driver(1).propose(1, putCommand('after', 'join'))
    await cluster.until('the learner follows new entries', async () => (await cluster.machine(4, 1).get('after')) === 'join')
    await cluster.stopNode(4)
    const storage = await cluster.openStorage(4, 1)
    assert.deepEqual(storage.appliedState.confState.learners, [4], 'the learner persisted its membership with its applied index')
  } finally {
    await cluster.close()
  }
})

test('driver options are validated once, naming the field', async () => {
  const cluster = new Cluster([1], [1], { limits: { pendingProposalsMax: 0 } })
  await assert.rejects(cluster.start(), { code: 'KV_ERR_INVALID', message: /limits\.pendingProposalsMax/ })
  await assert.rejects(new Cluster([1], [1], { compaction: { snapshotBytesMax: -1 } }).start(), { code: 'KV_ERR_INVALID', message: /snapshotBytesMax/ })
  await assert.rejects(new Cluster([1], [1], { leaderSendsBeforePersist: 'yes' as unknown as boolean }).start(), { code: 'KV_ERR_INVALID', message: /leaderSendsBeforePersist/ })
})

test('a removed group fails its waiters; with destroy its Raft state is deleted', async () => {
  const cluster = new Cluster([1, 2, 3], [1, 2])
  await cluster.start()
  try {
    await cluster.elect(2, 1)
    await cluster.driver(1).propose(2, putCommand('a', '1'))
    const waiting = cluster.driver(1).propose(2, putCommand('b', '2'))
    await cluster.driver(1).removeGroup(2)
    await assert.rejects(waiting, { code: 'KV_ERR_CLOSED' })
    await assert.rejects(cluster.driver(1).propose(2, putCommand('c', '3')), { code: 'KV_ERR_INVALID' })
    assert.deepEqual(cluster.driver(1).groupIds(), [1])

    await cluster.until('node 3 applies a', async () => (await cluster.machine(3, 2).get('a')) === '1')
    await cluster.driver(3).removeGroup(2, { destroy: true })
    await cluster.stopNode(3)
    const storage = await cluster.openStorage(3, 2)
    assert.equal(storage.lastIndex(), 0, 'the log is gone')
    assert.equal(storage.appliedIndex, 0)
    assert.deepEqual(storage.appliedState.confState.voters, [], 'the membership is gone')
    await cluster.startNode(3, [1])
    await cluster.elect(1, 2)
    await cluster.driver(2).propose(1, putCommand('other', 'group'))
    await cluster.until('group 1 still replicates to node 3', async () => (await cluster.machine(3, 1).get('other')) === 'group')
  } finally {
    await cluster.close()
  }
})

test('removeGroup with destroy resolves only once the log forgetting the group is synced: a power cut right after keeps it forgotten', async () => {
  const cluster = new Cluster([1, 2, 3], [1, 2])
  await cluster.start()
  try {
    await cluster.elect(2, 1)
    await cluster.driver(1).propose(2, putCommand('a', '1'))
    await cluster.until('node 3 applies a', async () => (await cluster.machine(3, 2).get('a')) === '1')
    await cluster.driver(3).whenIdle()
    // Nothing else is in flight on node 3, so the iteration writing the destroy record has no Ready of its own to sync.
    await cluster.driver(3).removeGroup(2, { destroy: true })
    await cluster.crashNode(3)
    const storage = await cluster.openStorage(3, 2)
    assert.equal(storage.lastIndex(), 0, 'the log is gone')
    assert.equal(storage.appliedIndex, 0)
  } finally {
    await cluster.close()
  }
})

test('apply output with beforeWrite is written only once it resolves, and its proposal answered only then', async () => {
  const cluster = new Cluster([1, 2, 3], [1])
  await cluster.start()
  try {
    await cluster.elect(1, 1)
    // Every node's machine holds its output back on a gate, as a blob store holds pointers until its files are synced.
    const { opened: held, open } = gate()
    for (const node of [1, 2, 3]) {
      const machine = cluster.machine(node, 1)
      const apply = machine.apply.bind(machine)
      machine.apply = async (entries) => ({ ...(await apply(entries)), beforeWrite: held })
    }
    let answered = false
    const proposal = cluster.driver(1).propose(1, putCommand('gated', 'v')).then((result) => ((answered = true), result))
    // Not cluster.until: its settle() waits for idle drivers, and the gated ones are not.
    const turn = () => new Promise((resolve) => setTimeout(resolve, 1))
    for (let i = 0; i < 500 && cluster.machine(1, 1).applies === 0; i++) await turn()
    assert.ok(cluster.machine(1, 1).applies > 0, 'the leader applied the entry')
    for (let i = 0; i < 20; i++) await turn()
    assert.equal(answered, false, 'not answered before beforeWrite resolved')
    assert.equal(await cluster.machine(1, 1).get('gated'), undefined, 'not written before beforeWrite resolved')
    open()
    assert.equal(typeof (await proposal), 'number')
    assert.equal(await cluster.machine(1, 1).get('gated'), 'v')
    await cluster.until('followers write it too', async () => (await cluster.machine(2, 1).get('gated')) === 'v' && (await cluster.machine(3, 1).get('gated')) === 'v')
  } finally {
    await cluster.close()
  }
})

test("a follower's acknowledgement leaves once its log write is durable, not after its engine write of apply output", async () => {
  await withGatedCluster([1, 2, 3], async (cluster, held, open) => {
    // The followers' unsynced engine writes (their apply output) now hang until the gate opens.
    let heldWrites = 0
    for (const node of [2, 3]) {
      const engine = cluster.engines.get(node)!
      const batch = engine.batch.bind(engine)
      engine.batch = async (ops, options) => {
        if (options?.sync !== true) {
          heldWrites++
          await held
        }
        return batch(ops, options)
      }
    }
    // The next append carries the commit of 'first', so each follower's iteration applies it
    // (an engine write that hangs) and appends 'second' (a log write that does not).
    const second = await Promise.race([
      cluster.driver(1).propose(1, putCommand('second', '2')),
      new Promise((resolve) => setTimeout(resolve, 2000, 'timed out')),
    ])
    assert.notEqual(second, 'timed out', 'the leader commits while the followers still write their apply output')
    assert.ok(heldWrites >= 1, 'a follower engine write was held')
    assert.ok(cluster.driver(2).stats.engineWritesAfterLog + cluster.driver(3).stats.engineWritesAfterLog >= 1)
    open()
    await cluster.until('followers apply both', async () => (await cluster.machine(2, 1).get('second')) === '2' && (await cluster.machine(3, 1).get('second')) === '2')
  })
})

test('a lone voter answers a proposal only once its log write is durable', async () => {
  await withGatedCluster([1], async (cluster, held, open) => {
    // The node's log writes now complete only when the gate opens.
    const logFiles = cluster.logFiles.get(1)!
    const write = logFiles.write.bind(logFiles)
    logFiles.write = async (records, sync) => {
      const done = write(records, sync)
      await held
      return done
    }
    let answered = false
    const proposal = cluster.driver(1).propose(1, putCommand('second', '2')).then((result) => ((answered = true), result))
    for (let i = 0; i < 50; i++) await new Promise((resolve) => setTimeout(resolve, 1))
    assert.equal(answered, false, 'not answered while its entry is not durable in the only copy of the log')
    open()
    assert.equal(typeof (await proposal), 'number')
    assert.equal(await cluster.machine(1, 1).get('second'), '2')
  })
})
