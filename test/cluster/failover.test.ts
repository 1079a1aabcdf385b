// Failures of whole nodes in a 3-node cluster (no automatic restart): kill -9 of a shard leader
// under write load, after which writes resume and every acknowledged write is present; with
// one node of three down writes to every shard succeed; with a majority down requests fail
// with KV_ERR_UNAVAILABLE (not a hang, not a timeout) within the request timeout.
import assert from 'node:assert/strict'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { isKvError } from '../../src/errors.js'
import { slotOf } from '../../src/meta/slots.js'
import { DevFixture, keysOnDistinctShards } from './fixture.js'

let dev: DevFixture
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ restart: false, requestTimeoutMs: 4_000 })
  kv = await dev.client({ requestTimeoutMs: 20_000, admin: true })
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

interface Load {
  acknowledged: Map<string, string>
  afterKill: number
  errors: string[]
  stop(): Promise<void>
}

function startLoad(writers: number, killed: { at: number }): Load {
  const load: Load = { acknowledged: new Map(), afterKill: 0, errors: [], stop: async () => {} }
  let running = true
  const tasks = Array.from({ length: writers }, async (_, w) => {
    for (let n = 0; running; n++) {
      const key = `load/${w}/${n}`
      const value = `value-${w}-${n}`
      try {
        await kv.put(key, value)
        load.acknowledged.set(key, value)
        if (killed.at > 0) load.afterKill++
      } catch (error) {
        // An unknown outcome is allowed; the key is simply not counted as acknowledged.
        load.errors.push(isKvError(error) ? error.code : String(error))
        await new Promise((resolve) => setTimeout(resolve, 10))
      }
    }
  })
  load.stop = async () => {
    running = false
    await Promise.all(tasks)
  }
  return load
}

test('kill -9 of a shard leader under write load: writes resume and every acknowledged write is present', async () => {
  // Leader hints are refreshed by heartbeats (and cleared while a leadership moves): wait for one.
  const victim = await dev.waitFor('a leader of the first shard', async () => (await dev.view(kv)).shards[0]!.leader ?? undefined)
  const killed = { at: 0 }
  const load = startLoad(8, killed)
  try {
    await dev.waitFor('some writes before the kill', () => (load.acknowledged.size >= 50 ? true : undefined))
    dev.kill9(victim)
    killed.at = Date.now()
    await dev.waitFor(`writes acknowledged after the kill (errors: ${load.errors.slice(-3).join(', ')})`, () => (load.afterKill >= 100 ? true : undefined), 40_000)
  } finally {
    await load.stop()
  }
  for (const [key, value] of load.acknowledged) assert.equal((await kv.get(key))?.toString(), value, `acknowledged ${key} is present`)
  let seen = 0
  for await (const _ of kv.query({ prefix: 'load/' })) seen++
  assert.ok(seen >= load.acknowledged.size, 'a query sees every acknowledged write')
})

test('with one node of three down, a write to every shard succeeds', async () => {
  const view = await dev.view(kv)
  const keys = keysOnDistinctShards(view, slotOf, view.shards.length)
  assert.equal(keys.length, view.shards.length)
  for (const key of keys) await kv.put(key, 'one-down')
  for (const key of keys) assert.equal((await kv.get(key))?.toString(), 'one-down')
})

test('with a majority down, reads and writes fail with KV_ERR_UNAVAILABLE', async () => {
  const running = dev.cluster().nodes.filter((n) => n.pid !== null)
  assert.equal(running.length, 2)
  dev.kill9(running[0]!.id)
  // Let the survivor's leaderships lapse (check-quorum), so no write is in flight on it.
  await new Promise((resolve) => setTimeout(resolve, 1_500))
  await assert.rejects(kv.get('load/0/0'), { code: 'KV_ERR_UNAVAILABLE' })
  await assert.rejects(kv.put('after-majority-loss', 'x'), { code: 'KV_ERR_UNAVAILABLE' })
})
