/**
 * The local server on its own: socket permissions, idle exit leaving nothing stale, TCP only
 * with a token, the client registry, SIGTERM, a second server refusing to start, and
 * exactly-once replay of a request id across kill -9.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { connect, open } from '../../src/index.js'
import { ErrorCode } from '../../src/errors.js'
import { listClients, LocalMethod, startLocalServer, alreadyRunningExitCode } from '../../src/local/index.js'
import { localPaths } from '../../src/local/paths.js'
import { WireClient } from '../../src/wire/index.js'
import { alive, cleanup, makeTempDir, pointerPid, serverPids, waitFor } from './helpers.js'

const cli = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))

function assertNothingStale(dir: string, socketPath: string): void {
  assert.equal(existsSync(socketPath), false, 'socket file removed')
  assert.deepEqual(
    readdirSync(dir).filter((name) => name !== 'db' && name !== 'local-server.log'),
    [],
    'no pointer, lock or temporary file left in DIR',
  )
}

test('the socket is private, and an idle server exits leaving nothing stale', async () => {
  const dir = makeTempDir()
  try {
    const server = await startLocalServer({ dir, idleTimeoutSeconds: 1, handleSignals: false })
    const paths = localPaths(dir)
    assert.equal(statSync(paths.socketPath).mode & 0o777, 0o600)
    assert.equal(statSync(dirname(paths.socketPath)).mode & 0o777, 0o700)
    assert.ok(Buffer.byteLength(paths.socketPath) < 104)
    const db = await open(dir)
    await db.put('k', 'v')
    await db.close()
    await server.stopped
    assertNothingStale(paths.dir, paths.socketPath)
    assert.match(serverLogText(dir), /stop server=.* reason=idle/)
  } finally {
    await cleanup(dir)
  }
})

function serverLogText(dir: string): string {
  return readFileSync(join(dir, 'local-server.log'), 'utf8')
}

test('a very long DIR still gets a short socket path', async () => {
  const root = makeTempDir()
  const dir = join(root, 'a'.repeat(120), 'b'.repeat(120))
  try {
    const server = await startLocalServer({ dir, engine: 'memory', idleTimeoutSeconds: 0, handleSignals: false })
    assert.ok(Buffer.byteLength(server.info.socket) <= 103, server.info.socket)
    const db = await open(dir)
    await db.put('k', 'v')
    assert.equal((await db.get('k'))?.toString(), 'v')
    await db.close()
    await server.stop()
  } finally {
    await cleanup(root, [], [dir])
  }
})

test('TCP: refused at startup without a token; clients need the right token', async () => {
  const dir = makeTempDir()
  try {
    await assert.rejects(startLocalServer({ dir, port: 0, handleSignals: false }), { code: ErrorCode.INVALID, message: /without a token/ })
    const token = randomUUID()
    const server = await startLocalServer({ dir, port: 0, host: '127.0.0.1', token, idleTimeoutSeconds: 0, handleSignals: false })
    const endpoint = `127.0.0.1:${server.info.tcp!.port}`
    const remote = await connect(endpoint, { token, name: 'tcp-client' })
    await remote.put('over-tcp', 'yes')
    const local = await open(dir, { name: 'unix-client' })
    assert.equal((await local.get('over-tcp'))?.toString(), 'yes')
    await assert.rejects(connect(endpoint, { token: 'wrong' }), { code: ErrorCode.AUTH })
    await assert.rejects(connect(endpoint), { code: ErrorCode.AUTH })
    const clients = await listClients({ endpoint, token })
    assert.deepEqual(clients.map((c) => c.name).sort(), ['tcp-client', 'unix-client'])
    const tcpClient = clients.find((c) => c.name === 'tcp-client')!
    assert.equal(tcpClient.id, remote.clientId)
    assert.equal(tcpClient.pid, process.pid)
    assert.equal(tcpClient.transport, 'tcp')
    assert.ok(tcpClient.requests >= 1)
    assert.deepEqual((await listClients({ dir })).map((c) => c.id).sort(), [remote.clientId, local.clientId].sort())
    await remote.close()
    await local.close()
    await server.stop()
    assert.deepEqual(await listClients({ dir }), [])
  } finally {
    await cleanup(dir)
  }
})

test('distkv local-server: a second server for DIR refuses to start; SIGTERM stops cleanly', async () => {
  const dir = makeTempDir()
  try {
    const first = spawn(process.execPath, [cli, 'local-server', dir, '--idle-timeout', '0'], { stdio: 'ignore' })
    await waitFor(() => pointerPid(dir) === first.pid, 20_000, 'the server to start')
    const second = spawn(process.execPath, [cli, 'local-server', dir], { stdio: 'ignore' })
    assert.equal(await new Promise((resolve) => second.once('exit', resolve)), alreadyRunningExitCode)
    const exited = new Promise((resolve) => first.once('exit', resolve))
    first.kill('SIGTERM')
    assert.equal(await exited, 0)
    assertNothingStale(localPaths(dir).dir, localPaths(dir).socketPath)
    assert.deepEqual(serverPids(dir), [first.pid])
  } finally {
    await cleanup(dir)
  }
})

test('a request id applied before kill -9 is not applied again when re-sent to the next server', async () => {
  const dir = makeTempDir()
  try {
    const db = await open(dir, { idleTimeoutSeconds: 0 })
    const hello = { clientId: randomUUID(), name: 'replayer', pid: process.pid }
    const raw = await WireClient.connect({ path: localPaths(dir).socketPath }, hello)
    const replayed = randomUUID()
    await raw.request(LocalMethod.put, { key: Buffer.from('k'), value: Buffer.from('first'), sync: true }, { requestId: replayed })
    const pid = pointerPid(dir)!
    process.kill(pid, 'SIGKILL')
    await waitFor(() => !alive(pid) && raw.closed, 5_000, 'the server to die')
    await db.put('k', 'second') // the client starts the next server by itself
    assert.notEqual(pointerPid(dir), pid)
    const again = await WireClient.connect({ path: localPaths(dir).socketPath }, hello)
    await again.request(LocalMethod.put, { key: Buffer.from('k'), value: Buffer.from('first'), sync: true }, { requestId: replayed })
    assert.equal((await db.get('k'))?.toString(), 'second', 'the replayed put was answered, not applied')
    await again.request(LocalMethod.put, { key: Buffer.from('k'), value: Buffer.from('third'), sync: true }, { requestId: randomUUID() })
    assert.equal((await db.get('k'))?.toString(), 'third', 'a fresh id is applied')
    await again.close()
    await db.close()
  } finally {
    await cleanup(dir)
  }
})
