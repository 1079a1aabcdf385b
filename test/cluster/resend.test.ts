// Exactly once across a slot move, end to end: an atomic batch over two slots of one shard is
// applied, one of its slots then moves to another shard, and the client re-sends the batch with
// the same request id through another proxy. The re-send must be answered as a success (it was
// applied) and must not be applied again; a new batch over the same keys is refused as
// cross-shard.
import assert from 'node:assert/strict'
import { randomUUID } from 'node:crypto'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import type { ClusterView } from '../../src/meta/routing.js'
import { slotOf } from '../../src/meta/slots.js'
import { WireClient } from '../../src/wire/client.js'
import { DevFixture, shardOfSlot } from './fixture.js'

let dev: DevFixture
let admin: RemoteKV

before(async () => {
  dev = await DevFixture.start({ shards: 2 })
  admin = await dev.client({ admin: true })
})

after(async () => {
  await admin?.close()
  await dev?.stop()
})

/** twoSlotsOfOneShard finds two keys in different slots owned by the same shard. */
function twoSlotsOfOneShard(view: ClusterView): [Buffer, Buffer] {
  const first = Buffer.from('resend-0')
  for (let i = 1; i < 100_000; i++) {
    const key = Buffer.from(`resend-${i}`)
    if (slotOf(key) !== slotOf(first) && shardOfSlot(view, slotOf(key)) === shardOfSlot(view, slotOf(first))) return [first, key]
  }
  throw new Error('no two keys found')
}

async function sendBatch(endpoint: string, requestId: string, keys: Buffer[], value: string): Promise<unknown> {
  const [host, port] = endpoint.split(':')
  const client = await WireClient.connect({ host: host!, port: Number(port) }, { clientId: randomUUID(), name: 'resend-test', pid: process.pid })
  try {
    return await client.request('kv.batch', { ops: keys.map((key) => ({ type: 'put', key, value: Buffer.from(value) })) }, { requestId, timeoutMs: 20_000 })
  } finally {
    await client.close()
  }
}

test('a batch re-sent after one of its slots moved is answered, not applied again', async () => {
  const view = await dev.view(admin)
  const [a, b] = twoSlotsOfOneShard(view)
  const source = shardOfSlot(view, slotOf(a))
  const target = view.shards.find((s) => s.id !== source)!.id
  const requestId = randomUUID()
  const [first, second] = dev.endpoints()
  await sendBatch(first!, requestId, [a, b], 'once')
  await admin.call('admin.moveSlots', { slots: [slotOf(a)], to: target })
  await dev.waitFor('the slot to move', async () => {
    const now = await dev.view(admin)
    return now.moves.length === 0 && shardOfSlot(now, slotOf(a)) === target ? true : undefined
  })
  // A new batch is refused; its refusal also shows that proxy routes by the moved slot map, so
  // the re-send below meets keys split across shards (not a stale map pointing at the source).
  await assert.rejects(sendBatch(second!, randomUUID(), [a, b], 'new'), { code: 'KV_ERR_CROSS_SHARD_BATCH' })
  await sendBatch(second!, requestId, [a, b], 'twice')
  assert.equal((await admin.get(a))?.toString(), 'once')
  assert.equal((await admin.get(b))?.toString(), 'once')
})
