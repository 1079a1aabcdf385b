// A node restarted with an empty data directory rejoins as a fresh replica: it gets a new Raft
// identity (so it can never vote twice under its old one), meta replaces its old replicas in
// the meta group and in every shard (learner, catch-up by snapshot, promotion), and once it
// leads every shard it serves exactly the data written before it lost its disk. Every fifth
// value is past the nodes' blob threshold, so the snapshots carry values the sender keeps in
// blob files and the fresh replica keeps them in its own (log values off, so the values written
// before the wipe are in blob files too, not in the Raft log files).
import assert from 'node:assert/strict'
import { readdirSync, rmSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { DevFixture } from './fixture.js'

const BLOB_THRESHOLD = 1024
/** valueOf is the i-th value: every fifth one is separated into blob files. */
const valueOf = (prefix: string, i: number) => (i % 5 === 0 ? `${prefix}${i}-${'x'.repeat(BLOB_THRESHOLD * 3)}` : `${prefix}${i}`)

/** blobBytes sums the blob files of a node's data directory. */
function blobBytes(dataDir: string): number {
  try {
    return readdirSync(join(dataDir, 'blobs')).reduce((sum, name) => sum + statSync(join(dataDir, 'blobs', name)).size, 0)
  } catch {
    return 0
  }
}

let dev: DevFixture
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ restart: true, blobThresholdBytes: BLOB_THRESHOLD, logValues: false })
  kv = await dev.client({ admin: true })
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

test('a node restarted with an empty data directory rejoins as a fresh replica and never corrupts its groups', async () => {
  const written = new Map<string, string>()
  for (let i = 0; i < 300; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => {
      const key = `before/${i + j}`
      written.set(key, valueOf('v', i + j))
      return kv.put(key, valueOf('v', i + j))
    }))
  }
  const node3 = dev.cluster().nodes.find((n) => n.id === 3)!
  assert.ok(blobBytes(node3.dataDir) > 0, 'large values went to blob files')
  dev.kill9(3)
  rmSync(node3.dataDir, { recursive: true, force: true })
  // The supervisor restarts node 3 after about a second, on the empty directory.
  const fresh = await dev.waitFor('node 3 back with a new raft id', async () => {
    const view = await dev.view(kv)
    const raftId = view.nodes.find((n) => n.id === 3)?.raftId
    return raftId !== undefined && raftId !== 3 ? raftId : undefined
  })
  await dev.waitFor('every group to replace the old identity by the new one', async () => {
    const view = await dev.view(kv)
    const done = view.replacing.length === 0 && view.meta.raftIds.includes(fresh) && !view.meta.raftIds.includes(3)
      && view.shards.every((s) => s.raftIds.includes(fresh) && !s.raftIds.includes(3))
    return done ? true : undefined
  }, 45_000)
  for (let i = 0; i < 50; i++) {
    written.set(`after/${i}`, valueOf('w', i))
    await kv.put(`after/${i}`, valueOf('w', i))
  }
  // Serve every shard from the fresh replica: it must hold exactly what was acknowledged.
  const view = await dev.view(kv)
  for (const shard of view.shards) {
    await dev.waitFor(`node 3 to lead shard ${shard.id}`, async () => {
      const current = (await dev.view(kv)).shards.find((s) => s.id === shard.id)!
      if (current.leader === 3) return true
      await kv.call('admin.transferLeader', { shard: shard.id, node: 3 }).catch(() => undefined)
      return undefined
    })
  }
  assert.ok(blobBytes(node3.dataDir) > 0, 'the fresh replica separated the values its snapshots carried')
  for (const [key, value] of written) assert.equal((await kv.get(key))?.toString(), value, key)
  let count = 0
  for await (const _ of kv.query({})) count++
  assert.equal(count, written.size)
})
