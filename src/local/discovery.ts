/**
 * How servers and openers find out whether a directory already has a live server: the
 * pointer file (advisory, may be stale after kill -9), a connect probe on the socket (live
 * only while a server listens), and the engine's OS-level lock (the authority: held exactly
 * as long as the owning process lives).
 */
import { readFileSync } from 'node:fs'
import { connect } from 'node:net'
import type { Engine } from '../engine/engine.js'
import { ErrorCode, KvError } from '../errors.js'
import type { LocalPaths } from './paths.js'

/** ServerPointer is the content of DIR/local-server.json. */
export interface ServerPointer {
  serverId: string
  pid: number
  version: number
  engine: string
  dir: string
  socket: string
  startedAt: number
  tcp?: { host: string; port: number }
}

/** engineLockWaitMs: how long a new server waits for a previous owner of the engine to let go. */
export const engineLockWaitMs = 5_000

/** readPointer reads the pointer file, or undefined when it is missing or unreadable. */
export function readPointer(paths: LocalPaths): ServerPointer | undefined {
  try {
    const parsed = JSON.parse(readFileSync(paths.pointerFile, 'utf8')) as ServerPointer
    return typeof parsed?.socket === 'string' && typeof parsed.pid === 'number' ? parsed : undefined
  } catch {
    return undefined
  }
}

/** probeSocket tells whether something accepts connections on a Unix socket path. */
export function probeSocket(path: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path })
    const finish = (live: boolean): void => {
      clearTimeout(timer)
      socket.destroy()
      resolve(live)
    }
    const timer = setTimeout(() => finish(false), timeoutMs)
    socket.once('connect', () => finish(true))
    socket.once('error', () => finish(false))
  })
}

/** processAlive tells whether a pid names a running process (of any user). */
export function processAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'
  }
}

/** sleep waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/**
 * openEngineExclusive opens the engine, whose lock makes this process DIR's only server. If the
 * lock is held and a server answers on the socket, it fails with `alreadyRunning`; if nobody
 * answers, the holder is a server shutting down (or still starting), so it retries for a while.
 */
export async function openEngineExclusive(engine: Engine, paths: LocalPaths): Promise<void> {
  const deadline = Date.now() + engineLockWaitMs
  for (;;) {
    try {
      await engine.open()
      return
    } catch (error) {
      if (await probeSocket(paths.socketPath)) {
        throw new KvError(ErrorCode.UNAVAILABLE, `a local server already runs for ${paths.dir}`, { alreadyRunning: true })
      }
      if (Date.now() >= deadline) {
        throw new KvError(ErrorCode.UNAVAILABLE, `cannot open the engine in ${paths.engineDir} within engineLockWaitMs (${engineLockWaitMs}): ${(error as Error).message}`, {
          engineLockWaitMs,
        })
      }
      await sleep(50)
    }
  }
}
