// Adding a shard under load: `admin.addShard` creates a shard and moves a share of the slots
// onto it while writers and readers keep going. Afterwards every key is readable, no read ever
// went backwards (nothing served from a stale owner), queries during the move saw each key
// once and in order, and the slot map has moved.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { SLOT_COUNT } from '../../src/meta/slots.js'
import { DevFixture } from './fixture.js'

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

test('add a shard and move slots onto it under reads and writes: nothing lost, nothing served twice', async () => {
  const fixed = Array.from({ length: 400 }, (_, i) => `fixed/${String(i).padStart(4, '0')}`)
  for (let i = 0; i < fixed.length; i += 100) await Promise.all(fixed.slice(i, i + 100).map((key) => kv.put(key, key)))
  const writers = 4
  const acked = new Array<number>(writers).fill(0)
  const problems: string[] = []
  let running = true
  const writing = Array.from({ length: writers }, async (_, w) => {
    for (let n = 1; running; n++) {
      // A failed write yields to timers, so a closed client cannot spin the event loop.
      await kv.put(`ctr/${w}`, String(n)).then(() => (acked[w] = n), () => new Promise((resolve) => setTimeout(resolve, 10)))
    }
  })
  const reading = Array.from({ length: 3 }, async (_, r) => {
    for (let i = r; running; i += 3) {
      const w = i % writers
      const floor = acked[w]!
      const [counter, value] = await Promise.all([kv.get(`ctr/${w}`), kv.get(fixed[i % fixed.length]!)])
        .catch(async () => (await new Promise((resolve) => setTimeout(resolve, 10)), [undefined, Buffer.from(fixed[i % fixed.length]!)]))
      if (counter !== undefined && Number(counter) < floor) problems.push(`ctr/${w} read ${counter} after ${floor} was acknowledged`)
      if (value === undefined) problems.push(`${fixed[i % fixed.length]} missing`)
    }
  })
  const scans: string[][] = []
  const scanning = (async () => {
    while (running) {
      const keys: string[] = []
      try {
        for await (const [key] of kv.query({ prefix: 'fixed/' })) keys.push(key.toString())
        scans.push(keys)
      } catch {
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  })()
  let before: Awaited<ReturnType<typeof dev.view>>
  let added: { shard: number; moves: number[] }
  let moved: Awaited<ReturnType<typeof dev.view>>
  try {
    before = await dev.view(kv)
    added = (await kv.call('admin.addShard', {})) as { shard: number; moves: number[] }
    assert.ok(added.moves.length > 0)
    moved = await dev.waitFor('the slot moves to finish', async () => {
      const view = await dev.view(kv)
      return view.moves.length === 0 ? view : undefined
    }, 40_000)
  } finally {
    running = false
    await Promise.all([...writing, ...reading, scanning])
  }
  assert.deepEqual(problems, [])
  const shard = moved.shards.find((s) => s.id === added.shard)!
  assert.ok(shard.slotCount > 0, 'the new shard owns slots')
  assert.equal(moved.shards.reduce((sum, s) => sum + s.slotCount, 0), SLOT_COUNT)
  assert.ok(moved.version > before.version, 'the routing version changed')
  for (const key of fixed) assert.equal((await kv.get(key))?.toString(), key)
  for (let w = 0; w < writers; w++) assert.ok(Number(await kv.get(`ctr/${w}`)) >= acked[w]!, `ctr/${w} kept its acknowledged value`)
  assert.ok(scans.length > 0)
  for (const keys of scans) assert.deepEqual(keys, fixed, 'a query during the move saw every key once, in order')
})
