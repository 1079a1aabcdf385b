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

test('the Ready contract: persist entries and hard state, then advance; ready() twice without advance is a bug', () => {
  const storage = MemoryRaftStorage.withPeers([1])
  const node = new RaftNode(config({ storage }))
  assert.equal(node.hasReady(), false)
  node.campaign()
  assert.equal(node.hasReady(), true)
  const rd = node.ready()
  assert.throws(() => node.ready(), /not been advanced/)
  assert.deepEqual(rd.softState, { leader: 1, role: 'leader' })
  assert.equal(rd.hardState!.term, 2)
  assert.equal(rd.entries.length, 1)
  assert.equal(rd.mustSync, true)
  assert.deepEqual(rd.committedEntries.map((e) => e.index), [2])
  storage.append(rd.entries)
  storage.setHardState(rd.hardState!)
  node.advance(rd)
  assert.equal(node.hasReady(), false)
  assert.equal(node.status().applied, 2)
  assert.throws(() => node.advance(rd), /not the Ready/)
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
