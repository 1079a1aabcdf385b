// Three raftstore nodes as real processes on loopback TCP with RocksDB: a leader is elected,
// proposals commit and are read back linearizably, and a follower killed with SIGKILL comes
// back from its disk and catches up. Every process started here is killed here.
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { fileURLToPath } from 'node:url'
import { WireClient } from '../../src/wire/index.js'

const NODE_SCRIPT = fileURLToPath(new URL('./fixtures/node-process.js', import.meta.url))

/** freePorts asks the OS for `count` free loopback ports (released just before use). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(Array.from({ length: count }, () => new Promise<import('node:net').Server>((resolve) => {
    const server = createServer()
    server.listen(0, '127.0.0.1', () => resolve(server))
  })))
  const ports = servers.map((server) => (server.address() as { port: number }).port)
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))))
  return ports
}

/** NodeProcess is one spawned node and a control client connected to it. */
export interface NodeProcess {
  child: ChildProcess
  client: WireClient
}

/** spawnNode starts a node process and waits until it serves. */
export async function spawnNode(nodeId: number, dir: string, ports: Record<string, number>): Promise<NodeProcess> {
  const child = spawn(process.execPath, [NODE_SCRIPT, JSON.stringify({ nodeId, dir, ports, tickMs: 10 })], { stdio: ['ignore', 'pipe', 'inherit'] })
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`node ${nodeId} did not start`)), 20_000)
    child.once('exit', (code) => reject(new Error(`node ${nodeId} exited with ${code}`)))
    child.stdout!.on('data', (chunk: Buffer) => {
      if (chunk.toString().includes('ready')) {
        clearTimeout(timer)
        resolve()
      }
    })
  })
  child.removeAllListeners('exit')
  const client = await WireClient.connect({ host: '127.0.0.1', port: ports[nodeId]! }, { clientId: randomUUID(), name: 'raftstore-test', pid: process.pid })
  return { child, client }
}

/** stopNode kills a node process (SIGKILL by default: a crash) and waits for it to be gone. */
export async function stopNode(node: NodeProcess, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  await node.client.close().catch(() => {})
  if (node.child.exitCode !== null || node.child.signalCode !== null) return
  const exited = new Promise((resolve) => node.child.once('exit', resolve))
  node.child.kill(signal)
  await exited
}

interface Status { role: string; leader: number; commit: number; applied: number }

/** waitFor polls `probe` until it returns a value, failing after `ms`. */
export async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const value = await probe().catch(() => undefined)
    if (value !== undefined) return value
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
}

/** findLeader returns the node id every live node agrees leads group 1. */
export async function findLeader(nodes: Map<number, NodeProcess>): Promise<number> {
  return waitFor('a leader', async () => {
    for (const [id, node] of nodes) {
      const status = (await node.client.request('kv.status', {})) as Status
      if (status.role === 'leader') return id
    }
    return undefined
  })
}

test('3 processes over TCP: elect, replicate, read, survive a follower SIGKILL', { timeout: 60_000 }, async () => {
  const root = mkdtempSync(join(tmpdir(), 'distkv-raftstore-procs-'))
  const ids = [1, 2, 3]
  const portList = await freePorts(3)
  const ports = Object.fromEntries(ids.map((id, i) => [String(id), portList[i]!]))
  const nodes = new Map<number, NodeProcess>()
  try {
    for (const id of ids) nodes.set(id, await spawnNode(id, join(root, `n${id}`), ports))
    const leaderId = await findLeader(nodes)
    const leader = nodes.get(leaderId)!
    const indexes: number[] = []
    for (let i = 0; i < 20; i++) indexes.push((await leader.client.request('kv.propose', { key: `k${i}`, value: Buffer.from(`v${i}`) })) as number)
    assert.deepEqual(indexes, [...indexes].sort((a, b) => a - b), 'entries are applied in order')
    assert.equal(await leader.client.request('kv.read', { key: 'k19' }), 'v19')

    const followerId = ids.find((id) => id !== leaderId)!
    await assert.rejects(nodes.get(followerId)!.client.request('kv.propose', { key: 'x', value: Buffer.from('y') }), { code: 'KV_ERR_NOT_LEADER' })
    await stopNode(nodes.get(followerId)!)
    nodes.delete(followerId)
    const last = (await leader.client.request('kv.propose', { key: 'during-crash', value: Buffer.from('ok') })) as number
    nodes.set(followerId, await spawnNode(followerId, join(root, `n${followerId}`), ports))
    const follower = nodes.get(followerId)!
    await waitFor('the restarted follower to catch up', async () => ((await follower.client.request('kv.status', {})) as Status).applied >= last ? true : undefined)
    assert.equal(await follower.client.request('kv.localGet', { key: 'during-crash' }), 'ok')
    assert.equal(await follower.client.request('kv.localGet', { key: 'k0' }), 'v0', 'data from before the crash came back from RocksDB')
  } finally {
    await Promise.all([...nodes.values()].map((node) => stopNode(node)))
    rmSync(root, { recursive: true, force: true })
  }
})
