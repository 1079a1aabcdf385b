/**
 * Randomized safety check of the Raft paper's guarantees (§5.2 Election Safety, §5.4 Log
 * Matching and State Machine Safety) under message loss, reordering, duplication, partitions,
 * crashes with restarts, and log compaction. A quick guard run in `npm test`; the deeper,
 * seeded fuzzing lives in test/sim. Each failure prints its seed.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { Network, seededRandom } from './network.js'
import type { Message } from '../../src/raft/index.js'

interface Observed {
  leaderOfTerm: Map<number, number>
}

function checkInvariants(net: Network, ids: number[], seen: Observed, context: string): void {
  for (const id of ids) {
    const s = net.status(id)
    if (s.role !== 'leader') continue
    const other = seen.leaderOfTerm.get(s.term)
    assert.ok(other === undefined || other === id, `${context}: two leaders (${other}, ${id}) in term ${s.term}`)
    seen.leaderOfTerm.set(s.term, id)
  }
  // State Machine Safety: every pair of applied sequences agrees on their common prefix.
  const applied = ids.map((id) => net.peer(id).applied)
  for (let a = 0; a < applied.length; a++) {
    for (let b = a + 1; b < applied.length; b++) {
      const n = Math.min(applied[a]!.length, applied[b]!.length)
      for (let i = 0; i < n; i++) {
        assert.equal(applied[a]![i], applied[b]![i], `${context}: nodes ${ids[a]} and ${ids[b]} applied different entries at position ${i}`)
      }
    }
  }
}

export function runSeed(seed: number, options: { preVote: boolean; checkQuorum: boolean }): void {
  const rand = seededRandom(seed)
  const ids = [1, 2, 3, 4, 5]
  const net = new Network(ids, { ...options, inflightMessagesMax: 4, entryBytesMaxPerMessage: 256 })
  net.shuffle = rand
  const duplicates: Message[] = []
  net.filter = (m) => {
    if (rand() < 0.05) duplicates.push(m)
    return rand() > 0.1
  }
  const seen: Observed = { leaderOfTerm: new Map() }
  const down = new Set<number>()
  let proposal = 0
  for (let step = 0; step < 400; step++) {
    const context = `seed ${seed} step ${step}`
    const dice = rand()
    if (dice < 0.03) {
      net.heal()
      net.filter = (m) => rand() > 0.1
      const victim = ids[Math.floor(rand() * ids.length)]!
      net.isolate(victim)
    } else if (dice < 0.05) {
      net.heal()
      net.filter = (m) => rand() > 0.1
    } else if (dice < 0.07 && down.size < 2) {
      const victim = ids[Math.floor(rand() * ids.length)]!
      if (!down.has(victim)) {
        net.crash(victim)
        down.add(victim)
      }
    } else if (dice < 0.1 && down.size > 0) {
      const back = [...down][0]!
      down.delete(back)
      net.restart(back)
    } else if (dice < 0.12) {
      const id = ids[Math.floor(rand() * ids.length)]!
      if (!down.has(id) && net.peer(id).appliedIndex > net.peer(id).storage.firstIndex()) net.compact(id)
    } else if (dice < 0.4) {
      for (const id of ids) {
        if (!down.has(id) && net.status(id).role === 'leader') net.peer(id).node.propose(new TextEncoder().encode(`p${proposal++}`))
      }
    }
    for (const m of duplicates.splice(0)) net.deliver(m)
    net.tick(1)
    checkInvariants(net, ids, seen, context)
  }
  // Liveness once healed: everyone alive converges.
  net.heal()
  for (const id of [...down]) net.restart(id)
  // Split votes can repeat for a while in plain Raft; election timeouts are random, so it ends.
  const settled = (): boolean => net.leaders().length === 1 && ids.every((id) => net.status(id).leader === net.leaders()[0])
  for (let round = 0; round < 30 && !settled(); round++) net.tick(10)
  const leader = net.leader()
  net.propose(leader, 'final')
  net.tick(20)
  checkInvariants(net, ids, seen, `seed ${seed} final`)
  for (const id of ids) assert.equal(net.peer(id).applied.at(-1), 'final', `seed ${seed}: node ${id} did not converge`)
}

test('§5.2 §5.4 safety under loss, reordering, duplication, partitions, crashes and compaction (pre-vote, check-quorum)', () => {
  for (let seed = 1; seed <= 12; seed++) runSeed(seed, { preVote: true, checkQuorum: true })
})

test('§5.2 §5.4 safety under the same faults with plain Raft elections', () => {
  for (let seed = 100; seed <= 111; seed++) runSeed(seed, { preVote: false, checkQuorum: false })
})
