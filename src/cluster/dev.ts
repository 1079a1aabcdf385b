/**
 * DevCluster: what `distkv dev` runs. N node processes on loopback (`distkv server`, every role),
 * node i on HTTP port + 10(i-1), RPC port + 10(i-1) + 1 and Raft peer streams on the port after, data in DIR/node-i, logs in
 * DIR/node-i.log. It keeps DIR/cluster.json current (pids change on restart), starts a node
 * that died again after `restartDelayMs` unless told not to, and stops every node on stop().
 *
 * Fault model: nodes die (crash, kill -9); the supervisor only restarts them. The cluster token
 * is kept in DIR/cluster-token (mode 0600) so restarted nodes, and admin commands, share it.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, closeSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ErrorCode, KvError } from '../errors.js'

/** DevOptions configures a DevCluster. */
export interface DevOptions {
  dir: string
  nodes: number
  shards: number
  replicas: number
  port: number
  restart: boolean
  restartDelayMs: number
  tickMs?: number
  electionTicks?: number
  requestTimeoutMs?: number
  downAfterMs?: number
  /** blobThresholdBytes: the nodes' NodeConfig.blobThresholdBytes (their default when absent). */
  blobThresholdBytes?: number
  /** nodeArgs: extra Node.js flags for every node process (e.g. --cpu-prof for a benchmark). */
  nodeArgs?: string[]
  log: (line: string) => void
}

/** DevNode is one supervised node. */
export interface DevNode {
  id: number
  rpc: string
  http: string
  /** raft: the node's Raft peer-stream listener (rpc port + 1). */
  raft: string
  dataDir: string
  logFile: string
  child: ChildProcess | undefined
  pid: number | undefined
  restarts: number
}

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
const readyTimeoutMs = 60_000

/**
 * nodeV8Flags start every node's V8 old generation at 64 MiB. Sized from a node's small live
 * heap (~8 MiB) the old generation's limit sits near 30 MiB, and the garbage of a busy node
 * (request objects, Raft messages, external buffers of file chunks) reaches it several times a
 * second: dozens of mark-compacts per second under load, each a main-thread pause plus
 * concurrent marking. Starting larger costs no bound (the heap grows and shrinks as before).
 * Measured: docs/cluster.md "V8 heap flags". Nodes started without `distkv dev` take the same
 * flag on their node command line (Node refuses it in NODE_OPTIONS).
 */
export const nodeV8Flags: readonly string[] = Object.freeze(['--initial-old-space-size=64'])

/** DevCluster supervises the node processes of a dev cluster. */
export class DevCluster {
  readonly nodes: DevNode[]
  readonly token: string
  private stopping = false
  private readonly timers = new Set<NodeJS.Timeout>()

  constructor(readonly options: DevOptions) {
    mkdirSync(options.dir, { recursive: true })
    this.token = loadToken(options.dir)
    this.nodes = Array.from({ length: options.nodes }, (_, i) => {
      const base = options.port + 10 * i
      return { id: i + 1, http: `127.0.0.1:${base}`, rpc: `127.0.0.1:${base + 1}`, raft: `127.0.0.1:${base + 2}`, dataDir: join(options.dir, `node-${i + 1}`), logFile: join(options.dir, `node-${i + 1}.log`), child: undefined, pid: undefined, restarts: 0 }
    })
  }

  /** endpoint is the first node's RPC address (what clients connect to). */
  get endpoint(): string {
    return this.nodes[0]!.rpc
  }

  /** start launches every node and resolves once each prints ready. */
  async start(): Promise<void> {
    for (const node of this.nodes) writeFileSync(this.configPath(node), JSON.stringify(this.nodeConfig(node), null, 2), { mode: 0o600 })
    await Promise.all(this.nodes.map((node) => this.launch(node)))
    this.writeClusterFile()
  }

  /** stop ends every node (SIGTERM, then SIGKILL after `graceMs`) and removes cluster.json. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true
    for (const timer of this.timers) clearTimeout(timer)
    await Promise.all(this.nodes.map((node) => stopChild(node.child, graceMs)))
    rmSync(join(this.options.dir, 'cluster.json'), { force: true })
  }

  private configPath(node: DevNode): string {
    return join(this.options.dir, `node-${node.id}.json`)
  }

  private nodeConfig(node: DevNode): Record<string, unknown> {
    const o = this.options
    return {
      id: node.id,
      rpc: node.rpc,
      http: node.http,
      dataDir: node.dataDir,
      token: this.token,
      members: this.nodes.map((n) => ({ id: n.id, rpc: n.rpc, raft: n.raft, roles: ['meta', 'store', 'proxy'] })),
      shards: o.shards,
      replicas: o.replicas,
      ...(o.tickMs === undefined ? {} : { tickMs: o.tickMs }),
      ...(o.electionTicks === undefined ? {} : { electionTicks: o.electionTicks }),
      ...(o.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: o.requestTimeoutMs }),
      ...(o.downAfterMs === undefined ? {} : { downAfterMs: o.downAfterMs }),
      ...(o.blobThresholdBytes === undefined ? {} : { blobThresholdBytes: o.blobThresholdBytes }),
    }
  }

  private async launch(node: DevNode): Promise<void> {
    const logFd = openSync(node.logFile, 'a')
    const child = spawn(process.execPath, [...nodeV8Flags, ...(this.options.nodeArgs ?? []), BIN, 'server', '--config', this.configPath(node)], { stdio: ['ignore', 'pipe', logFd], env: { ...process.env, DISTKV_TOKEN: '' } })
    closeSync(logFd)
    node.child = child
    node.pid = child.pid
    child.once('exit', (code, signal) => this.onExit(node, child, code, signal))
    await waitReady(child, node)
  }

  private onExit(node: DevNode, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (node.child !== child) return
    node.child = undefined
    node.pid = undefined
    if (this.stopping) return
    this.options.log(`distkv dev: node ${node.id} exited (${signal ?? `code ${code}`})${this.options.restart ? `; restarting in ${this.options.restartDelayMs} ms` : ''}`)
    this.writeClusterFile()
    if (!this.options.restart) return
    const timer = setTimeout(() => {
      this.timers.delete(timer)
      if (this.stopping) return
      node.restarts++
      this.launch(node).then(
        () => {
          this.writeClusterFile()
          this.options.log(`distkv dev: node ${node.id} running again (pid ${node.pid})`)
        },
        (error) => this.options.log(`distkv dev: node ${node.id} failed to restart: ${(error as Error).message}`),
      )
    }, this.options.restartDelayMs)
    this.timers.add(timer)
  }

  /** writeClusterFile records the addresses and pids of the cluster, atomically. */
  writeClusterFile(): void {
    const file = join(this.options.dir, 'cluster.json')
    const body = {
      http: `http://${this.nodes[0]!.http}`,
      rpc: this.endpoint,
      nodes: this.nodes.map((n) => ({ id: n.id, pid: n.pid ?? null, roles: ['meta', 'store', 'proxy'], rpc: n.rpc, http: `http://${n.http}`, dataDir: n.dataDir, log: n.logFile, restarts: n.restarts })),
    }
    writeFileSync(`${file}.tmp`, `${JSON.stringify(body, null, 2)}\n`)
    renameSync(`${file}.tmp`, file)
  }
}

function loadToken(dir: string): string {
  const file = join(dir, 'cluster-token')
  if (existsSync(file)) return readFileSync(file, 'utf8').trim()
  const token = randomBytes(24).toString('base64url')
  writeFileSync(file, `${token}\n`, { mode: 0o600 })
  return token
}

function waitReady(child: ChildProcess, node: DevNode): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => fail(new KvError(ErrorCode.TIMEOUT, `node ${node.id} did not become ready within ${readyTimeoutMs} ms (see ${node.logFile})`)), readyTimeoutMs)
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString()
      if (buffered.includes('ready ')) {
        cleanup()
        resolve()
      }
    }
    const onExit = () => fail(new KvError(ErrorCode.UNAVAILABLE, `node ${node.id} exited before it was ready (see ${node.logFile})`))
    const fail = (error: Error) => {
      cleanup()
      reject(error)
    }
    const cleanup = () => {
      clearTimeout(timer)
      child.stdout?.off('data', onData)
      child.off('exit', onExit)
      child.stdout?.resume()
    }
    child.stdout?.on('data', onData)
    child.once('exit', onExit)
  })
}

async function stopChild(child: ChildProcess | undefined, graceMs: number): Promise<void> {
  if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  await exited
  clearTimeout(timer)
}
