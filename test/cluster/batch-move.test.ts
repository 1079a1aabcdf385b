// Batched writes across a slot move: many concurrent puts (grouped per shard by the proxy's
// WriteBatcher, one `each` command per group) to keys whose slots are moved to another shard
// meanwhile. Writes refused by the frozen or released source are re-routed to the new owner
// under their own ids; none is reported applied when it was not: every key ends with at least
// the last acknowledged value, read from the new owner.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { slotOf } from '../../src/meta/slots.js'
import { DevFixture, shardOfSlot } from './fixture.js'

let dev: DevFixture
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ shards: 2 })
  kv = await dev.client({ admin: true })
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

test('puts batched per shard stay exactly acknowledged while their slots move', async () => {
  const view = await dev.view(kv)
  const source = view.shards[0]!.id
  const target = view.shards[1]!.id
  const keys: string[] = []
  for (let i = 0; keys.length < 24; i++) if (shardOfSlot(view, slotOf(Buffer.from(`mv/${i}`))) === source) keys.push(`mv/${i}`)
  const acked = keys.map(() => 0)
  let running = true
  const writers = keys.map(async (key, w) => {
    for (let n = 1; running; n++) {
      await kv.put(key, String(n)).then(() => (acked[w] = n), () => new Promise((resolve) => setTimeout(resolve, 5)))
    }
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  const slots = [...new Set(keys.map((key) => slotOf(Buffer.from(key))))]
  await kv.call('admin.moveSlots', { slots, to: target })
  await dev.waitFor('the slots to move', async () => {
    const now = await dev.view(kv)
    return now.moves.length === 0 && slots.every((slot) => shardOfSlot(now, slot) === target) ? true : undefined
  })
  await new Promise((resolve) => setTimeout(resolve, 300))
  running = false
  await Promise.all(writers)
  const values = await kv.getMany(keys)
  keys.forEach((key, w) => assert.ok(Number(values[w]?.toString()) >= acked[w]!, `${key} holds ${values[w]?.toString()}, acknowledged ${acked[w]}`))
  assert.ok(acked.every((n) => n > 1), 'every writer made progress')
})
