/**
 * The local server: the one process that owns a database directory's engine and serves every
 * process that opens the directory (the RPC-proxy design of seeds/002), over a Unix socket that
 * only this user can open, and over TCP when given a token.
 *
 * Fault model: the server may be killed at any moment (kill -9). Exclusivity rests on the
 * engine's own lock (an OS file lock that dies with the process), not on files we could leave
 * behind: a new server takes the engine lock, then replaces whatever stale socket or pointer
 * file it finds. Clients re-send unacknowledged writes with their original ids, and the store
 * applies each id at most once.
 */
import { randomUUID } from 'node:crypto'
import { appendFileSync, chmodSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs'
import { createEngine } from '../engine/index.js'
import type { Engine } from '../engine/engine.js'
import { ErrorCode, KvError } from '../errors.js'
import { PROTOCOL_VERSION, WireServer, type WireAddress } from '../wire/index.js'
import { authenticator } from './auth.js'
import { registerLocalHandlers } from './handlers.js'
import { localPaths, type LocalPaths } from './paths.js'
import { LocalStore } from './store.js'
import { openEngineExclusive, readPointer, type ServerPointer } from './discovery.js'
import { makeDatabaseDir } from './launcher.js'

/** EngineKind names the engines a local server can run on. */
export type EngineKind = 'rocksdb' | 'leveldb' | 'memory'

/** LocalServerOptions configures one local server. */
export interface LocalServerOptions {
  /** dir: the database directory (created when missing). */
  dir: string
  /** host/port: also listen on TCP (requires `token`); port 0 picks a free port. */
  host?: string
  port?: number
  /** token: the secret TCP clients must present. Unix-socket clients need none. */
  token?: string
  /** idleTimeoutSeconds: exit after this long with no client connected; 0 = never. Default 30. */
  idleTimeoutSeconds?: number
  /** engine: kind to create (default 'rocksdb'), or an engine instance (not yet open). */
  engine?: EngineKind | Engine
  /** handleSignals: stop cleanly on SIGTERM and SIGINT (default true). */
  handleSignals?: boolean
  /** signal: stops the server when aborted. */
  signal?: AbortSignal
}

/** LocalServerInfo is what a started server reports (also written to the pointer file). */
export type LocalServerInfo = ServerPointer

/** LocalServerHandle is a running server. */
export interface LocalServerHandle {
  readonly info: LocalServerInfo
  readonly store: LocalStore
  /** stop shuts down cleanly; idempotent. */
  stop(reason?: string): Promise<void>
  /** stopped resolves once the server has stopped for any reason. */
  readonly stopped: Promise<void>
}

/** logFileBytesMax: the start/stop log is rotated (one old copy kept) above this size. */
export const logFileBytesMax = 1024 * 1024

function validateOptions(options: LocalServerOptions): { idleTimeoutSeconds: number; tcp: boolean } {
  if (typeof options.dir !== 'string' || options.dir.length === 0) throw new KvError(ErrorCode.INVALID, 'dir must be a non-empty string')
  const idleTimeoutSeconds = options.idleTimeoutSeconds ?? 30
  if (!Number.isFinite(idleTimeoutSeconds) || idleTimeoutSeconds < 0 || idleTimeoutSeconds > 2_147_483) {
    throw new KvError(ErrorCode.INVALID, `idleTimeoutSeconds must be between 0 and 2147483, got ${idleTimeoutSeconds}`)
  }
  const tcp = options.port !== undefined || options.host !== undefined
  if (tcp && (typeof options.token !== 'string' || options.token.length === 0)) {
    throw new KvError(ErrorCode.INVALID, 'refusing to listen on TCP without a token: anyone who can reach the port could read and write the database; pass --token')
  }
  if (options.port !== undefined && (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535)) {
    throw new KvError(ErrorCode.INVALID, `port must be an integer between 0 and 65535, got ${options.port}`)
  }
  return { idleTimeoutSeconds, tcp }
}

/** serverLog appends one line to DIR/local-server.log; logging must never take the server down. */
export function serverLog(paths: LocalPaths, line: string): void {
  try {
    try {
      if (statSync(paths.logFile).size > logFileBytesMax) renameSync(paths.logFile, `${paths.logFile}.old`)
    } catch {
      // no log yet
    }
    appendFileSync(paths.logFile, `${new Date().toISOString()} pid=${process.pid} ${line}\n`)
  } catch {
    // NB: a full disk or read-only DIR must not stop the server from serving.
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    // already gone
  }
}

/** startLocalServer opens the engine (waiting for a previous owner to let go), listens, and returns a handle. */
export async function startLocalServer(options: LocalServerOptions): Promise<LocalServerHandle> {
  const { idleTimeoutSeconds, tcp } = validateOptions(options)
  const paths = localPaths(makeDatabaseDir(options.dir))
  const engine =
    typeof options.engine === 'object' ? options.engine : createEngine({ kind: options.engine ?? 'rocksdb', dir: paths.engineDir })
  const store = new LocalStore(engine)
  let wire: WireServer | undefined
  try {
    await openEngineExclusive(engine, paths)
    await store.open()
    const serverId = randomUUID()
    const info: LocalServerInfo = {
      serverId,
      pid: process.pid,
      version: PROTOCOL_VERSION,
      engine: engine.kind,
      dir: paths.dir,
      socket: paths.socketPath,
      startedAt: Date.now(),
    }
    const idle = new IdleTimer(idleTimeoutSeconds)
    const logHandlerError = (error: unknown, method: string): void =>
      serverLog(paths, `error in ${method}: ${(error as Error)?.stack ?? String(error)}`)
    wire = new WireServer({
      serverInfo: { serverId, pid: process.pid, version: PROTOCOL_VERSION, engine: engine.kind },
      authenticate: authenticator(options.token),
      onConnectionsChanged: (count) => idle.connections(count),
      onHandlerError: logHandlerError,
    })
    registerLocalHandlers(wire, store, () => ({ ...info }), logHandlerError)
    // The engine lock is ours, so any socket file left here belongs to a dead server.
    unlinkQuietly(paths.socketPath)
    await wire.listen({ path: paths.socketPath })
    chmodSync(paths.socketPath, 0o600)
    if (tcp) {
      const bound = (await wire.listen({ host: options.host ?? '127.0.0.1', port: options.port ?? 0 })) as Extract<WireAddress, { port: number }>
      info.tcp = { host: bound.host, port: bound.port }
    }
    writePointer(paths, info)
    serverLog(paths, `start server=${serverId} engine=${engine.kind} socket=${paths.socketPath}${info.tcp ? ` tcp=${info.tcp.host}:${info.tcp.port}` : ''}`)
    const handle = makeHandle({ paths, info, store, engine, wire, idle, options })
    idle.arm(() => void handle.stop('idle'))
    return handle
  } catch (error) {
    if (!(error instanceof KvError && error.details?.alreadyRunning === true)) {
      serverLog(paths, `failed to start: ${(error as Error)?.message ?? String(error)}`)
    }
    await wire?.close().catch(() => undefined)
    await store.close().catch(() => undefined)
    await engine.close().catch(() => undefined)
    throw error
  }
}

/** runLocalServer runs a local server until it is stopped (idle timeout, SIGTERM, or `signal`). */
export async function runLocalServer(options: LocalServerOptions): Promise<void> {
  const handle = await startLocalServer(options)
  await handle.stopped
}

function writePointer(paths: LocalPaths, info: LocalServerInfo): void {
  const temporary = `${paths.pointerFile}.${process.pid}.tmp`
  writeFileSync(temporary, JSON.stringify(info) + '\n', { mode: 0o600 })
  renameSync(temporary, paths.pointerFile)
}

interface HandleParts {
  paths: LocalPaths
  info: LocalServerInfo
  store: LocalStore
  engine: Engine
  wire: WireServer
  idle: IdleTimer
  options: LocalServerOptions
}

function makeHandle(parts: HandleParts): LocalServerHandle {
  const { paths, info, store, engine, wire, idle, options } = parts
  let resolveStopped!: () => void
  const stopped = new Promise<void>((resolve) => (resolveStopped = resolve))
  let stopping: Promise<void> | undefined
  const onSignal = (signal: NodeJS.Signals): void => void handle.stop(signal)
  const onAbort = (): void => void handle.stop('aborted')
  const handle: LocalServerHandle = {
    info,
    store,
    stopped,
    stop(reason = 'stop') {
      stopping ??= (async () => {
        idle.cancel()
        process.off('SIGTERM', onSignal)
        process.off('SIGINT', onSignal)
        options.signal?.removeEventListener('abort', onAbort)
        // Stop listening first so no new client reaches a server that is going away; clients
        // already connected see the connection close and reconnect to the next server.
        await wire.close().catch(() => undefined)
        unlinkQuietly(paths.socketPath)
        if (readPointer(paths)?.serverId === info.serverId) unlinkQuietly(paths.pointerFile)
        try {
          await store.close()
          // The engine lock goes last: until here no other server can open DIR.
          await engine.close()
          serverLog(paths, `stop server=${info.serverId} reason=${reason} writes=${store.stats.writeRequests} batches=${store.stats.engineBatches}`)
        } catch (error) {
          serverLog(paths, `stop server=${info.serverId} reason=${reason} failed: ${(error as Error)?.message ?? String(error)}`)
        } finally {
          resolveStopped()
        }
      })()
      return stopping
    },
  }
  if (options.handleSignals !== false) {
    process.once('SIGTERM', onSignal)
    process.once('SIGINT', onSignal)
  }
  if (options.signal?.aborted) void handle.stop('aborted')
  else options.signal?.addEventListener('abort', onAbort, { once: true })
  return handle
}

/** IdleTimer fires once the server has had no connection for the idle timeout (0 = never). */
class IdleTimer {
  private timer: NodeJS.Timeout | undefined
  private count = 0
  private onIdle: (() => void) | undefined

  constructor(private readonly timeoutSeconds: number) {}

  /** arm starts watching; connection counts reported before it only update the count. */
  arm(onIdle: () => void): void {
    this.onIdle = onIdle
    this.connections(this.count)
  }

  connections(count: number): void {
    this.count = count
    if (this.onIdle === undefined || this.timeoutSeconds === 0) return
    if (count > 0) {
      clearTimeout(this.timer)
      this.timer = undefined
    } else if (this.timer === undefined) {
      this.timer = setTimeout(this.onIdle, this.timeoutSeconds * 1000)
    }
  }

  cancel(): void {
    this.onIdle = undefined
    clearTimeout(this.timer)
  }
}
