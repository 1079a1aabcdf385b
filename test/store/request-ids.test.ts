// Request-id records of a shard replica: one record per applied entry (a batch of writes costs
// one engine put), whole records evicted past the bound identically on every replica, records of
// the earlier one-per-id layout still honoured after an upgrade, and ids moving with their slots.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { slotOf } from '../../src/meta/slots.js'
import type { WriteUnit } from '../../src/store/machine.js'
import { ALL_SLOTS as ALL, requestId as id, shardReplica } from './replica.js'

const unit = (n: number, key: string, value: string): WriteUnit => ({ id: id(n), ops: [[0, Buffer.from(key), Buffer.from(value)]] })

async function replica(requestIdsMax?: number) {
  const { engine, machine, run } = await shardReplica(requestIdsMax)
  const idRecords = async () => {
    const iterator = engine.iterator({ gte: machine.keys.ids, lt: machine.keys.requestEnd })
    try {
      return await iterator.nextBatch(10_000)
    } finally {
      await iterator.close()
    }
  }
  const value = async (key: string) => (await engine.get(machine.keys.dataKey(Buffer.from(key))))?.toString()
  return { engine, machine, run, idRecords, value }
}

test('a batch of writes in one entry is one request-id record; every id in it is remembered', async () => {
  const r = await replica()
  await r.run({ t: 'claim', slots: ALL })
  await r.run({ t: 'each', units: Array.from({ length: 20 }, (_, i) => unit(100 + i, `k${i}`, 'v')) })
  const records = await r.idRecords()
  assert.equal(records.length, 1)
  assert.equal(records[0]![1].length, 20 * 18)
  for (let i = 0; i < 20; i++) assert.equal(r.machine.remembers(id(100 + i)), true)
  await r.machine.load()
  assert.equal(r.machine.remembers(id(119)), true, 'reloaded from the record')
})

test('past the bound the oldest records are evicted whole, and those ids are applied again', async () => {
  const r = await replica(4)
  await r.run({ t: 'claim', slots: ALL })
  await r.run({ t: 'each', units: [unit(1, 'a', '1'), unit(2, 'b', '1')] }, { t: 'each', units: [unit(3, 'c', '1'), unit(4, 'd', '1')] })
  assert.equal((await r.idRecords()).length, 2)
  await r.run({ t: 'each', units: [unit(5, 'e', '1')] })
  assert.equal((await r.idRecords()).length, 2, 'the oldest record went')
  assert.equal(r.machine.remembers(id(1)), false)
  assert.equal(r.machine.remembers(id(2)), false)
  assert.equal(r.machine.remembers(id(3)), true)
  await r.run({ t: 'write', id: id(1), ops: [[0, Buffer.from('a'), Buffer.from('again')]] }, { t: 'write', id: id(3), ops: [[0, Buffer.from('c'), Buffer.from('again')]] })
  assert.equal(await r.value('a'), 'again', 'a forgotten id is applied again')
  assert.equal(await r.value('c'), '1', 'a remembered one is not')
})

test('records of the one-per-id layout are still honoured, moved and evicted', async () => {
  const r = await replica(2)
  await r.run({ t: 'claim', slots: ALL })
  const legacy = (n: number, index: number, key: string) => {
    const value = Buffer.alloc(10)
    value.writeBigUInt64BE(BigInt(index))
    value.writeUInt16BE(slotOf(Buffer.from(key)), 8)
    return { type: 'put' as const, key: r.machine.keys.requestKey(id(n)), value }
  }
  await r.engine.batch([legacy(7, 3, 'old-a'), legacy(8, 4, 'old-b')])
  await r.machine.load()
  assert.equal(r.machine.remembers(id(7)), true)
  const moving = await r.machine.requestsOfSlots(new Set([slotOf(Buffer.from('old-a'))]))
  assert.deepEqual(moving.map((item) => item.subarray(0, 16).toString('hex')), [id(7).toString('hex')])
  await r.run({ t: 'write', id: id(7), ops: [[0, Buffer.from('old-a'), Buffer.from('twice')]] })
  assert.equal(await r.value('old-a'), undefined, 'a legacy id is answered, not applied')
  await r.run({ t: 'each', units: [unit(9, 'n', '1')] })
  assert.equal(r.machine.remembers(id(7)), false, 'the oldest (legacy) record is evicted first')
  assert.equal(await r.engine.get(r.machine.keys.requestKey(id(7))), undefined)
  assert.equal(r.machine.remembers(id(8)), true)
})

test('ids ingested with moving slots are one record and survive a snapshot', async () => {
  const source = await replica()
  await source.run({ t: 'claim', slots: ALL })
  await source.run({ t: 'each', units: [unit(40, 'm1', 'v'), unit(41, 'm2', 'v')] })
  const slots = new Set([slotOf(Buffer.from('m1')), slotOf(Buffer.from('m2'))])
  const requests = await source.machine.requestsOfSlots(slots)
  assert.equal(requests.length, 2)
  const target = await replica()
  await target.run({ t: 'ingest', pairs: [[Buffer.from('m1'), Buffer.from('v')], [Buffer.from('m2'), Buffer.from('v')]], requests }, { t: 'claim', slots: [...slots] })
  assert.equal((await target.idRecords()).length, 1)
  const restored = await replica()
  await restored.engine.batch(await restored.machine.restore({ meta: { index: 99, term: 1, confState: { voters: [1], learners: [], votersOutgoing: [] } }, data: await target.machine.snapshot() }))
  await restored.run({ t: 'write', id: id(41), ops: [[0, Buffer.from('m2'), Buffer.from('twice')]] })
  assert.equal(await restored.value('m2'), 'v', 'the id came with the move and the snapshot')
})
