/**
 * DevCluster: what `distkv dev` runs. N node processes on loopback (`distkv server`, every role),
 * node i on HTTP port + 10(i-1), RPC port + 10(i-1) + 1 and Raft peer streams on the port after, data in DIR/node-i, logs in
 * DIR/node-i.log. It keeps DIR/cluster.json current (pids change on restart), starts a node
 * that died again after `restartDelayMs` unless told not to, and stops every node on stop().
 *
 * Fault model: nodes die (crash, kill -9); the supervisor only restarts them (once they had been
 * ready: a node that fails during start() fails the start). The cluster token is kept in
 * DIR/cluster-token (mode 0600) so restarted nodes, and admin commands, share it. The supervisor
 * itself may die without stopping its nodes (kill -9, a wrapper such as npm killed under it): each
 * node gets a pipe on stdin as its lifeline and stops cleanly when the pipe closes
 * (`distkv server --exit-with-stdin`), so no node outlives its supervisor to hold the ports and
 * data directories a next start needs. With `exitWithParent` the supervisor also stops its nodes
 * when its own parent process is gone (`npm start`: npm forwards SIGTERM to its `sh -c`, which
 * dies without passing it on).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, closeSync, readSync, fstatSync } from 'node:fs'
import { createServer } from 'node:net'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ErrorCode, KvError } from '../errors.js'
import { newToken } from '../local/auth.js'

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
  /** logValues: the nodes' NodeConfig.logValues (their default when absent). */
  logValues?: boolean
  /** raftLogFileBytes: the nodes' NodeConfig.raftLogFileBytes (their default when absent). */
  raftLogFileBytes?: number
  /** nodeArgs: extra Node.js flags for every node process (e.g. --cpu-prof for a benchmark). */
  nodeArgs?: string[]
  /** exitWithParent: stop every node and end once the process that started the supervisor is gone (checked every parentCheckIntervalMs). */
  exitWithParent?: boolean
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
  /** everReady: the node printed its ready line once; only such a node is restarted when it dies. */
  everReady: boolean
}

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))

/**
 * nodeReadyTimeoutMs: the backstop for one node process to print its ready line. A node bounds
 * its own start-up steps (opening storage, listening, asking the members whether the cluster
 * exists, at most allocateRaftIdTimeoutMs = 60 s to join one) and exits with its error when one
 * fails, which ends the wait at once with that error. The backstop is only for a process that hangs
 * without exiting, so it is set above the node's own longest bound: the node's specific error, not
 * this timeout, is what a user sees when a step fails.
 */
export const nodeReadyTimeoutMs = 120_000

/** logTailBytes: how much of the end of a node's log a start-up error quotes from. */
const logTailBytes = 4_096

/** parentCheckIntervalMs: how often a supervisor with exitWithParent checks that its parent is alive. */
const parentCheckIntervalMs = 500

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
      return { id: i + 1, http: `127.0.0.1:${base}`, rpc: `127.0.0.1:${base + 1}`, raft: `127.0.0.1:${base + 2}`, dataDir: join(options.dir, `node-${i + 1}`), logFile: join(options.dir, `node-${i + 1}.log`), child: undefined, pid: undefined, restarts: 0, everReady: false }
    })
  }

  /** endpoint is the first node's RPC address (what clients connect to). */
  get endpoint(): string {
    return this.nodes[0]!.rpc
  }

  /**
   * start launches every node and resolves once each prints ready. It first checks that every
   * address of the layout is free, so that a port held by another cluster (or by nodes an earlier
   * supervisor left behind) is reported by node, role and address before anything is started.
   */
  async start(): Promise<void> {
    this.lockDir()
    await this.checkAddressesFree()
    if (this.options.exitWithParent === true) this.watchParent()
    for (const node of this.nodes) writeFileSync(this.configPath(node), JSON.stringify(this.nodeConfig(node), null, 2), { mode: 0o600 })
    await Promise.all(this.nodes.map((node) => this.launch(node)))
    this.writeClusterFile()
  }

  // Declared before `stopped`, whose initializer replaces it (fields initialise in order).
  private onStopped: () => void = () => undefined
  /** stopped resolves when stop() is called, or when the parent watch (exitWithParent) asks for a stop. */
  readonly stopped: Promise<void> = new Promise((resolve) => (this.onStopped = resolve))
  private wroteClusterFile = false

  /** stop ends every node (SIGTERM, then SIGKILL after `graceMs`) and removes the cluster.json it wrote. */
  async stop(graceMs = 10_000): Promise<void> {
    this.stopping = true
    this.onStopped()
    for (const timer of this.timers) clearTimeout(timer)
    await Promise.all(this.nodes.map((node) => stopChild(node.child, graceMs)))
    // A start that failed (say, its ports were taken by a running cluster in the same DIR) must
    // not remove the file of that cluster.
    if (this.wroteClusterFile) rmSync(join(this.options.dir, 'cluster.json'), { force: true })
    if (this.lockedDir) rmSync(join(this.options.dir, 'dev.pid'), { force: true })
  }

  private lockedDir = false

  /**
   * lockDir claims DIR for this supervisor (DIR/dev.pid, created exclusively): a second `distkv
   * dev` on the same DIR would rewrite the running nodes' configs and fail on their locked data
   * directories; it is refused up front, naming the running supervisor. A dev.pid whose process
   * is gone (or on Linux, is no distkv process) is stale and taken over.
   */
  private lockDir(): void {
    const file = join(this.options.dir, 'dev.pid')
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        writeFileSync(file, `${process.pid}\n`, { flag: 'wx' })
        this.lockedDir = true
        return
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
      }
      const pid = Number(readFileSync(file, 'utf8').trim())
      if (isDistkvProcess(pid)) throw new KvError(ErrorCode.UNAVAILABLE, `${this.options.dir} is in use by a running distkv dev (pid ${pid}, see ${file}); stop it first or pass another --dir`, { pid })
      rmSync(file, { force: true })
    }
    throw new KvError(ErrorCode.UNAVAILABLE, `${file}: another distkv dev claimed this directory at the same time`)
  }

  private async checkAddressesFree(): Promise<void> {
    for (const node of this.nodes) {
      for (const [role, address] of [['http', node.http], ['rpc', node.rpc], ['raft', node.raft]] as const) {
        const error = await listenProbe(address)
        if (error === undefined) continue
        const owner = existsSync(join(this.options.dir, 'cluster.json')) ? ` (${join(this.options.dir, 'cluster.json')} exists: is a distkv dev already running on this DIR?)` : ''
        throw new KvError(ErrorCode.UNAVAILABLE, `node ${node.id} cannot start: its ${role} address ${address} is in use (${error.message})${owner}; stop what holds it or pick another --port`, { node: node.id, address })
      }
    }
  }

  /** watchParent stops the cluster once the supervisor's parent is gone (the supervisor was re-parented). */
  private watchParent(): void {
    const parent = process.ppid
    const timer = setInterval(() => {
      if (process.ppid === parent) return
      clearInterval(timer)
      this.options.log(`distkv dev: the parent process (pid ${parent}) is gone; stopping the cluster`)
      this.onStopped()
    }, parentCheckIntervalMs)
    timer.unref()
    void this.stopped.then(() => clearInterval(timer))
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
      ...(o.logValues === undefined ? {} : { logValues: o.logValues }),
      ...(o.raftLogFileBytes === undefined ? {} : { raftLogFileBytes: o.raftLogFileBytes }),
    }
  }

  private async launch(node: DevNode): Promise<void> {
    const logFd = openSync(node.logFile, 'a')
    // stdin is the node's lifeline (--exit-with-stdin): the supervisor never writes to it, and its
    // end, when this process dies however it dies, stops the node.
    const child = spawn(process.execPath, [...nodeV8Flags, ...(this.options.nodeArgs ?? []), BIN, 'server', '--config', this.configPath(node), '--exit-with-stdin'], { stdio: ['pipe', 'pipe', logFd], env: { ...process.env, DISTKV_TOKEN: '' } })
    closeSync(logFd)
    node.child = child
    node.pid = child.pid
    child.stdin?.on('error', () => undefined) // EPIPE once the node is gone: nothing is ever written
    child.once('exit', (code, signal) => this.onExit(node, child, code, signal))
    await waitReady(child, node)
    node.everReady = true
  }

  private onExit(node: DevNode, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null): void {
    if (node.child !== child) return
    node.child = undefined
    node.pid = undefined
    if (this.stopping || !node.everReady) return
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
    this.wroteClusterFile = true
  }
}

function loadToken(dir: string): string {
  const file = join(dir, 'cluster-token')
  if (existsSync(file)) return readFileSync(file, 'utf8').trim()
  const token = newToken()
  writeFileSync(file, `${token}\n`, { mode: 0o600 })
  return token
}

/**
 * waitReady resolves once the node prints its ready line. It fails when the node exits first or
 * at nodeReadyTimeoutMs, with an error on one line that names the node, what was awaited, the
 * last line of the node's log (the node logs each start-up step, and its error when one fails)
 * and where that log is.
 */
function waitReady(child: ChildProcess, node: DevNode): Promise<void> {
  const startedMs = Date.now()
  return new Promise((resolve, reject) => {
    let buffered = ''
    const timer = setTimeout(() => fail(new KvError(ErrorCode.TIMEOUT, `node ${node.id} (pid ${child.pid}) did not print its ready line within nodeReadyTimeoutMs = ${nodeReadyTimeoutMs} ms; ${lastLogLine(node)}`, { node: node.id, log: node.logFile })), nodeReadyTimeoutMs)
    const onData = (chunk: Buffer) => {
      buffered += chunk.toString()
      if (buffered.includes('ready ')) {
        cleanup()
        resolve()
      }
    }
    const onExit = (code: number | null, signal: NodeJS.Signals | null) => {
      const how = signal === null ? `with code ${code}` : `on ${signal}`
      fail(new KvError(ErrorCode.UNAVAILABLE, `node ${node.id} (pid ${child.pid}) exited ${how} ${Date.now() - startedMs} ms after launch, before printing its ready line; ${lastLogLine(node)}`, { node: node.id, log: node.logFile }))
    }
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

/** lastLogLine quotes the last non-empty line of a node's log, and says where the log is. */
function lastLogLine(node: DevNode): string {
  let tail = ''
  try {
    const fd = openSync(node.logFile, 'r')
    try {
      const size = fstatSync(fd).size
      const buffer = Buffer.alloc(Math.min(size, logTailBytes))
      readSync(fd, buffer, 0, buffer.length, size - buffer.length)
      tail = buffer.toString('utf8').split('\n').map((line) => line.trim()).filter((line) => line !== '').at(-1) ?? ''
    } finally {
      closeSync(fd)
    }
  } catch {
    // No log (yet): say so below.
  }
  return tail === '' ? `its log ${node.logFile} is empty` : `last line of its log ${node.logFile}: ${tail}`
}

/** isDistkvProcess tells whether `pid` is alive and (where /proc tells) runs distkv. */
function isDistkvProcess(pid: number): boolean {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid === process.pid) return false
  try {
    process.kill(pid, 0)
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('distkv')
  } catch {
    return true // no /proc: alive is all we can tell
  }
}

/** listenProbe tries to listen on `address` and says why it cannot (undefined: free). */
function listenProbe(address: string): Promise<Error | undefined> {
  const colon = address.lastIndexOf(':')
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', (error) => resolve(error))
    server.listen(Number(address.slice(colon + 1)), address.slice(0, colon), () => server.close(() => resolve(undefined)))
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
