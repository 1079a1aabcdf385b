/**
 * Auto-start: what `open(dir)` does when no server answers for DIR. The opener takes the spawn
 * lock (a file created with O_EXCL holding its pid), checks again, starts
 * `node bin/distkv.js local-server DIR` detached, and waits until the socket answers.
 *
 * Race model: N openers at once. The spawn lock lets one of them start a server while the
 * others poll the socket. A lock whose holder died is broken by renaming it away. NB: two
 * openers that break the same stale lock at once may both believe they hold it and both
 * spawn a server; that is still safe, because a server only serves after taking the engine's
 * OS lock, and the loser exits with `alreadyRunningExitCode` without touching anything.
 */
import { randomUUID } from 'node:crypto'
import { spawn } from 'node:child_process'
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs'
import { dirname, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { ErrorCode, KvError } from '../errors.js'
import { probeSocket, processAlive, readPointer, sleep } from './discovery.js'
import { localPaths, type LocalPaths } from './paths.js'

/** alreadyRunningExitCode: a `local-server` process exits with it when DIR already has a server. */
export const alreadyRunningExitCode = 3

/** spawnLockStaleMs: a spawn lock older than this is stale even if its holder lives (a hung opener). */
export const spawnLockStaleMs = 30_000

/** LaunchOptions are passed to a server this opener starts. */
export interface LaunchOptions {
  engine?: 'rocksdb' | 'leveldb'
  idleTimeoutSeconds?: number
  /** deadline: epoch ms after which ensureServer gives up with KV_ERR_TIMEOUT. */
  deadline: number
}

const cliPath = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))

/** findLiveSocket returns the socket of a server answering for DIR, if any. */
export async function findLiveSocket(paths: LocalPaths): Promise<string | undefined> {
  const pointer = readPointer(paths)
  const candidates = pointer && pointer.socket !== paths.socketPath ? [pointer.socket, paths.socketPath] : [paths.socketPath]
  for (const socket of candidates) if (await probeSocket(socket)) return socket
  return undefined
}

/** ensureServer returns the socket of DIR's server, starting one if none answers. */
export async function ensureServer(dir: string, options: LaunchOptions): Promise<string> {
  const paths = localPaths(makeDatabaseDir(dir))
  let backoffMs = 10
  for (;;) {
    const live = await findLiveSocket(paths)
    if (live !== undefined) return live
    if (Date.now() >= options.deadline) {
      throw new KvError(ErrorCode.TIMEOUT, `no local server for ${paths.dir} became ready before the request timeout`)
    }
    if (tryLock(paths.spawnLock)) {
      try {
        if ((await findLiveSocket(paths)) === undefined) await spawnAndWait(paths, options)
      } finally {
        unlinkQuietly(paths.spawnLock)
      }
      continue
    }
    breakStaleLock(paths.spawnLock)
    await sleep(backoffMs + Math.random() * backoffMs)
    backoffMs = Math.min(backoffMs * 2, 200)
  }
}

/** makeDatabaseDir creates DIR (and its parents) if needed, turning file-system errors into KV_ERR_INVALID. */
export function makeDatabaseDir(dir: string): string {
  try {
    makeDirectories(dir)
  } catch (error) {
    throw new KvError(ErrorCode.INVALID, `cannot use ${dir} as a database directory: ${(error as Error).message}`, {
      errno: (error as NodeJS.ErrnoException).code,
    })
  }
  return dir
}

/**
 * makeDirectories creates `dir` and its missing parents one level at a time.
 * NB: Node 20's `mkdirSync(dir, { recursive: true })` never returns for some paths under
 * /proc (it keeps retrying a parent that reports ENOENT), so the walk is done here.
 */
function makeDirectories(dir: string): void {
  const missing: string[] = []
  for (let current = resolve(dir); !existsSync(current); current = dirname(current)) {
    missing.push(current)
    if (dirname(current) === current) break
  }
  for (const path of missing.reverse()) {
    try {
      mkdirSync(path)
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error
    }
  }
}

function tryLock(path: string): boolean {
  let fd: number
  try {
    fd = openSync(path, 'wx', 0o600)
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false
    throw error
  }
  try {
    writeSync(fd, `${process.pid} ${Date.now()}\n`)
  } finally {
    closeSync(fd)
  }
  return true
}

function breakStaleLock(path: string): void {
  let content: string
  try {
    content = readFileSync(path, 'utf8')
  } catch {
    return
  }
  const [pidText, sinceText] = content.trim().split(' ')
  const pid = Number(pidText)
  const since = Number(sinceText)
  // An empty file is a lock whose holder has not written its pid yet: not stale unless old.
  const holderDead = content.length > 0 && !processAlive(pid)
  const tooOld = Number.isFinite(since) && since > 0 && Date.now() - since > spawnLockStaleMs
  if (!holderDead && !tooOld) return
  const aside = `${path}.stale-${randomUUID()}`
  try {
    renameSync(path, aside)
    unlinkSync(aside)
  } catch {
    // another opener broke it first
  }
}

function unlinkQuietly(path: string): void {
  try {
    unlinkSync(path)
  } catch {
    // already gone
  }
}

async function spawnAndWait(paths: LocalPaths, options: LaunchOptions): Promise<void> {
  const args = [cliPath, 'local-server', paths.dir]
  if (options.idleTimeoutSeconds !== undefined) args.push('--idle-timeout', String(options.idleTimeoutSeconds))
  if (options.engine !== undefined) args.push('--engine', options.engine)
  const child = spawn(process.execPath, args, { detached: true, stdio: 'ignore' })
  child.unref()
  let exitCode: number | null | undefined
  let spawnError: Error | undefined
  child.once('exit', (code) => (exitCode = code))
  child.once('error', (error) => (spawnError = error))
  let waitMs = 10
  while (Date.now() < options.deadline) {
    if (await probeSocket(paths.socketPath)) return
    if (spawnError !== undefined) throw new KvError(ErrorCode.UNAVAILABLE, `cannot start the local server: ${spawnError.message}`)
    if (exitCode !== undefined) {
      if (exitCode === alreadyRunningExitCode || exitCode === 0) return
      throw new KvError(ErrorCode.UNAVAILABLE, `the local server for ${paths.dir} exited with status ${exitCode}: ${lastLogLine(paths)}`, {
        exitCode,
      })
    }
    await sleep(waitMs)
    waitMs = Math.min(waitMs * 2, 100)
  }
}

function lastLogLine(paths: LocalPaths): string {
  try {
    const lines = readFileSync(paths.logFile, 'utf8').trimEnd().split('\n')
    return lines[lines.length - 1] ?? '(empty log)'
  } catch {
    return `(no log at ${paths.logFile})`
  }
}
