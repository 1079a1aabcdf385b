/**
 * JepsenCluster: a real distkv cluster of `distkv server` processes that the harness starts one by
 * one (not through `distkv dev`), so the nemesis owns every process: it can SIGKILL, SIGSTOP and
 * restart each node. Each directed node-to-node link and each client-to-node link goes through
 * its own LinkProxy (the nodes are given a `dial` map: peer address -> proxy of that link), so a
 * partition can cut node 1 -> node 2 and leave node 2 -> node 1 alone. Each node also has a Raft
 * peer-stream listener (`raft`), and the one-way streams node i opens to node j go through a
 * second proxy of the same link ('i=>j'): `link(i, j)` faults both, as one network path.
 *
 * With `powerLoss`, every node runs its engine through the power-loss model (unsynced writes held
 * in the process), so every SIGKILL is a power cut of that node.
 *
 * One node's data directory may sit on a size-limited tmpfs (mounted here, unmounted at stop) so
 * the nemesis can fill its filesystem; when mounting is refused `diskFault` says why.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { randomBytes } from 'node:crypto'
import { connect } from '../../src/client/index.js'
import type { RemoteKV } from '../../src/client/remote.js'
import type { ClusterView } from '../../src/meta/routing.js'
import { powerLossFaultEnv } from '../../src/engine/power-loss.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import { LinkProxy, type Direction, type LinkState } from './proxy.js'

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
/** readyTimeoutMs: how long a node process may take to print its ready line. */
export const readyTimeoutMs = 60_000
/** diskMountBytes: size of the tmpfs holding the disk-fault node's data. */
export const diskMountBytes = 192 * 1024 * 1024

/** ClusterOptions shape the cluster under test. */
export interface ClusterOptions {
  nodes: number
  shards: number
  seed: number
  /** tickMs and electionTicks are the Raft timing every node gets. */
  tickMs: number
  electionTicks: number
  requestTimeoutMs: number
  /** diskNode: the node whose data directory is a small tmpfs (0 for none). */
  diskNode: number
  /** powerLoss: nodes run with DISTKV_FAULT_POWER_LOSS=1 (src/engine/power-loss.ts), so a SIGKILL loses their unsynced writes. */
  powerLoss: boolean
  /** blobThresholdBytes: the nodes' NodeConfig.blobThresholdBytes; undefined leaves the node's default. */
  blobThresholdBytes?: number | undefined
  /** raftLogFileBytes: the nodes' NodeConfig.raftLogFileBytes; undefined leaves the node's default. */
  raftLogFileBytes?: number | undefined
  /** logValues: the nodes' NodeConfig.logValues; undefined leaves the node's default. */
  logValues?: boolean | undefined
  log: (line: string) => void
}

/** NodeProc is one node's process slot. */
export interface NodeProc {
  id: number
  rpc: string
  port: number
  /** raft: the node's Raft peer-stream listener. */
  raft: string
  raftPort: number
  dataDir: string
  config: string
  child: ChildProcess | undefined
  paused: boolean
  starts: number
}

/** appendLog appends to a node's log; output arriving after stop() removed the directory is dropped. */
function appendLog(file: string, data: string | Buffer): void {
  try {
    appendFileSync(file, data)
  } catch {
    // the run's directory is gone
  }
}

/**
 * reservePort holds a free loopback port until `release`: the nodes' ports are chosen before the
 * link proxies listen on ephemeral ports of their own, and a port already given back to the
 * kernel could be handed to one of them (the node then fails with EADDRINUSE).
 */
async function reservePort(): Promise<{ port: number; release: () => Promise<void> }> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port
      resolve({ port, release: () => new Promise<void>((done) => server.close(() => done())) })
    })
  })
}

/** Link is what the nemesis faults: one directed link, the same for every connection on it. */
export interface Link {
  readonly name: string
  readonly address: string
  set(direction: Direction, change: Partial<LinkState>): void
  refuse(): void
  heal(): void
}

/** LinkPair is a node-to-node link: its rpc proxy and its Raft peer-stream proxy, faulted together. */
class LinkPair implements Link {
  constructor(
    private readonly rpc: LinkProxy,
    private readonly stream: LinkProxy,
  ) {}

  get name(): string {
    return this.rpc.name
  }

  get address(): string {
    return this.rpc.address
  }

  set(direction: Direction, change: Partial<LinkState>): void {
    this.rpc.set(direction, change)
    this.stream.set(direction, change)
  }

  refuse(): void {
    this.rpc.refuse()
    this.stream.refuse()
  }

  heal(): void {
    this.rpc.heal()
    this.stream.heal()
  }
}

/** JepsenCluster starts, faults and stops the nodes and link proxies. */
export class JepsenCluster {
  readonly dir: string
  readonly token = randomBytes(16).toString('hex')
  readonly nodes: NodeProc[] = []
  /** links: 'i->j' for node i dialing node j, 'i=>j' for node i's peer stream to node j, 'c->j' for clients dialing node j. */
  readonly links = new Map<string, LinkProxy>()
  /** diskFault is the mount point of the small filesystem, or why there is none. */
  diskFault: { mount: string } | { refused: string } = { refused: 'not requested' }
  /** crashes counts node exits the nemesis did not cause (e.g. on a full disk). */
  readonly crashes: Array<{ node: number; code: number | null; signal: string | null; atMs: number }> = []
  private readonly expectedExit = new Set<ChildProcess>()
  private readonly started = Date.now()

  constructor(readonly options: ClusterOptions) {
    this.dir = mkdtempSync(join(tmpdir(), 'distkv-jepsen-'))
  }

  /** start sets up ports, proxies, configs and starts every node, then waits for every shard to have a leader. */
  async start(random: () => number): Promise<void> {
    const { nodes } = this.options
    const reserved: Array<() => Promise<void>> = []
    for (let id = 1; id <= nodes; id++) {
      const { port, release } = await reservePort()
      const stream = await reservePort()
      reserved.push(release, stream.release)
      this.nodes.push({ id, port, rpc: `127.0.0.1:${port}`, raftPort: stream.port, raft: `127.0.0.1:${stream.port}`, dataDir: join(this.dir, `node-${id}`), config: join(this.dir, `node-${id}.json`), child: undefined, paused: false, starts: 0 })
    }
    for (const to of this.nodes) {
      for (const from of ['c', ...this.nodes.map((n) => String(n.id))]) {
        if (from === String(to.id)) continue
        const proxy = new LinkProxy(`${from}->${to.id}`, to.port, random)
        await proxy.start()
        this.links.set(proxy.name, proxy)
        if (from === 'c') continue
        const stream = new LinkProxy(`${from}=>${to.id}`, to.raftPort, random)
        await stream.start()
        this.links.set(stream.name, stream)
      }
    }
    await Promise.all(reserved.map((release) => release()))
    if (this.options.diskNode > 0) this.mountDisk(this.node(this.options.diskNode))
    for (const node of this.nodes) this.writeConfig(node)
    await Promise.all(this.nodes.map((n) => this.startNode(n.id)))
    await this.waitServing(120_000)
  }

  private mountDisk(node: NodeProc): void {
    mkdirSync(node.dataDir, { recursive: true })
    const result = spawnSync('mount', ['-t', 'tmpfs', '-o', `size=${diskMountBytes}`, 'tmpfs', node.dataDir], { encoding: 'utf8' })
    this.diskFault = result.status === 0 ? { mount: node.dataDir } : { refused: `mount -t tmpfs failed: ${(result.stderr || result.error?.message || '').trim()}` }
  }

  private writeConfig(node: NodeProc): void {
    const members = this.nodes.map((n) => ({ id: n.id, rpc: n.rpc, raft: n.raft, roles: ['meta', 'store', 'proxy'] }))
    const peers = this.nodes.filter((n) => n.id !== node.id)
    const dial = Object.fromEntries([
      ...peers.map((n) => [n.rpc, this.links.get(`${node.id}->${n.id}`)!.address]),
      ...peers.map((n) => [n.raft, this.links.get(`${node.id}=>${n.id}`)!.address]),
    ])
    const { shards, tickMs, electionTicks, requestTimeoutMs, blobThresholdBytes, raftLogFileBytes, logValues } = this.options
    writeFileSync(node.config, JSON.stringify({ id: node.id, rpc: node.rpc, dataDir: node.dataDir, members, dial, token: this.token, shards, replicas: 3, tickMs, electionTicks, requestTimeoutMs, downAfterMs: 60_000, blobThresholdBytes, raftLogFileBytes, logValues }, null, 1))
  }

  /** node returns a node by id. */
  node(id: number): NodeProc {
    const node = this.nodes.find((n) => n.id === id)
    if (node === undefined) throw new KvError(ErrorCode.INVALID, `no node ${id}`)
    return node
  }

  /** clientEndpoints are the client-side proxies, rotated so different clients prefer different nodes. */
  clientEndpoints(rotate = 0): string[] {
    const list = this.nodes.map((n) => this.links.get(`c->${n.id}`)!.address)
    const k = rotate % list.length
    return [...list.slice(k), ...list.slice(0, k)]
  }

  /** startNode spawns a node process and resolves when it prints its ready line (or rejects if it exits first). */
  async startNode(id: number): Promise<void> {
    const node = this.node(id)
    if (node.child !== undefined) return
    const env = { ...process.env, [powerLossFaultEnv]: this.options.powerLoss ? '1' : '0' }
    const child = spawn(process.execPath, [BIN, 'server', '--config', node.config], { stdio: ['ignore', 'pipe', 'pipe'], env })
    node.child = child
    node.paused = false
    node.starts++
    const logFile = join(this.dir, `node-${id}.log`)
    appendLog(logFile, `--- start ${node.starts} at +${Date.now() - this.started} ms, pid ${child.pid}\n`)
    child.stderr!.on('data', (chunk: Buffer) => appendLog(logFile, chunk))
    child.once('exit', (code, signal) => {
      if (node.child === child) node.child = undefined
      appendLog(logFile, `--- exit code ${code} signal ${signal}\n`)
      if (!this.expectedExit.delete(child)) this.crashes.push({ node: id, code, signal, atMs: Date.now() - this.started })
    })
    await new Promise<void>((resolve, reject) => {
      let out = ''
      const timer = setTimeout(() => resolve(), readyTimeoutMs) // slow start under load: the run goes on, the report shows it
      child.stdout!.on('data', (chunk: Buffer) => {
        out += chunk.toString()
        if (out.includes('ready ')) {
          clearTimeout(timer)
          resolve()
        }
      })
      child.once('exit', (code) => {
        clearTimeout(timer)
        reject(new KvError(ErrorCode.UNAVAILABLE, `node ${id} exited with ${code} before it was ready (see ${logFile})`))
      })
    })
  }

  /** logSize is the length of a node's log file (a mark for logSince). */
  logSize(id: number): number {
    try {
      return statSync(join(this.dir, `node-${id}.log`)).size
    } catch {
      return 0
    }
  }

  /** logSince returns what a node logged after the mark `from` (bounded to the last MiB). */
  logSince(id: number, from: number): string {
    try {
      const text = readFileSync(join(this.dir, `node-${id}.log`))
      return text.subarray(Math.max(from, text.length - 1024 * 1024)).toString()
    } catch {
      return ''
    }
  }

  /** kill sends SIGKILL to a running node (SIGCONT first is unnecessary: SIGKILL ends stopped processes too). */
  kill(id: number): boolean {
    const node = this.node(id)
    const child = node.child
    if (child === undefined) return false
    this.expectedExit.add(child)
    child.kill('SIGKILL')
    node.child = undefined
    node.paused = false
    return true
  }

  /** pause sends SIGSTOP; resume sends SIGCONT. */
  pause(id: number): boolean {
    const node = this.node(id)
    if (node.child === undefined || node.paused) return false
    node.child.kill('SIGSTOP')
    node.paused = true
    return true
  }

  /** resume continues a paused node. */
  resume(id: number): void {
    const node = this.node(id)
    if (node.child !== undefined && node.paused) node.child.kill('SIGCONT')
    node.paused = false
  }

  /** link returns the link 'from->to': a client link's proxy, or both proxies of a node link. */
  link(from: number | 'c', to: number): Link {
    const proxy = this.links.get(`${from}->${to}`)
    if (proxy === undefined) throw new KvError(ErrorCode.INVALID, `no link ${from}->${to}`)
    return from === 'c' ? proxy : new LinkPair(proxy, this.links.get(`${from}=>${to}`)!)
  }

  /** healAll clears every link fault, resumes paused nodes and starts dead ones. */
  async healAll(): Promise<void> {
    for (const proxy of this.links.values()) proxy.heal()
    for (const node of this.nodes) this.resume(node.id)
    await Promise.all(this.nodes.filter((n) => n.child === undefined).map((n) => this.startNode(n.id).catch((error) => this.options.log(`restart of node ${n.id} failed: ${(error as Error).message}`))))
  }

  /** admin opens a client with the cluster token through the client proxies. */
  async admin(requestTimeoutMs = 10_000): Promise<RemoteKV> {
    return (await connect(this.clientEndpoints(), { token: this.token, requestTimeoutMs, name: 'jepsen-admin' })) as RemoteKV
  }

  /** view reads admin.cluster. */
  async view(admin: RemoteKV): Promise<ClusterView> {
    return (await admin.call('admin.cluster', {})) as ClusterView
  }

  /** waitServing polls until every shard has a leader and claimed slots and a write goes through. */
  async waitServing(timeoutMs: number): Promise<number> {
    const begin = Date.now()
    const admin = await this.admin(5_000)
    try {
      for (;;) {
        try {
          const view = await this.view(admin)
          if (view.shards.length > 0 && view.shards.every((s) => s.leader !== null && s.claimed)) {
            await admin.put('jepsen:probe', String(Date.now()))
            return Date.now() - begin
          }
        } catch {
          // not yet
        }
        if (Date.now() - begin > timeoutMs) throw new KvError(ErrorCode.TIMEOUT, `cluster did not serve within ${timeoutMs} ms (logs in ${this.dir})`)
        await new Promise((resolve) => setTimeout(resolve, 200))
      }
    } finally {
      await admin.close()
    }
  }

  /** stop kills every node, closes the proxies, unmounts the tmpfs and removes the directory unless `keep`. */
  async stop(keep: boolean): Promise<void> {
    for (const node of this.nodes) {
      this.resume(node.id)
      this.kill(node.id)
    }
    await Promise.all([...this.links.values()].map((p) => p.close()))
    await new Promise((resolve) => setTimeout(resolve, 200))
    if ('mount' in this.diskFault) {
      if (keep) spawnSync('cp', ['-a', this.diskFault.mount, `${this.diskFault.mount}.kept`])
      spawnSync('umount', ['-l', this.diskFault.mount])
    }
    if (!keep) rmSync(this.dir, { recursive: true, force: true })
  }
}
