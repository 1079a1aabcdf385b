/**
 * Runs every script in examples/ as its own process against a fresh directory, so the
 * examples shown to users keep working.
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { fileURLToPath } from 'node:url'
import { cleanup, makeTempDir } from '../local/helpers.js'

const run = promisify(execFile)
const dirs: string[] = []

after(async () => {
  for (const dir of dirs) await cleanup(dir)
})

async function example(name: string): Promise<string> {
  const dir = makeTempDir(`distkv-example-${name}-`)
  dirs.push(dir)
  const script = fileURLToPath(new URL(`../../examples/${name}.js`, import.meta.url))
  const { stdout } = await run(process.execPath, [script, dir], { timeout: 30_000 })
  return stdout
}

test('examples/kv: puts, an atomic batch, a get and a prefix query', async () => {
  const out = await example('kv')
  assert.match(out, /user:1 is Ada/)
  assert.match(out, /user:2 exists: false/)
  assert.match(out, /user:3 = \{"name":"Linus","lang":"fi"\}/)
})

test('examples/images: an image uploaded, downloaded, listed and deleted through the library', async () => {
  const out = await example('images')
  assert.match(out, /stored images\/icon\.svg: \d+ bytes, image\/svg\+xml, etag "[0-9a-f]{32}"/)
  assert.match(out, /downloaded to .*copy-icon\.svg: \d+ bytes/)
  assert.match(out, /files under images\/: images\/icon\.svg/)
  assert.match(out, /still there: false/)
})

test('examples/http: the HTTP API with fetch (key, file, 304, Range)', async () => {
  const out = await example('http')
  assert.match(out, /GET \/v1\/kv\/greeting -> hello over HTTP/)
  assert.match(out, /GET with If-None-Match -> 304/)
  assert.match(out, /GET with Range: bytes=2-6 -> 206 'small'/)
})
