// Three raftstore nodes as real processes on loopback TCP with RocksDB: a leader is elected,
// proposals commit (following the leader if a loaded machine re-elects) and are read back linearizably, and a follower killed with SIGKILL comes
// back from its disk and catches up. Every process started here is killed here.
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { findLeader, freePorts, propose, spawnNode, stopNode, waitFor, type NodeProcess, type Status } from './fixtures/processes.js'

test('3 processes over TCP peer streams: elect, replicate, read, survive a follower SIGKILL', { timeout: 60_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'distkv-raftstore-procs-'))
  const ids = [1, 2, 3]
  const portList = await freePorts(6)
  const ports = Object.fromEntries(ids.map((id, i) => [String(id), portList[i]!]))
  const streamPorts = Object.fromEntries(ids.map((id, i) => [String(id), portList[3 + i]!]))
  const nodes = new Map<number, NodeProcess>()
  try {
    for (const id of ids) nodes.set(id, await spawnNode(id, join(root, `n${id}`), ports, { streamPorts }))
    const indexes: number[] = []
    for (let i = 0; i < 20; i++) indexes.push(await propose(nodes, `k${i}`, Buffer.from(`v${i}`)))
    assert.deepEqual(indexes, [...indexes].sort((a, b) => a - b), 'entries are applied in order')
    const read = await waitFor('a linearizable read on the leader', async () => nodes.get(await findLeader(nodes))!.client.request('kv.read', { key: 'k19' }))
    assert.equal(read, 'v19')
    const leaderId = await findLeader(nodes)
    // kv.multi (the bench's coalesced proposals): each put its own entry and result, a bad op failing alone.
    const ops = [[1, Buffer.alloc(16), Buffer.from('m1'), Buffer.from('a')], [0, Buffer.alloc(16), Buffer.from('m2')], [1, Buffer.alloc(16), Buffer.from('m3'), Buffer.from('b')]]
    const multi = await waitFor('a kv.multi the leader accepts', async () => {
      const results = (await nodes.get(await findLeader(nodes))!.client.request('kv.multi', { ops })) as unknown[]
      return typeof results[0] === 'number' ? results : undefined // NOT_LEADER if leadership just moved: retried
    })
    assert.equal(typeof multi[0], 'number')
    assert.equal((multi[1] as { code: string }).code, 'KV_ERR_INVALID')
    assert.equal(multi[2], (multi[0] as number) + 1, 'two entries, consecutive')
    assert.equal(await nodes.get(await findLeader(nodes))!.client.request('kv.localGet', { key: 'm3' }), 'b')

    const followerId = ids.find((id) => id !== leaderId)!
    await stopNode(nodes.get(followerId)!)
    nodes.delete(followerId)
    const last = await propose(nodes, 'during-crash', Buffer.from('ok'))
    nodes.set(followerId, await spawnNode(followerId, join(root, `n${followerId}`), ports, { streamPorts }))
    const follower = nodes.get(followerId)!
    await waitFor('the restarted follower to catch up', async () => ((await follower.client.request('kv.status', {})) as Status).applied >= last ? true : undefined)
    assert.equal(await follower.client.request('kv.localGet', { key: 'during-crash' }), 'ok')
    assert.equal(await follower.client.request('kv.localGet', { key: 'k0' }), 'v0', 'data from before the crash came back from RocksDB')
  } finally {
    await Promise.all([...nodes.values()].map((node) => stopNode(node)))
    rmSync(root, { recursive: true, force: true })
  }
})

test('3 processes over TCP: a follower that missed compacted entries is caught up by a snapshot', { timeout: 60_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'distkv-raftstore-snap-'))
  const ids = [1, 2, 3]
  const portList = await freePorts(3)
  const ports = Object.fromEntries(ids.map((id, i) => [String(id), portList[i]!]))
  const compaction = { compactLogEntriesMax: 20, logRetainEntries: 5 }
  const nodes = new Map<number, NodeProcess>()
  try {
    for (const id of ids) nodes.set(id, await spawnNode(id, join(root, `n${id}`), ports, compaction))
    await propose(nodes, 'first', Buffer.from('1'))
    const leaderId = await findLeader(nodes)
    const followerId = ids.find((id) => id !== leaderId)!
    await stopNode(nodes.get(followerId)!)
    nodes.delete(followerId)
    let last = 0
    // Enough entries that the leader compacts past what the stopped follower has
    // (transport.test.ts covers a snapshot spanning many chunks).
    for (let i = 0; i < 60; i++) last = await propose(nodes, `k${i}`, Buffer.alloc(512, 0x41 + (i % 26)))
    nodes.set(followerId, await spawnNode(followerId, join(root, `n${followerId}`), ports, compaction))
    const follower = nodes.get(followerId)!
    const status = await waitFor('the follower to catch up', async () => {
      const s = (await follower.client.request('kv.status', {})) as Status
      return s.applied >= last ? s : undefined
    })
    assert.ok(status.stats.snapshotsInstalled >= 1, 'caught up by a snapshot, not by the (compacted) log')
    assert.equal(await follower.client.request('kv.localGet', { key: 'k59' }), Buffer.alloc(512, 0x41 + (59 % 26)).toString('latin1'))
    assert.equal(await follower.client.request('kv.localGet', { key: 'first' }), '1')
  } finally {
    await Promise.all([...nodes.values()].map((node) => stopNode(node)))
    rmSync(root, { recursive: true, force: true })
  }
})
