// Runs a real `distkv dev` cluster for the cluster tests: node processes on loopback with short
// Raft ticks, a temp directory, and helpers to read cluster.json, kill nodes and call admin
// methods. stop() ends the supervisor and kills (-9) any node process it left behind.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect } from '../../src/client/index.js'
import type { RemoteKV } from '../../src/client/remote.js'
import type { ClusterView } from '../../src/meta/routing.js'

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))

/** DevOptions are the `distkv dev` flags a test may set. */
export interface DevFixtureOptions {
  nodes?: number
  shards?: number
  replicas?: number
  restart?: boolean
  requestTimeoutMs?: number
  /** blobThresholdBytes: the nodes' --blob-threshold-bytes (their default when absent). */
  blobThresholdBytes?: number
  /** raftLogFileBytes: the nodes' --raft-log-file-bytes (their default when absent). */
  raftLogFileBytes?: number
  /** logValues: the nodes' --log-values (their default when absent). */
  logValues?: boolean
}

/** ClusterFile is DIR/cluster.json. */
export interface ClusterFile {
  http: string
  rpc: string
  nodes: Array<{ id: number; pid: number | null; rpc: string; http: string; dataDir: string; restarts: number }>
}

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/**
 * freeBlock finds a base port whose dev layout (node i: base + 10i for HTTP, + 1 for RPC, + 2 for
 * Raft streams) is free. Bases stay below 32768, where Linux's ephemeral ports start: a listener
 * on an ephemeral port can find it taken by some process's outgoing connection.
 */
export async function freeBlock(nodes: number): Promise<number> {
  for (;;) {
    const base = 20_000 + 10 * Math.floor(Math.random() * (1_200 - nodes))
    const ports = Array.from({ length: nodes }, (_, i) => [base + 10 * i, base + 10 * i + 1, base + 10 * i + 2]).flat()
    if ((await Promise.all(ports.map(portFree))).every(Boolean)) return base
  }
}

/** DevFixture is a running dev cluster. */
export class DevFixture {
  private constructor(
    readonly dir: string,
    readonly supervisor: ChildProcess,
    readonly output: { text: string },
  ) {}

  /** start launches `distkv dev` and waits for its banner, retrying on other ports if one was taken meanwhile. */
  static async start(options: DevFixtureOptions = {}): Promise<DevFixture> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await DevFixture.startOnce(options)
      } catch (error) {
        if (attempt >= 3 || !/EADDRINUSE|is in use|cannot listen/.test((error as Error).message)) throw error
      }
    }
  }

  private static async startOnce(options: DevFixtureOptions): Promise<DevFixture> {
    const dir = mkdtempSync(join(tmpdir(), 'distkv-cluster-'))
    const nodes = options.nodes ?? 3
    const args = [BIN, 'dev', '--dir', dir, '--port', String(await freeBlock(nodes)), '--nodes', String(nodes), '--shards', String(options.shards ?? 4),
      '--replicas', String(options.replicas ?? 3), '--tick-ms', '20', '--request-timeout-ms', String(options.requestTimeoutMs ?? 15_000), '--down-after-ms', '2000']
    if (options.restart === false) args.push('--no-restart')
    if (options.blobThresholdBytes !== undefined) args.push('--blob-threshold-bytes', String(options.blobThresholdBytes))
    if (options.raftLogFileBytes !== undefined) args.push('--raft-log-file-bytes', String(options.raftLogFileBytes))
    if (options.logValues !== undefined) args.push('--log-values', String(options.logValues))
    const supervisor = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] })
    const output = { text: '' }
    const fixture = new DevFixture(dir, supervisor, output)
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`dev cluster not ready in time:\n${output.text}`)), 60_000)
      const onData = (chunk: Buffer) => {
        output.text += chunk.toString()
        if (output.text.includes('Ctrl-C stops the cluster.')) {
          clearTimeout(timer)
          resolve()
        }
      }
      supervisor.stdout!.on('data', onData)
      supervisor.stderr!.on('data', (chunk: Buffer) => (output.text += chunk.toString()))
      supervisor.once('exit', (code) => {
        clearTimeout(timer)
        reject(new Error(`distkv dev exited with ${code}:\n${output.text}`))
      })
    }).catch(async (error) => {
      const logs = Array.from({ length: nodes }, (_, i) => {
        try {
          return `node-${i + 1}.log:\n${readFileSync(join(dir, `node-${i + 1}.log`), 'utf8').split('\n').slice(-15).join('\n')}`
        } catch {
          return ''
        }
      })
      await fixture.stop()
      throw new Error(`${(error as Error).message}\n${logs.join('\n')}`)
    })
    return fixture
  }

  /** token is the cluster token (admin calls). */
  get token(): string {
    return readFileSync(join(this.dir, 'cluster-token'), 'utf8').trim()
  }

  /** cluster reads cluster.json. */
  cluster(): ClusterFile {
    return JSON.parse(readFileSync(join(this.dir, 'cluster.json'), 'utf8')) as ClusterFile
  }

  /** endpoints lists every node's RPC address. */
  endpoints(): string[] {
    return this.cluster().nodes.map((n) => n.rpc)
  }

  /** client connects to every proxy with failover. */
  async client(options: { requestTimeoutMs?: number; admin?: boolean } = {}): Promise<RemoteKV> {
    return (await connect(this.endpoints(), { requestTimeoutMs: options.requestTimeoutMs ?? 20_000, ...(options.admin ? { token: this.token } : {}) })) as RemoteKV
  }

  /** view asks any node for admin.cluster. */
  async view(admin: RemoteKV): Promise<ClusterView> {
    return (await admin.call('admin.cluster', {})) as ClusterView
  }

  /** kill9 kills a node process with SIGKILL and returns its pid. */
  kill9(nodeId: number): number {
    const node = this.cluster().nodes.find((n) => n.id === nodeId)!
    if (node.pid === null) throw new Error(`node ${nodeId} is not running`)
    process.kill(node.pid, 'SIGKILL')
    return node.pid
  }

  /** waitFor polls `check` until it returns a value (not undefined) or `timeoutMs` passes. */
  async waitFor<T>(what: string, check: () => Promise<T | undefined> | T | undefined, timeoutMs = 30_000): Promise<T> {
    const deadline = Date.now() + timeoutMs
    let lastError: unknown
    while (Date.now() < deadline) {
      try {
        const value = await check()
        if (value !== undefined) return value
      } catch (error) {
        lastError = error
      }
      await new Promise((r) => setTimeout(r, 100))
    }
    throw new Error(`timed out waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`)
  }

  /** stop ends the supervisor (SIGTERM), kills leftover nodes and removes the directory. */
  async stop(): Promise<void> {
    let pids: number[] = []
    try {
      pids = this.cluster().nodes.map((n) => n.pid).filter((p): p is number => p !== null)
    } catch {
      // no cluster.json yet
    }
    if (this.supervisor.exitCode === null && this.supervisor.signalCode === null) {
      const exited = new Promise((resolve) => this.supervisor.once('exit', resolve))
      this.supervisor.kill('SIGTERM')
      const timer = setTimeout(() => this.supervisor.kill('SIGKILL'), 15_000)
      await exited
      clearTimeout(timer)
    }
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** shardOfSlot is the id of the shard that owns `slot` in `view`. */
export function shardOfSlot(view: ClusterView, slot: number): number {
  return view.shards.find((s) => s.slots.some(([a, b]) => slot >= a && slot <= b))!.id
}

/** keysOnDistinctShards returns keys, one per shard of `view`, found by trying k0, k1, ... */
export function keysOnDistinctShards(view: ClusterView, slotOf: (key: Buffer) => number, count: number): string[] {
  const seen = new Map<number, string>()
  for (let i = 0; seen.size < count && i < 100_000; i++) {
    const key = `k${i}`
    const shard = shardOfSlot(view, slotOf(Buffer.from(key)))
    if (!seen.has(shard)) seen.set(shard, key)
  }
  return [...seen.values()]
}
