/**
 * Test helpers for local mode: temp directories, worker processes, and finding and killing
 * the servers a test caused to start (every server logs its pid to DIR/local-server.log).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { localPaths } from '../../src/local/paths.js'

/** workerPath is the compiled worker fixture. */
export const workerPath = fileURLToPath(new URL('./fixtures/worker.js', import.meta.url))

/** makeTempDir creates a fresh directory under the OS temp directory. */
export function makeTempDir(prefix = 'distkv-local-'): string {
  return mkdtempSync(join(tmpdir(), prefix))
}

/** serverPids lists the pid of every server that ever started in DIR, in start order. */
export function serverPids(dir: string): number[] {
  let log = ''
  try {
    log = readFileSync(join(dir, 'local-server.log'), 'utf8')
  } catch {
    return []
  }
  return log
    .split('\n')
    .filter((line) => / start server=/.test(line))
    .map((line) => Number(/pid=(\d+)/.exec(line)![1]))
}

/** pointerPid is the pid in DIR's pointer file, if any. */
export function pointerPid(dir: string): number | undefined {
  try {
    return JSON.parse(readFileSync(join(dir, 'local-server.json'), 'utf8')).pid as number
  } catch {
    return undefined
  }
}

/** alive tells whether a process exists. */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** sleep waits `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** waitFor polls `condition` until it holds, failing after `timeoutMs`. */
export async function waitFor(condition: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await sleep(20)
  }
}

/** killServers SIGKILLs every server DIR's log names that still runs, and waits for them to go. */
export async function killServers(dir: string): Promise<void> {
  // A server run in-process by the test logs the test's own pid: never kill ourselves.
  const pids = serverPids(dir).filter((pid) => pid !== process.pid && alive(pid))
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }
  await waitFor(() => pids.every((pid) => !alive(pid)), 10_000, 'servers to exit')
}

/** Worker is a running worker fixture process with its stdout lines. */
export interface Worker {
  child: ChildProcess
  lines: string[]
  exited: Promise<number | null>
}

/** startWorker runs the worker fixture with `args`. */
export function startWorker(args: string[]): Worker {
  const child = spawn(process.execPath, [workerPath, ...args], { stdio: ['ignore', 'pipe', 'inherit'] })
  const lines: string[] = []
  let partial = ''
  child.stdout!.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString('utf8')).split('\n')
    partial = parts.pop()!
    lines.push(...parts)
  })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  return { child, lines, exited }
}

/** cleanup kills workers and the servers of `dbDirs` (default: `root` itself), removes their sockets, and removes `root`. */
export async function cleanup(root: string, workers: Worker[] = [], dbDirs: string[] = [root]): Promise<void> {
  for (const worker of workers) if (worker.child.exitCode === null) worker.child.kill('SIGKILL')
  await Promise.all(workers.map((worker) => worker.exited))
  for (const dir of dbDirs) {
    await killServers(dir)
    // A killed server cannot remove its socket; the next server for DIR would, but there is none.
    try {
      rmSync(localPaths(dir).socketPath, { force: true })
    } catch {
      // DIR was never created
    }
  }
  rmSync(root, { recursive: true, force: true })
}
