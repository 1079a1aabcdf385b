// upload/download through the real binary: a multi-chunk binary file round-trips byte for byte
// to a file and to stdout, and a missing file exits 1.
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { killPointedServer, runCli, startServer } from './helpers.js'

test('upload and download round-trip a multi-chunk file through --db', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'distkv-cli-files-'))
  const server = await startServer(dir, 'tok')
  try {
    const content = randomBytes(2.5 * 1024 * 1024)
    const source = join(dir, 'photo.bin')
    await writeFile(source, content)
    const up = await runCli(['upload', source, 'pics/photo.bin', '--db', dir])
    assert.equal(up.code, 0, up.stderr)
    const copy = join(dir, 'copy.bin')
    const down = await runCli(['download', 'pics/photo.bin', copy, '--db', dir])
    assert.equal(down.code, 0, down.stderr)
    assert.ok((await readFile(copy)).equals(content))
    const piped = await runCli(['download', 'pics/photo.bin', '-', '--db', dir])
    assert.equal(piped.code, 0, piped.stderr)
    assert.ok(piped.stdout.equals(content))
    const missing = await runCli(['download', 'pics/none.bin', join(dir, 'none'), '--db', dir])
    assert.equal(missing.code, 1)
  } finally {
    await server.stop()
    killPointedServer(dir)
    await rm(dir, { recursive: true, force: true })
  }
})
