/**
 * `distkv upload` / `distkv download` as real processes, through the client library (--db)
 * and through the HTTP API of `distkv local-server DIR --http` (--endpoint http://...), and
 * the local server's HTTP option itself (serves, stops cleanly on SIGTERM).
 */
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { cleanup, makeTempDir } from '../local/helpers.js'

const bin = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
let root: string
let db: string
let source: string

before(() => {
  root = makeTempDir('distkv-files-cli-')
  db = join(root, 'db')
  source = join(root, 'photos')
  mkdirSync(join(source, 'trip 2024'), { recursive: true })
  writeFileSync(join(source, 'a.png'), randomBytes(3000))
  writeFileSync(join(source, 'trip 2024', 'b.jpg'), randomBytes(2 * 1024 * 1024 + 3))
  writeFileSync(join(source, 'notes.txt'), 'hello')
})

after(async () => {
  await cleanup(root, [], [db, join(root, 'db2')])
})

function run(args: string[], cwd = root): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd, env: { ...process.env, DISTKV_TOKEN: '' } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (part: Buffer) => (stdout += part))
    child.stderr.on('data', (part: Buffer) => (stderr += part))
    child.on('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }))
  })
}

test('upload a directory and a file with --db, then download them byte for byte', async () => {
  const up = await run(['upload', source, '--db', db])
  assert.equal(up.code, 0, up.stderr)
  assert.match(up.stderr, /photos\/trip 2024\/b\.jpg {2}2\.0 MiB {2}image\/jpeg/)
  assert.equal((await run(['upload', join(source, 'notes.txt'), 'docs/readme.txt', '--db', db])).code, 0)
  const out = join(root, 'out')
  mkdirSync(out)
  const down = await run(['download', 'photos/trip 2024/b.jpg', '--db', db], out)
  assert.equal(down.code, 0, down.stderr)
  assert.deepEqual(readFileSync(join(out, 'b.jpg')), readFileSync(join(source, 'trip 2024', 'b.jpg')))
  const stdout = await run(['download', 'docs/readme.txt', '-', '--db', db])
  assert.equal(stdout.stdout, 'hello')
  const missing = await run(['download', 'no/such', join(out, 'x'), '--db', db])
  assert.equal(missing.code, 1)
  assert.match(missing.stderr, /KV_ERR_NOT_FOUND/)
  assert.deepEqual(readdirSync(out), ['b.jpg'])
  const dots = await run(['download', 'docs/..', '--db', db], out)
  assert.equal(dots.code, 2)
  assert.match(dots.stderr, /KV_ERR_INVALID/)
})

test('local-server --http serves the API; upload and download go through it with --endpoint http://', async () => {
  const dir = join(root, 'db2')
  const server: ChildProcess = spawn(process.execPath, [bin, 'local-server', dir, '--http', '127.0.0.1:0', '--idle-timeout', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise<number | null>((resolve) => server.once('exit', resolve))
  try {
    const line = await new Promise<string>((resolve) => createInterface({ input: server.stdout! }).once('line', resolve))
    const url = /at (http:\/\/[^ ]+)\/$/.exec(line)![1]!
    assert.equal((await fetch(`${url}/healthz`)).status, 200)
    const up = await run(['upload', join(source, 'a.png'), 'pics/a.png', '--endpoint', url])
    assert.equal(up.code, 0, up.stderr)
    const info = (await (await fetch(`${url}/v1/files?prefix=pics/`)).json()) as { items: Array<{ name: string; contentType: string }> }
    assert.deepEqual(info.items.map((item) => [item.name, item.contentType]), [['pics/a.png', 'image/png']])
    const target = join(root, 'a-copy.png')
    assert.equal((await run(['download', 'pics/a.png', target, '--endpoint', url])).code, 0)
    assert.deepEqual(readFileSync(target), readFileSync(join(source, 'a.png')))
    assert.equal((await run(['download', 'pics/none.png', target, '--endpoint', url])).code, 1)
  } finally {
    server.kill('SIGTERM')
  }
  assert.equal(await exited, 0)
})
