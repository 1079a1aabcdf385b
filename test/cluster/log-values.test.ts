// Large values stored as pointers into the Raft log files that hold them (--log-values): a real
// dev cluster with small log files writes 1 MB values to one shard until its log is compacted,
// then every node must have kept the log files its values point into (not written the values
// to blob files as well), and the values must read back, also from a node restarted by kill -9
// once it leads the shard; deleting the values lets GC retire the kept files.
import assert from 'node:assert/strict'
import { existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import type { RemoteKV } from '../../src/client/remote.js'
import { slotOf } from '../../src/meta/slots.js'
import type { ClusterView } from '../../src/meta/routing.js'
import { DevFixture, shardOfSlot } from './fixture.js'

const VALUE_BYTES = 1_000_000
const VALUES = 24

let dev: DevFixture
let kv: RemoteKV

before(async () => {
  dev = await DevFixture.start({ restart: true, logValues: true, raftLogFileBytes: 1024 * 1024 })
  kv = await dev.client({ admin: true })
})

after(async () => {
  await kv?.close()
  await dev?.stop()
})

/** dirBytes sums the sizes of the files directly in `dir` (0 when it does not exist). */
function dirBytes(dir: string, suffix = ''): number {
  if (!existsSync(dir)) return 0
  return readdirSync(dir).filter((name) => name.endsWith(suffix)).reduce((sum, name) => sum + statSync(join(dir, name)).size, 0)
}

/** valuesShard is the shard that holds every `{lv}/...` key. */
function valuesShard(view: ClusterView): number {
  return shardOfSlot(view, slotOf(Buffer.from('{lv}')))
}

/** metric reads one sample of a Prometheus text page (0 when absent). */
function metric(page: string, sample: string): number {
  const line = page.split('\n').find((l) => l.startsWith(`${sample} `))
  return line === undefined ? 0 : Number(line.slice(sample.length + 1))
}

function valueOf(i: number): Buffer {
  const value = Buffer.alloc(VALUE_BYTES, i)
  value.write(`value ${i}`, 0)
  return value
}

test('large values point into the Raft log; files the log is done with are kept; values read back after a kill -9 and from the restarted leader', async () => {
  // One hash tag: every value in one shard, so its log passes the node's compaction size (16 MiB).
  const keys = Array.from({ length: VALUES }, (_, i) => `{lv}/${i}`)
  for (let i = 0; i < VALUES; i += 4) await Promise.all(keys.slice(i, i + 4).map((key, j) => kv.put(key, valueOf(i + j))))
  await kv.put('{lv}/small', 'a small value stays in the LSM')
  const nodes = dev.cluster().nodes
  await dev.waitFor('every node to keep log files its values point into', () =>
    nodes.every((node) => dirBytes(join(node.dataDir, 'log-values'), '.rlog') > 0) ? true : undefined, 60_000)
  for (const node of nodes) {
    // Written once per replica: no value went to a blob file as well.
    assert.ok(dirBytes(join(node.dataDir, 'blobs')) < VALUE_BYTES, `node ${node.id} blob files: ${dirBytes(join(node.dataDir, 'blobs'))} bytes`)
    // And /metrics says so.
    const metrics = await (await fetch(`${node.http}/metrics`)).text()
    assert.ok(metric(metrics, 'distkv_values_in_log_total') >= VALUES, `node ${node.id}: ${metric(metrics, 'distkv_values_in_log_total')} values in the log`)
    assert.ok(metric(metrics, 'distkv_log_files_kept_total') >= 1)
    assert.ok(metric(metrics, 'distkv_log_value_files{unit="bytes"}') > 0)
  }
  const check = async () => {
    for (let i = 0; i < VALUES; i++) assert.ok((await kv.get(keys[i]!))?.equals(valueOf(i)), keys[i])
    assert.equal((await kv.get('{lv}/small'))?.toString(), 'a small value stays in the LSM')
  }
  await check()
  const view0 = await dev.view(kv)

  // Restart the shard's leader with kill -9, then serve the shard from it: its engine points into
  // log files it replays and into kept ones.
  const leader = (await dev.view(kv)).shards.find((s) => s.id === valuesShard(view0))!.leader ?? 0
  assert.ok(leader > 0, 'the values\' shard has a leader')
  dev.kill9(leader)
  await dev.waitFor(`node ${leader} to restart and lead the values' shard again`, async () => {
    const s = (await dev.view(kv)).shards.find((x) => x.id === valuesShard(view0))!
    if (s.leader === leader) return true
    await kv.call('admin.transferLeader', { shard: s.id, node: leader }).catch(() => undefined)
    return undefined
  }, 60_000)
  await check()

  // Deleted values free their kept files: GC (every 5 s) finds no live pointer in them.
  const kept = nodes.map((node) => dirBytes(join(node.dataDir, 'log-values'), '.rlog'))
  for (const key of keys) await kv.del(key)
  await dev.waitFor('GC to retire every kept file', () =>
    nodes.every((node) => dirBytes(join(node.dataDir, 'log-values'), '.rlog') === 0) ? true : undefined, 60_000)
  assert.ok(kept.every((bytes) => bytes > 0), `kept before the deletes: ${kept.join(', ')}`)
  assert.equal((await kv.get('{lv}/small'))?.toString(), 'a small value stays in the LSM')
})
