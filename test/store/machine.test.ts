// The shard state machine on a memory engine: exactly-once writes by request id, refusal of
// unowned and frozen slots, the slot-move commands, request-id eviction at its bound (the same
// on every replica), and snapshot/restore carrying data, request ids and owned slots.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { slotOf } from '../../src/meta/slots.js'
import { purgeKeysMax, type ShardCommand } from '../../src/store/machine.js'
import { ALL_SLOTS as ALL, requestId as id, shardReplica as replica } from './replica.js'

const put = (n: number, key: string, value: string): ShardCommand => ({ t: 'write', id: id(n), ops: [[0, Buffer.from(key), Buffer.from(value)]] })

test('a write is applied once per request id, even when re-sent in the same batch', async () => {
  const { engine, machine, run } = await replica()
  await run({ t: 'claim', slots: ALL })
  const results = await run(put(1, 'a', 'first'), put(1, 'a', 'retry'), put(2, 'b', 'x'))
  assert.deepEqual(results, [{ ok: true }, { ok: true }, { ok: true }])
  assert.equal((await engine.get(machine.keys.dataKey(Buffer.from('a'))))?.toString(), 'first')
  await run(put(3, 'a', 'second'), put(1, 'a', 'late retry'))
  assert.equal((await engine.get(machine.keys.dataKey(Buffer.from('a'))))?.toString(), 'second')
})

test('keys of unowned slots are refused, frozen slots refused as retryable, nothing written', async () => {
  const { engine, machine, run } = await replica()
  const [refused] = await run(put(1, 'a', 'v'))
  assert.equal(refused!.ok === false && refused!.code, 'KV_ERR_WRONG_SHARD')
  await run({ t: 'claim', slots: ALL }, { t: 'freeze', slots: [slotOf(Buffer.from('a'))] })
  const [frozen] = await run({ t: 'write', id: id(2), ops: [[0, Buffer.from('b'), Buffer.from('v')], [0, Buffer.from('a'), Buffer.from('v')]] })
  assert.equal(frozen!.ok === false && frozen!.code, 'KV_ERR_STALE_EPOCH')
  assert.equal(await engine.get(machine.keys.dataKey(Buffer.from('b'))), undefined, 'a refused batch writes nothing')
  const [again] = await run({ t: 'write', id: id(2), ops: [[0, Buffer.from('b'), Buffer.from('v')]] })
  assert.deepEqual(again, { ok: true }, 'a refused id was not remembered')
})

test('ingest fills unowned slots only; release then purge removes the moved data', async () => {
  const { engine, machine, run } = await replica()
  const slot = slotOf(Buffer.from('moved'))
  const [ingested] = await run({ t: 'ingest', pairs: [[Buffer.from('moved'), Buffer.from('v')]] })
  assert.deepEqual(ingested, { ok: true })
  await run({ t: 'claim', slots: [slot] })
  const [refused] = await run({ t: 'ingest', pairs: [[Buffer.from('moved'), Buffer.from('w')]] })
  assert.equal(refused!.ok, false)
  const [notYet] = await run({ t: 'purge', slots: [slot] })
  assert.equal(notYet!.ok, false, 'an owned slot cannot be purged')
  await run({ t: 'release', slots: [slot] }, { t: 'purge', slots: [slot] })
  assert.equal(await engine.get(machine.keys.dataKey(Buffer.from('moved'))), undefined)
})

test('a purge walks the writes of its own apply run too: every batching of one log gives the same data and purge results', async () => {
  // Keys of one slot (a hash tag), more than purgeKeysMax of them, some of another slot beside.
  const slot = slotOf(Buffer.from('{moved}'))
  const commands: ShardCommand[] = [{ t: 'claim', slots: ALL }]
  for (let i = 0; i < purgeKeysMax + 300; i++) commands.push(put(100 + i, `{moved}k${String(i).padStart(5, '0')}`, `v${i}`))
  commands.push(put(1, 'stays', 'here'), { t: 'release', slots: [slot] }, { t: 'purge', slots: [slot] }, { t: 'purge', slots: [slot] })
  // A leader applies each entry as it commits; a follower catching up applies them in one run.
  const batchings = [commands.map((c) => [c]), [commands], [commands.slice(0, 1000), commands.slice(1000)]]
  const outcomes: string[] = []
  for (const batches of batchings) {
    const { engine, machine, run } = await replica(purgeKeysMax * 2)
    const purges: unknown[] = []
    for (const batch of batches) {
      const results = await run(...batch)
      batch.forEach((command, i) => command.t === 'purge' && purges.push(results[i]))
    }
    const data: string[] = []
    const iterator = engine.iterator({ gte: machine.keys.data, lt: machine.keys.dataEnd })
    for (let page = await iterator.nextBatch(1000); page.length > 0; page = await iterator.nextBatch(1000)) for (const [k, v] of page) data.push(`${k.toString()}=${v.toString()}`)
    await iterator.close()
    outcomes.push(JSON.stringify({ purges, data }))
    assert.deepEqual(purges, [{ ok: true, more: true }, { ok: true }], `${batches.length} runs`)
    assert.equal(data.length, 1, `${batches.length} runs: only the other slot's key is left`)
  }
  assert.equal(new Set(outcomes).size, 1, 'every batching ends with the same content')
})

test('request ids are bounded: the oldest is forgotten first', async () => {
  const { machine, run, engine } = await replica(3)
  await run({ t: 'claim', slots: ALL })
  await run(put(1, 'a', '1'), put(2, 'a', '2'), put(3, 'a', '3'), put(4, 'a', '4'))
  await run(put(1, 'a', 'reapplied'))
  assert.equal((await engine.get(machine.keys.dataKey(Buffer.from('a'))))?.toString(), 'reapplied')
  await run(put(4, 'a', 'not again'))
  assert.equal((await engine.get(machine.keys.dataKey(Buffer.from('a'))))?.toString(), 'reapplied')
})

test('snapshot and restore carry data, request ids and owned slots', async () => {
  const source = await replica()
  await source.run({ t: 'claim', slots: [1, 2, 3, ...ALL.slice(100)] }, put(1, 'k1', 'v1'), put(2, 'k2', 'v2'))
  const data = await source.machine.snapshot()
  const target = await replica()
  await target.run({ t: 'claim', slots: ALL }, put(9, 'stale', 'x'))
  const ops = await target.machine.restore({ meta: { index: 20, term: 1, confState: { voters: [1], learners: [], votersOutgoing: [] } }, data })
  await target.engine.batch(ops)
  assert.equal((await target.engine.get(target.machine.keys.dataKey(Buffer.from('k2'))))?.toString(), 'v2')
  assert.equal(await target.engine.get(target.machine.keys.dataKey(Buffer.from('stale'))), undefined)
  assert.equal(target.machine.owned.size, source.machine.owned.size)
  const [retry] = await target.run(put(1, 'k1', 'again'))
  assert.deepEqual(retry, { ok: true })
  assert.equal((await target.engine.get(target.machine.keys.dataKey(Buffer.from('k1'))))?.toString(), 'v1', 'the request id came with the snapshot')
  await target.machine.load()
  assert.equal(target.machine.owned.size, source.machine.owned.size, 'the slot record is durable')
})

test('request ids of one-slot writes move with their slots, so a retry after a move is not re-applied', async () => {
  const source = await replica()
  const target = await replica()
  const slot = slotOf(Buffer.from('moving'))
  await source.run({ t: 'claim', slots: ALL })
  await source.run(put(7, 'moving', 'once'), { t: 'write', id: id(8), ops: [[0, Buffer.from('moving'), Buffer.from('x')], [0, Buffer.from('other-slot-key'), Buffer.from('y')]] })
  const requests = await source.machine.requestsOfSlots(new Set([slot]))
  assert.equal(requests.length, 2, 'the one-slot id and the wide id both travel')
  const [ingested] = await target.run({ t: 'ingest', pairs: [[Buffer.from('moving'), Buffer.from('once')]], requests })
  assert.deepEqual(ingested, { ok: true })
  await target.run({ t: 'claim', slots: [slot] })
  const [retry] = await target.run(put(7, 'moving', 'twice'))
  assert.deepEqual(retry, { ok: true })
  assert.equal((await target.engine.get(target.machine.keys.dataKey(Buffer.from('moving'))))?.toString(), 'once')
})

/** keyInSlotOtherThan finds a key whose slot differs from every slot in `avoid`. */
function keyInSlotOtherThan(prefix: string, avoid: number[]): Buffer {
  for (let i = 0; ; i++) {
    const key = Buffer.from(`${prefix}${i}`)
    if (!avoid.includes(slotOf(key))) return key
  }
}

test('a batch spanning slots is not re-applied after one of its slots moves, on either side of the move', async () => {
  const source = await replica()
  const target = await replica()
  const a = Buffer.from('wide-a')
  const b = keyInSlotOtherThan('wide-b', [slotOf(a)])
  await source.run({ t: 'claim', slots: ALL })
  const batch: ShardCommand = { t: 'write', id: id(9), ops: [[0, a, Buffer.from('once')], [0, b, Buffer.from('once')]] }
  await source.run(batch)
  // Move a's slot alone: freeze, copy (data and ids), claim on the target, release on the source.
  await source.run({ t: 'freeze', slots: [slotOf(a)] })
  const requests = await source.machine.requestsOfSlots(new Set([slotOf(a)]))
  await target.run({ t: 'ingest', pairs: [[a, Buffer.from('once')]], requests }, { t: 'claim', slots: [slotOf(a)] })
  await source.run({ t: 'release', slots: [slotOf(a)] })
  // The retry reaches the target once b's slot follows (a second move), or the source: neither applies it again.
  await target.run({ t: 'ingest', pairs: [[b, Buffer.from('once')]] }, { t: 'claim', slots: [slotOf(b)] })
  const [atTarget] = await target.run({ ...batch, ops: [[0, a, Buffer.from('twice')], [0, b, Buffer.from('twice')]] })
  assert.deepEqual(atTarget, { ok: true })
  assert.equal((await target.engine.get(target.machine.keys.dataKey(a)))?.toString(), 'once')
  assert.equal((await target.engine.get(target.machine.keys.dataKey(b)))?.toString(), 'once')
  const [atSource] = await source.run({ ...batch, ops: [[0, b, Buffer.from('twice')]] })
  assert.deepEqual(atSource, { ok: true }, 'the source still answers the id it applied')
  assert.equal((await source.engine.get(source.machine.keys.dataKey(b)))?.toString(), 'once')
})

test('units of a non-atomic batch: each applied once by its own id, all or none per command', async () => {
  const { engine, machine, run } = await replica()
  const a = Buffer.from('unit-a')
  const b = keyInSlotOtherThan('unit-b', [slotOf(a)])
  await run({ t: 'claim', slots: ALL.filter((s) => s !== slotOf(b)) })
  const [refused] = await run({ t: 'units', units: [{ id: id(20), ops: [[0, a, Buffer.from('1')]] }, { id: id(21), ops: [[0, b, Buffer.from('1')]] }] })
  assert.equal(refused!.ok === false && refused!.code, 'KV_ERR_WRONG_SHARD')
  assert.equal(await engine.get(machine.keys.dataKey(a)), undefined, 'a refused command applies no unit')
  await run({ t: 'units', units: [{ id: id(20), ops: [[0, a, Buffer.from('1')]] }] }, { t: 'claim', slots: [slotOf(b)] })
  // Regrouped retry: unit 20 is known (answered), unit 21 is new (applied).
  const [retry] = await run({ t: 'units', units: [{ id: id(20), ops: [[0, a, Buffer.from('2')]] }, { id: id(21), ops: [[0, b, Buffer.from('2')]] }] })
  assert.deepEqual(retry, { ok: true })
  assert.equal((await engine.get(machine.keys.dataKey(a)))?.toString(), '1')
  assert.equal((await engine.get(machine.keys.dataKey(b)))?.toString(), '2')
})

test('each: independent units in one entry, a refusal refuses only its unit, ids applied once', async () => {
  const { engine, machine, run } = await replica()
  const a = Buffer.from('each-a')
  const b = keyInSlotOtherThan('each-b', [slotOf(a)])
  const c = keyInSlotOtherThan('each-c', [slotOf(a), slotOf(b)])
  await run({ t: 'claim', slots: ALL.filter((s) => s !== slotOf(b)) }, { t: 'freeze', slots: [slotOf(c)] })
  const unit = (n: number, key: Buffer, value: string) => ({ id: id(n), ops: [[0, key, Buffer.from(value)]] as Array<[0, Buffer, Buffer]> })
  const [first] = await run({ t: 'each', units: [unit(30, a, '1'), unit(31, b, '1'), unit(32, c, '1'), unit(30, a, 'same id')] })
  assert.equal(first!.ok, true)
  const refused = first!.ok ? first!.refused : undefined
  assert.deepEqual(refused?.map(([at, code]) => [at, code]), [[1, 'KV_ERR_WRONG_SHARD'], [2, 'KV_ERR_STALE_EPOCH']])
  assert.equal((await engine.get(machine.keys.dataKey(a)))?.toString(), '1', 'the unit owned here is applied, once')
  assert.equal(await engine.get(machine.keys.dataKey(b)), undefined)
  assert.equal(machine.remembers(id(31)), false, 'a refused unit leaves no id behind')
  await run({ t: 'claim', slots: [slotOf(b)] })
  const [retry] = await run({ t: 'each', units: [unit(31, b, '2'), unit(30, a, '2')] })
  assert.deepEqual(retry, { ok: true })
  assert.equal((await engine.get(machine.keys.dataKey(b)))?.toString(), '2')
  assert.equal((await engine.get(machine.keys.dataKey(a)))?.toString(), '1', 'a re-sent unit is answered, not applied again')
  const [lone] = await run(put(31, 'each-b', 'as a lone write'))
  assert.deepEqual(lone, { ok: true })
  assert.equal((await engine.get(machine.keys.dataKey(b)))?.toString(), '2', 'the id is the same one a lone write would carry')
})
