/**
 * Helpers for the CLI tests: run the real bin/distkv.js as a child process, and run a local
 * server for a temporary directory that the test (not an idle timer) stops.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

/** binPath is the launcher users run. */
export const binPath = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))

/** Result of one distkv run. */
export interface RunResult {
  code: number | null
  stdout: Buffer
  stderr: string
}

/** runCli runs `distkv ARGS`, feeding `input` to stdin, and collects everything it writes. */
export function runCli(args: string[], options: { input?: Buffer | string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [binPath, ...args], { env: { ...process.env, DISTKV_TOKEN: '', ...options.env }, stdio: 'pipe' })
    const stdout: Buffer[] = []
    const stderr: Buffer[] = []
    child.stdout.on('data', (chunk: Buffer) => stdout.push(chunk))
    child.stderr.on('data', (chunk: Buffer) => stderr.push(chunk))
    child.on('error', reject)
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(stdout), stderr: Buffer.concat(stderr).toString('utf8') }))
    child.stdin.on('error', () => undefined)
    child.stdin.end(options.input ?? '')
  })
}

/** ServerProcess is a `distkv local-server` child started by a test. */
export interface ServerProcess {
  child: ChildProcess
  endpoint: string
  stop(): Promise<void>
}

/** startServer runs `distkv local-server DIR --idle-timeout 0 --port 0 --token TOKEN` and waits until it listens. */
export async function startServer(dir: string, token: string): Promise<ServerProcess> {
  const child = spawn(process.execPath, [binPath, 'local-server', dir, '--idle-timeout', '0', '--port', '0', '--token', token], { stdio: 'ignore' })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const pointer = join(dir, 'local-server.json')
  for (let attempt = 0; attempt < 200; attempt++) {
    try {
      const info = JSON.parse(readFileSync(pointer, 'utf8')) as { pid: number; tcp?: { host: string; port: number } }
      if (info.pid === child.pid && info.tcp !== undefined) {
        return {
          child,
          endpoint: `${info.tcp.host}:${info.tcp.port}`,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
            await exited
          },
        }
      }
    } catch {
      // not written yet
    }
    if (child.exitCode !== null) throw new Error(`local-server exited with ${child.exitCode}`)
    await new Promise((resolve) => setTimeout(resolve, 25))
  }
  child.kill('SIGKILL')
  throw new Error('local-server did not start')
}

/** killPointedServer kills whatever server DIR's pointer file names (one auto-started by open()). */
export function killPointedServer(dir: string): void {
  try {
    const { pid } = JSON.parse(readFileSync(join(dir, 'local-server.json'), 'utf8')) as { pid: number }
    process.kill(pid, 'SIGKILL')
  } catch {
    // no server, or already gone
  }
}
