// Node configuration: the Raft peer-stream address (`raft`) of a node and of its members.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { parseMembers } from '../../src/cluster/command.js'
import { resolveNodeConfig } from '../../src/cluster/config.js'
import { ErrorCode, isKvError } from '../../src/errors.js'

const members = [
  { id: 1, rpc: '127.0.0.1:7701', raft: '127.0.0.1:7702', roles: ['meta', 'store', 'proxy'] },
  { id: 2, rpc: '127.0.0.1:7711', roles: ['meta', 'store', 'proxy'] },
]
const base = { token: 'cluster-token', dataDir: '/tmp/distkv-config-test', members }

function refused(raw: Record<string, unknown>, field: string): void {
  assert.throws(() => resolveNodeConfig(raw), (error: unknown) => isKvError(error) && error.code === ErrorCode.INVALID && error.details?.field === field)
}

test('a node takes its raft listener from its member entry, or from its own field', () => {
  assert.equal(resolveNodeConfig({ ...base, id: 1 }).raft, '127.0.0.1:7702')
  assert.equal(resolveNodeConfig({ ...base, id: 2 }).raft, undefined)
  assert.equal(resolveNodeConfig({ ...base, id: 2, raft: '127.0.0.1:7712' }).raft, '127.0.0.1:7712')
  assert.deepEqual(resolveNodeConfig({ ...base, id: 2 }).members.map((m) => m.raft), ['127.0.0.1:7702', undefined])
})

test('a bad raft address is refused with the field it came from', () => {
  refused({ ...base, id: 2, raft: 'nowhere' }, 'raft')
  refused({ ...base, id: 1, raft: '127.0.0.1:7701' }, 'raft')
  refused({ ...base, id: 1, members: [{ ...members[0], raft: 7702 }, members[1]] }, 'members[0].raft')
})

test('--members gives a member its raft port as ID@HOST:PORT/RAFTPORT; a malformed entry is refused', () => {
  const parsed = parseMembers('1@10.0.0.1:7701/7702, 2@10.0.0.2:7701,3@[::1]:7701/7702')
  assert.deepEqual(parsed.map((m) => [m.id, m.rpc, m.raft]), [[1, '10.0.0.1:7701', '10.0.0.1:7702'], [2, '10.0.0.2:7701', undefined], [3, '[::1]:7701', '[::1]:7702']])
  const config = resolveNodeConfig({ token: 'cluster-token', dataDir: '/tmp/distkv-config-test', id: 1, members: parsed })
  assert.equal(config.raft, '10.0.0.1:7702', 'a node listens on its own member entry\'s raft address')
  assert.deepEqual(config.members.map((m) => m.raft), ['10.0.0.1:7702', undefined, '[::1]:7702'])
  for (const bad of ['x@h:1', '1@7701/7702', '1h:7701']) {
    assert.throws(() => parseMembers(bad), (error: unknown) => isKvError(error) && error.code === ErrorCode.INVALID && error.details?.field === 'members', bad)
  }
})

test('blobThresholdBytes defaults to 8 KiB, 0 turns separation off, and out-of-range values are refused', () => {
  assert.equal(resolveNodeConfig({ ...base, id: 1 }).blobThresholdBytes, 8 * 1024)
  assert.equal(resolveNodeConfig({ ...base, id: 1, blobThresholdBytes: '0' }).blobThresholdBytes, 0)
  refused({ ...base, id: 1, blobThresholdBytes: -1 }, 'blobThresholdBytes')
  refused({ ...base, id: 1, blobThresholdBytes: 1.5 }, 'blobThresholdBytes')
  refused({ ...base, id: 1, blobThresholdBytes: 65 * 1024 * 1024 }, 'blobThresholdBytes')
})

test('logValues defaults to true; flags give it as text; anything but true or false is refused', () => {
  assert.equal(resolveNodeConfig({ ...base, id: 1 }).logValues, true)
  assert.equal(resolveNodeConfig({ ...base, id: 1, logValues: 'false' }).logValues, false)
  assert.equal(resolveNodeConfig({ ...base, id: 1, logValues: false }).logValues, false)
  refused({ ...base, id: 1, logValues: 'yes' }, 'logValues')
})

test('raftLogFileBytes defaults to 64 MiB and out-of-range values are refused', () => {
  assert.equal(resolveNodeConfig({ ...base, id: 1 }).raftLogFileBytes, 64 * 1024 * 1024)
  assert.equal(resolveNodeConfig({ ...base, id: 1, raftLogFileBytes: '65536' }).raftLogFileBytes, 65536)
  refused({ ...base, id: 1, raftLogFileBytes: 1023 }, 'raftLogFileBytes')
  refused({ ...base, id: 1, raftLogFileBytes: 2 ** 31 }, 'raftLogFileBytes')
})
