// Adding and removing a node: a fourth node (store and proxy roles) started with the cluster's
// member list joins under a fresh raft id, the meta leader moves replicas onto it until the
// counts are even, it serves every key through its own proxy; `distkv admin remove-node` then
// moves its replicas back and removes it, and nothing is lost. `distkv status` shows the layout.
// A node a replica moved off deletes that shard's Raft state and data from its engine, and no
// replacement of a live replica lowers its shard below 3 voters.
import assert from 'node:assert/strict'
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { after, before, test } from 'node:test'
import { connect } from '../../src/client/index.js'
import type { RemoteKV } from '../../src/client/remote.js'
import { DevFixture } from './fixture.js'
import type { ClusterView } from '../../src/meta/routing.js'

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
let dev: DevFixture
let kv: RemoteKV
let fourth: ChildProcess | undefined

before(async () => {
  dev = await DevFixture.start({ shards: 4 })
  kv = await dev.client({ admin: true })
})

after(async () => {
  fourth?.kill('SIGKILL')
  await kv?.close()
  await dev?.stop()
})

async function startFourthNode(): Promise<string> {
  const members = dev.cluster().nodes.map((n) => `${n.id}@${n.rpc}`).join(',')
  const port = Number(dev.cluster().nodes[2]!.rpc.split(':')[1]) + 10
  const rpc = `127.0.0.1:${port}`
  fourth = spawn(process.execPath, [BIN, 'server', '--id', '4', '--roles', 'store,proxy', '--rpc', rpc, '--data-dir', join(dev.dir, 'node-4'), '--members', members, '--tick-ms', '20', '--down-after-ms', '2000'], {
    stdio: ['ignore', 'pipe', 'ignore'],
    env: { ...process.env, DISTKV_TOKEN: dev.token },
  })
  await new Promise<void>((resolve, reject) => {
    let text = ''
    fourth!.stdout!.on('data', (chunk: Buffer) => {
      text += chunk.toString()
      if (text.includes('ready ')) resolve()
    })
    fourth!.once('exit', (code) => reject(new Error(`node 4 exited with ${code}`)))
  })
  return rpc
}

/**
 * assertRedundancyKept checks the meta leaders' logs: every replacement of a live replica (as
 * balancing onto node 4 does) kept the shard at 3 voters or more throughout (new replica added
 * and promoted before the old one was removed).
 */
async function assertRedundancyKept(moved: number): Promise<void> {
  const replaced = await dev.waitFor('the replacements to be logged', () => {
    const lines = [1, 2, 3].flatMap((i) => readFileSync(join(dev.dir, `node-${i}.log`), 'utf8').split('\n'))
    const found = lines.flatMap((line) => {
      const at = line.indexOf(': replica replaced ')
      return at < 0 ? [] : [JSON.parse(line.slice(at + ': replica replaced '.length)) as { oldAlive: boolean; votersMin: number }]
    })
    return found.length >= moved ? found : undefined
  })
  // A replica whose node was deemed down when its replacement ran (oldAlive false: a host pause
  // longer than the liveness timeout can do that to a healthy node) is removed first, by design;
  // every replacement of a live one must keep 3 voters.
  const live = replaced.filter((record) => record.oldAlive)
  assert.ok(live.length > 0, `no replacement of a live replica was logged: ${JSON.stringify(replaced)}`)
  for (const record of live) {
    assert.ok(record.votersMin >= 3, `a replacement dropped its shard to ${record.votersMin} voters: ${JSON.stringify(record)}`)
  }
}

/** assertMovedReplicasDeleted checks that each node a replica moved off holds no key of that shard once it has dropped it. */
async function assertMovedReplicasDeleted(before: ClusterView, after: ClusterView): Promise<void> {
  let checked = 0
  for (const shard of after.shards) {
    const formerly = before.shards.find((s) => s.id === shard.id)?.replicas ?? []
    for (const node of formerly.filter((n) => !shard.replicas.includes(n))) {
      const address = dev.cluster().nodes.find((n) => n.id === node)!.rpc
      const internal = (await connect(address, { token: dev.token, requestTimeoutMs: 10_000 })) as RemoteKV
      try {
        // The node drops the replica at its next heartbeat after meta recorded the new replica set.
        await dev.waitFor(`node ${node} to delete shard ${shard.id}`, async () => {
          const { keys } = (await internal.call('store.footprint', { shard: shard.id })) as { keys: number }
          return keys === 0 ? true : undefined
        })
      } finally {
        await internal.close()
      }
      checked++
    }
  }
  assert.ok(checked >= 2, `replicas moved off nodes 1-3: ${checked}`)
}

test('a node added to a running cluster receives replicas; removing it moves them back', async () => {
  const written = new Map<string, string>()
  for (let i = 0; i < 200; i++) written.set(`n/${i}`, `v${i}`)
  await Promise.all([...written].map(([key, value]) => kv.put(key, value)))
  const before = await dev.view(kv)
  const rpc = await startFourthNode()
  const balanced = await dev.waitFor('replicas to move onto node 4', async () => {
    const view = await dev.view(kv)
    const held = view.shards.filter((s) => s.replicas.includes(4)).length
    return held >= 2 && view.replacing.length === 0 ? view : undefined
  }, 50_000)
  assert.equal(balanced.nodes.find((n) => n.id === 4)?.health, 'up')
  await assertMovedReplicasDeleted(before, balanced)
  await assertRedundancyKept(balanced.shards.filter((s) => s.replicas.includes(4)).length)
  const viaFourth = await connect(rpc, { requestTimeoutMs: 20_000 })
  try {
    for (const [key, value] of written) assert.equal((await viaFourth.get(key))?.toString(), value)
  } finally {
    await viaFourth.close()
  }
  const status = spawnSync(process.execPath, [BIN, 'status', '--dir', dev.dir], { encoding: 'utf8' })
  assert.equal(status.status, 0, status.stderr)
  assert.match(status.stdout, /node 4 +up/)
  const removal = spawnSync(process.execPath, [BIN, 'admin', 'remove-node', '--node', '4', '--dir', dev.dir], { encoding: 'utf8', timeout: 60_000 })
  assert.equal(removal.status, 0, removal.stderr)
  const view = await dev.view(kv)
  assert.ok(!view.nodes.some((n) => n.id === 4))
  assert.ok(view.shards.every((s) => s.replicas.length === 3 && !s.replicas.includes(4)))
  for (const [key, value] of written) assert.equal((await kv.get(key))?.toString(), value)
})
