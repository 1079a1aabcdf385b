// The shard machine's replicated `hash` command, which the fault suite uses to prove replicas
// converged: equal content gives an equal digest whether the writes before it were applied in
// the same run (still pending ops) or in earlier runs (in the engine); different content differs.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { ShardCommand } from '../../src/store/machine.js'
import { ALL_SLOTS as ALL, requestId as id, shardReplica as replica } from '../store/replica.js'

const put = (n: number, key: string, value: string): ShardCommand => ({ t: 'write', id: id(n), ops: [[0, Buffer.from(key), Buffer.from(value)]] })
const del = (n: number, key: string): ShardCommand => ({ t: 'write', id: id(n), ops: [[1, Buffer.from(key)]] })

test('hash: same content, same digest, whether the writes are pending in the run or already in the engine', async () => {
  const a = await replica()
  await a.run({ t: 'claim', slots: ALL }, put(1, 'x', '1'), put(2, 'y', '2'), put(3, 'z', '3'), del(4, 'y'), { t: 'hash' })
  const b = await replica()
  await b.run({ t: 'claim', slots: ALL })
  await b.run(put(1, 'x', '1'), put(2, 'y', '2'))
  const [result] = (await b.run(put(3, 'z', '3'), del(4, 'y'), { t: 'hash' })).slice(-1)
  assert.equal(a.machine.lastHash?.index, b.machine.lastHash?.index)
  assert.equal(a.machine.lastHash?.hash, b.machine.lastHash?.hash)
  assert.equal(a.machine.lastHash?.keys, 2 + 4) // two data pairs, four request ids
  assert.deepEqual(result, { ok: true, index: b.machine.lastHash!.index, hash: b.machine.lastHash!.hash })
})

test('hash: a different value or a missing delete changes the digest', async () => {
  const base = await replica()
  await base.run({ t: 'claim', slots: ALL }, put(1, 'x', '1'), put(2, 'y', '2'), del(3, 'y'), { t: 'hash' })
  const other = await replica()
  await other.run({ t: 'claim', slots: ALL }, put(1, 'x', '9'), put(2, 'y', '2'), del(3, 'y'), { t: 'hash' })
  assert.notEqual(base.machine.lastHash?.hash, other.machine.lastHash?.hash)
  const undeleted = await replica()
  await undeleted.run({ t: 'claim', slots: ALL }, put(1, 'x', '1'), put(2, 'y', '2'), put(3, 'w', 'w'), { t: 'hash' })
  assert.notEqual(base.machine.lastHash?.hash, undeleted.machine.lastHash?.hash)
})
