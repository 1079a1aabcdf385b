/**
 * RaftNode's public surface: config validation, message validation, the Ready/advance contract.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, KvError } from '../../src/errors.js'
import { MemoryRaftStorage, RaftNode, type Message, type RaftConfig } from '../../src/raft/index.js'

function config(overrides: Partial<RaftConfig> = {}): RaftConfig {
  return { id: 1, storage: MemoryRaftStorage.withPeers([1, 2, 3]), random: () => 0.5, electionTimeoutTicks: 10, heartbeatIntervalTicks: 1, ...overrides }
}

function invalid(field: string): (e: unknown) => boolean {
  return (e) => e instanceof KvError && e.code === ErrorCode.INVALID && e.message.includes(`RaftConfig.${field}`)
}

test('RaftConfig is validated once, with errors naming the field and range', () => {
  assert.throws(() => new RaftNode(config({ id: 0 })), invalid('id'))
  assert.throws(() => new RaftNode(config({ electionTimeoutTicks: 1, heartbeatIntervalTicks: 1 })), invalid('electionTimeoutTicks'))
  assert.throws(() => new RaftNode(config({ heartbeatIntervalTicks: 0 })), invalid('heartbeatIntervalTicks'))
  assert.throws(() => new RaftNode(config({ inflightMessagesMax: 0 })), invalid('inflightMessagesMax'))
  assert.throws(() => new RaftNode(config({ entryBytesMaxPerMessage: 1.5 })), invalid('entryBytesMaxPerMessage'))
  assert.throws(() => new RaftNode(config({ uncommittedBytesMax: -1 })), invalid('uncommittedBytesMax'))
  assert.throws(() => new RaftNode(config({ preVote: 'yes' as unknown as boolean })), invalid('preVote'))
  assert.throws(() => new RaftNode(config({ random: undefined as unknown as () => number })), invalid('random'))
  assert.throws(() => new RaftNode(config({ electionTimeoutTicks: 5, heartbeatIntervalTicks: 10 })), /\[11, 1000000\]/)
})

function msg(fields: Partial<Message>): Message {
  return { type: 'heartbeat', from: 2, to: 1, term: 1, logTerm: 0, index: 0, entries: [], commit: 0, reject: false, rejectHint: 0, ...fields }
}

test('messages from the network are validated: local types, addressing, numbers, entry continuity', () => {
  const node = new RaftNode(config())
  const protocol = (e: unknown): boolean => e instanceof KvError && e.code === ErrorCode.PROTOCOL
  assert.throws(() => node.step(msg({ type: 'hup' })), protocol)
  assert.throws(() => node.step(msg({ type: 'checkQuorum' })), protocol)
  assert.throws(() => node.step(msg({ to: 2 })), protocol)
  assert.throws(() => node.step(msg({ from: 0 })), protocol)
  assert.throws(() => node.step(msg({ term: -1 })), protocol)
  assert.throws(() => node.step(msg({ commit: 1.5 })), protocol)
  assert.throws(() => node.step(msg({ type: 'snap' })), protocol)
  assert.throws(() => node.step(msg({ term: 0 })), protocol, 'only forwarded proposals and reads may omit the term')
  assert.throws(() => node.step(msg({ from: 1 })), protocol, 'a message from itself')
  assert.throws(() => node.step(msg({ type: 'prop', term: 0, entries: [{ term: 0, index: 0, type: 'normal', data: 'x' as unknown as Uint8Array }] })), protocol)
  const e = (index: number, term = 1) => ({ term, index, type: 'normal' as const, data: new Uint8Array(0) })
  assert.throws(() => node.step(msg({ type: 'app', index: 1, entries: [e(2), e(4)] })), protocol)
  assert.throws(() => node.step(msg({ type: 'app', index: 1, entries: [e(2, 5)] })), protocol, 'entry term above the message term')
  node.step(msg({ type: 'app', index: 1, logTerm: 1, entries: [e(2)] }))
  assert.equal(node.status().lastIndex, 2)
})

test('the Ready contract: persist entries and hard state, then advance; a lone voter commits its entry only once it is persisted', () => {
  const storage = MemoryRaftStorage.withPeers([1])
  const node = new RaftNode(config({ storage }))
  assert.equal(node.hasReady(), false)
  node.campaign()
  assert.equal(node.hasReady(), true)
  const rd = node.ready()
  assert.deepEqual(rd.softState, { leader: 1, role: 'leader' })
  assert.equal(rd.hardState!.term, 2)
  assert.equal(rd.entries.length, 1)
  assert.equal(rd.mustSync, true)
  assert.deepEqual(rd.committedEntries, [], 'not committed before the leader persisted it, even alone')
  assert.equal(node.hasReady(), false, 'what a Ready handed out is not handed out again before it is advanced')
  storage.append(rd.entries)
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  assert.throws(() => node.advance(rd), /not the oldest Ready/)
  const next = node.ready()
  assert.deepEqual(next.committedEntries.map((e) => e.index), [2], 'committed once persisted')
  assert.equal(next.hardState!.commit, 2)
  node.advance(next)
  assert.equal(node.hasReady(), false)
  assert.equal(node.status().applied, 2)
})

test('Readies persisted in the background: several outstanding, each handing out only what is new, advanced in order', () => {
  const storage = MemoryRaftStorage.withPeers([1, 2, 3])
  const node = new RaftNode(config({ storage, preVote: false }))
  node.campaign()
  let rd = node.ready()
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  for (const from of [2, 3]) node.step(msg({ type: 'voteResp', from, term: 2 }))
  rd = node.ready()
  storage.append(rd.entries)
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  for (const from of [2, 3]) node.step(msg({ type: 'appResp', from, term: 2, index: 2 }))
  rd = node.ready()
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  assert.equal(node.status().commit, 2, 'the term\'s first entry is committed')

  node.propose(new Uint8Array([1]))
  const first = node.ready()
  assert.deepEqual(first.entries.map((e) => e.index), [3])
  node.propose(new Uint8Array([2]))
  const second = node.ready()
  assert.deepEqual(second.entries.map((e) => e.index), [4], 'the second Ready leaves out what the first handed out')
  // A follower acknowledges both before the leader's own writes are done: with only the leader's
  // unpersisted copy and one acknowledgement, nothing may commit.
  node.step(msg({ type: 'appResp', from: 2, term: 2, index: 4 }))
  assert.equal(node.status().commit, 2, 'one acknowledgement and an unpersisted leader copy are not a quorum')
  assert.throws(() => node.advance(second), /not the oldest Ready/)
  storage.append(first.entries)
  node.advance(first)
  assert.equal(node.status().commit, 3, 'entry 3 commits once the leader persisted it')
  const third = node.ready()
  assert.deepEqual(third.committedEntries.map((e) => e.index), [3])
  assert.ok(third.messages.some((m) => m.type === 'app' && m.to === 3 && m.commit >= 3), 'the followers learn the new commit')
  storage.append(second.entries)
  node.advance(second)
  assert.equal(node.status().commit, 4)
  const fourth = node.ready()
  assert.deepEqual(fourth.committedEntries.map((e) => e.index), [4], 'each committed entry is handed out for application once, applied or not')
  node.advance(third)
  node.advance(fourth)
  assert.equal(node.status().applied, 4)
})

test('a commit-only hard state change does not require fsync', () => {
  const storage = MemoryRaftStorage.withPeers([1, 2])
  const node = new RaftNode(config({ storage }))
  node.step(msg({ type: 'app', term: 2, index: 1, logTerm: 1, entries: [{ term: 2, index: 2, type: 'normal', data: new Uint8Array(0) }] }))
  let rd = node.ready()
  storage.append(rd.entries)
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  node.step(msg({ type: 'heartbeat', term: 2, commit: 2 }))
  rd = node.ready()
  assert.equal(rd.hardState!.commit, 2)
  assert.equal(rd.mustSync, false)
  node.advance(rd)
})

test('a restarted node resumes from storage: hard state, applied index, configuration', () => {
  const storage = MemoryRaftStorage.withPeers([1])
  const first = new RaftNode(config({ storage }))
  first.campaign()
  first.propose(new Uint8Array([1]))
  const rd = first.ready()
  storage.append(rd.entries)
  storage.setHardState(rd.hardState!)
  first.advance(rd)
  const second = new RaftNode(config({ storage, applied: 3 }))
  const s = second.status()
  assert.equal(s.term, 2)
  assert.equal(s.commit, 3)
  assert.equal(s.applied, 3)
  assert.equal(second.hasReady(), false)
  second.campaign()
  assert.equal(second.status().role, 'leader')
})

test('a restart with an applied index above the stored commit raises commit; one beyond the log is refused', () => {
  const storage = MemoryRaftStorage.withPeers([1, 2, 3])
  storage.append([2, 3, 4].map((index) => ({ term: 1, index, type: 'normal' as const, data: new Uint8Array(0) })))
  const node = new RaftNode(config({ storage, applied: 3 }))
  assert.equal(node.status().commit, 3)
  assert.equal(node.status().applied, 3)
  assert.throws(() => new RaftNode(config({ storage, applied: 9 })), invalid('applied'))
})

test('inputs between ready() and advance() are kept for the next Ready, even a truncation of the handed-out entries', () => {
  const storage = MemoryRaftStorage.withPeers([1, 2, 3])
  const node = new RaftNode(config({ storage }))
  const entry = (index: number, term: number) => ({ term, index, type: 'normal' as const, data: new Uint8Array([index]) })
  node.step(msg({ type: 'app', term: 2, index: 1, logTerm: 1, entries: [entry(2, 2), entry(3, 2)] }))
  const rd1 = node.ready()
  assert.deepEqual(rd1.entries.map((e) => [e.index, e.term]), [[2, 2], [3, 2]])
  // Before rd1 is advanced, a leader of term 3 overwrites index 3.
  node.step(msg({ type: 'app', from: 3, term: 3, index: 2, logTerm: 2, entries: [entry(3, 3)] }))
  storage.append(rd1.entries)
  storage.setHardState(rd1.hardState!)
  node.advance(rd1)
  const rd2 = node.ready()
  assert.deepEqual(rd2.entries.map((e) => [e.index, e.term]), [[3, 3]], 'the replacement is still to be persisted')
  assert.deepEqual(rd2.messages.map((m) => [m.type, m.to, m.index]), [['appResp', 3, 3]])
  storage.append(rd2.entries)
  node.advance(rd2)
  assert.equal(storage.term(3), 3)
  assert.equal(node.hasReady(), false)
})
