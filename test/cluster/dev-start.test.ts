// `distkv dev` start-up and shutdown with real processes and sockets: a node that cannot start
// exits with its error instead of hanging, the supervisor's errors name the node, what it waited
// for and the node's log, and no node outlives its supervisor (killed, or orphaned under npm).
// No timing thresholds: each wait is for an event (an exit, a line, a process gone); the test
// runner's timeout only turns a hang into a failure.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import { freeBlock, type ClusterFile } from './fixture.js'

const BIN = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
/** hangMs: the runner's timeout per test, turning a hang into a failure (not a performance bound). */
const hangMs = 120_000
/** waitMs: what `until` waits for one event before failing with its name, so `finally` still runs. */
const waitMs = hangMs - 20_000

/** run starts a process and collects its stdout and stderr. */
function run(command: string, args: string[]): { child: ChildProcess; out: { stdout: string; stderr: string }; exited: Promise<number | null>; closed: Promise<void> } {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  const out = { stdout: '', stderr: '' }
  child.stdout!.on('data', (chunk: Buffer) => (out.stdout += chunk.toString()))
  child.stderr!.on('data', (chunk: Buffer) => (out.stderr += chunk.toString()))
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  // 'close': the process exited and every process that shares its pipes closed them too.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
  return { child, out, exited, closed }
}

function holdPort(port: number): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(port, '127.0.0.1', () => resolve(server))
  })
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** until polls `check` every 100 ms until it holds; after waitMs it fails naming `what` (a hang). */
async function until(what: string, check: () => boolean): Promise<void> {
  const deadline = Date.now() + waitMs
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`still waiting for ${what} after ${waitMs} ms: hung`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

/** exitOf waits for a process to exit; after waitMs it kills it and fails (a hang). */
async function exitOf(p: { child: ChildProcess; exited: Promise<number | null> }, what: string): Promise<number | null> {
  let timer: NodeJS.Timeout | undefined
  const hung = new Promise<never>((_, reject) => (timer = setTimeout(() => {
    p.child.kill('SIGKILL')
    reject(new Error(`${what} did not exit within ${waitMs} ms: hung`))
  }, waitMs)))
  try {
    return await Promise.race([p.exited, hung])
  } finally {
    clearTimeout(timer)
  }
}

function devArgs(dir: string, port: number, extra: string[] = []): string[] {
  return [BIN, 'dev', '--dir', dir, '--port', String(port), '--nodes', '1', '--shards', '1', '--replicas', '1', '--tick-ms', '20', ...extra]
}

function killAll(pids: number[]): void {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL')
    } catch {
      // gone
    }
  }
}

for (const taken of ['http', 'raft'] as const) {
  test(`distkv server whose ${taken} address is taken exits with the error (it kept its other listeners open and hung)`, { timeout: hangMs }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'distkv-devstart-'))
    const base = await freeBlock(1)
    const ports = { http: base, rpc: base + 1, raft: base + 2 }
    const blocker = await holdPort(ports[taken])
    try {
      const server = run(process.execPath, [BIN, 'server', '--id', '1', '--token', 'a-cluster-token', '--rpc', `127.0.0.1:${ports.rpc}`, '--http', `127.0.0.1:${ports.http}`,
        '--data-dir', join(dir, 'node-1'), '--members', `1@127.0.0.1:${ports.rpc}/${ports.raft}`, '--shards', '1', '--replicas', '1'])
      assert.equal(await exitOf(server, 'distkv server'), 2, server.out.stderr)
      assert.match(server.out.stderr, new RegExp(`EADDRINUSE.*127\\.0\\.0\\.1:${ports[taken]}`))
      assert.match(server.out.stderr, /start-up failed; closing what was opened/)
      assert.doesNotMatch(server.out.stdout, /ready/)
    } finally {
      blocker.close()
      rmSync(dir, { recursive: true, force: true })
    }
  })
}

test('distkv dev with a port of its layout taken fails before starting anything, naming the node, role and address', { timeout: hangMs }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-devstart-'))
  const base = await freeBlock(2)
  const blocker = await holdPort(base + 11) // node 2's rpc
  try {
    const dev = run(process.execPath, [...devArgs(dir, base), '--nodes', '2'])
    assert.equal(await exitOf(dev, 'distkv dev'), 2)
    assert.match(dev.out.stderr, new RegExp(`node 2 cannot start: its rpc address 127\\.0\\.0\\.1:${base + 11} is in use`))
    assert.equal(existsSync(join(dir, 'node-1.log')), false, 'no node was launched')
    assert.equal(existsSync(join(dir, 'dev.pid')), false, 'the directory was released')
  } finally {
    blocker.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('distkv dev whose node exits during start-up names the node, how it ended and the last line of its log, and restarts nothing', { timeout: hangMs }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-devstart-'))
  // Another process holds node 2's data directory: its node exits at once with the lock error.
  const holder = new RocksDbEngine({ dir: join(dir, 'node-2', 'db') })
  await holder.open()
  try {
    const dev = run(process.execPath, [...devArgs(dir, await freeBlock(2)), '--nodes', '2'])
    assert.equal(await exitOf(dev, 'distkv dev'), 2)
    const log = join(dir, 'node-2.log')
    assert.match(dev.out.stderr, /node 2 \(pid \d+\) exited with code 2 \d+ ms after launch, before printing its ready line/)
    assert.ok(dev.out.stderr.includes(`last line of its log ${log}: distkv: KV_ERR_UNAVAILABLE: open: database directory is locked`), dev.out.stderr)
    assert.doesNotMatch(dev.out.stderr, /restarting/)
    assert.equal(existsSync(join(dir, 'dev.pid')), false)
  } finally {
    await holder.close()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('nodes stop by themselves when their supervisor is killed with SIGKILL (stdin lifeline)', { timeout: hangMs }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-devstart-'))
  const dev = run(process.execPath, devArgs(dir, await freeBlock(1)))
  let pids: number[] = []
  try {
    await until('the banner', () => dev.out.stdout.includes('Ctrl-C stops the cluster.') || dev.child.exitCode !== null)
    assert.match(dev.out.stdout, /Ctrl-C stops the cluster\./, dev.out.stderr)
    pids = (JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile).nodes.map((n) => n.pid!)
    dev.child.kill('SIGKILL')
    await dev.exited
    await until('the nodes to exit', () => !pids.some(alive))
    assert.match(readFileSync(join(dir, 'node-1.log'), 'utf8'), /stdin ended \(its supervisor is gone\); stopping/)
  } finally {
    dev.child.kill('SIGKILL')
    killAll(pids)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('distkv dev --exit-with-parent stops its cluster when its parent shell dies on SIGTERM (npm start), and a second dev on its DIR is refused', { timeout: hangMs }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-devstart-'))
  const port = await freeBlock(1)
  // `; exit` keeps sh from exec-ing node: sh stays the parent, as npm's `sh -c` does.
  const quoted = devArgs(dir, port, ['--exit-with-parent']).map((a) => `'${a}'`).join(' ')
  const shell = run('/bin/sh', ['-c', `'${process.execPath}' ${quoted}; exit $?`])
  let pids: number[] = []
  let supervisor = 0
  try {
    await until('the banner', () => shell.out.stdout.includes('Ctrl-C stops the cluster.') || shell.child.exitCode !== null)
    assert.match(shell.out.stdout, /Ctrl-C stops the cluster\./, shell.out.stderr)
    pids = (JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as ClusterFile).nodes.map((n) => n.pid!)
    supervisor = Number(readFileSync(join(dir, 'dev.pid'), 'utf8'))
    const second = run(process.execPath, devArgs(dir, port + 100))
    assert.equal(await exitOf(second, 'the second distkv dev'), 2)
    assert.match(second.out.stderr, new RegExp(`is in use by a running distkv dev \\(pid ${supervisor}`))
    assert.ok(existsSync(join(dir, 'cluster.json')), 'the refused start left the running cluster\'s file alone')
    shell.child.kill('SIGTERM')
    await until('the supervisor and its nodes to exit', () => !alive(supervisor) && !pids.some(alive))
    await shell.closed // the supervisor shared the shell's pipes: everything it wrote has been read
    assert.match(shell.out.stderr, /the parent process \(pid \d+\) is gone; stopping the cluster/)
    assert.equal(existsSync(join(dir, 'dev.pid')), false)
  } finally {
    shell.child.kill('SIGKILL')
    killAll([supervisor, ...pids].filter((p) => p > 0))
    rmSync(dir, { recursive: true, force: true })
  }
})
