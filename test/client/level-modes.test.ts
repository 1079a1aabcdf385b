// DistLevel on its two public locations: a directory (open(), auto-starting a real server
// process) and { endpoint, token } (connect() to a local server's TCP listener).
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode } from '../../src/errors.js'
import { DistLevel } from '../../src/client/level.js'
import { startLocalServer } from '../../src/local/index.js'
import { killServers } from '../local/helpers.js'

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'distkv-level-modes-'))
}

test('new DistLevel(dir) starts the directory server, keeps data across reopen, and reads ranges', async () => {
  const dir = tempDir()
  const db = new DistLevel<string, string>(dir, { open: { idleTimeoutSeconds: 5 } })
  try {
    await db.open()
    const serverPid = (db.kv as unknown as { serverInfo?: { pid?: number } }).serverInfo?.pid
    assert.equal(typeof serverPid, 'number')
    assert.notEqual(serverPid, process.pid)
    await db.batch([
      { type: 'put', key: 'a', value: '1' },
      { type: 'put', key: 'b', value: '2' },
      { type: 'put', key: 'c', value: '3' },
    ])
    await db.put('d', '4', { sync: false } as never) // passed through to DistKV.put
    await db.del('c')
    assert.equal(await db.get('a'), '1')
    assert.deepEqual(await db.getMany(['a', 'c', 'd']), ['1', undefined, '4'])
    assert.deepEqual(await db.keys({ gt: 'a', reverse: true }).all(), ['d', 'b'])
    assert.deepEqual(await db.iterator({ limit: 2 }).all(), [['a', '1'], ['b', '2']])
    const it = db.iterator()
    it.seek('b')
    assert.deepEqual(await it.next(), ['b', '2'])
    await it.close()
    await db.close()
    await db.open()
    assert.equal(await db.get('d'), '4')
    await db.clear({ lt: 'c' })
    assert.deepEqual(await db.keys().all(), ['d'])
  } finally {
    await db.close()
    // The server outlives its last client for idleTimeoutSeconds: stop it and wait for it to
    // exit before removing its directory, or RocksDB may still be writing files into it.
    await killServers(dir)
    rmSync(dir, { recursive: true, force: true })
  }
})

test('new DistLevel({ endpoint, token }) reaches a server over TCP; a wrong token is refused', async () => {
  const dir = tempDir()
  const server = await startLocalServer({ dir, engine: 'memory', host: '127.0.0.1', port: 0, token: 'sesame', idleTimeoutSeconds: 0, handleSignals: false })
  try {
    const endpoint = `${server.info.tcp!.host}:${server.info.tcp!.port}`
    const db = new DistLevel<string, string>({ endpoint, token: 'sesame' }, { valueEncoding: 'json' })
    await db.put('k', { n: 1 } as never)
    assert.deepEqual(await db.get('k'), { n: 1 })
    await db.close()
    const wrong = new DistLevel({ endpoint, token: 'nope', requestTimeoutMs: 2000 })
    await assert.rejects(wrong.open(), (error: Error & { cause?: { code?: string } }) => error.cause?.code === ErrorCode.AUTH)
  } finally {
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
})

test('a bad location is refused with KV_ERR_INVALID', () => {
  assert.throws(() => new DistLevel('' as string), { code: ErrorCode.INVALID })
  assert.throws(() => new DistLevel({} as never), { code: ErrorCode.INVALID })
})
