// The data commands of the real distkv binary against a local server in a temp directory:
// round trips through --db and --endpoint, stdin and @file values, binary data, scan output
// forms, batch, and the exit statuses 0 / 1 / 2.
import assert from 'node:assert/strict'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, describe, test } from 'node:test'
import { killPointedServer, runCli, startServer, type ServerProcess } from './helpers.js'

describe('distkv data commands', () => {
  let dir: string
  let server: ServerProcess
  const token = 'cli-test-token'
  const db = () => ['--db', dir]

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'distkv-cli-'))
    server = await startServer(dir, token)
  })
  after(async () => {
    await server.stop()
    killPointedServer(dir)
    await rm(dir, { recursive: true, force: true })
  })

  test('put, get, has, size, del round trip with exit statuses', async () => {
    assert.equal((await runCli(['put', 'greeting', 'hello world', ...db()])).code, 0)
    const got = await runCli(['get', 'greeting', ...db()])
    assert.equal(got.code, 0)
    assert.equal(got.stdout.toString(), 'hello world')
    assert.deepEqual(await runCli(['has', 'greeting', ...db()]), { code: 0, stdout: Buffer.from('true\n'), stderr: '' })
    assert.equal((await runCli(['size', 'greeting', ...db()])).stdout.toString(), '11\n')
    assert.equal((await runCli(['del', 'greeting', ...db()])).code, 0)
    const missing = await runCli(['get', 'greeting', ...db()])
    assert.equal(missing.code, 1)
    assert.equal(missing.stdout.length, 0)
    assert.equal(missing.stderr, '')
    assert.equal((await runCli(['has', 'greeting', ...db()])).code, 1)
    assert.equal((await runCli(['size', 'greeting', ...db()])).code, 1)
    assert.equal((await runCli(['del', 'greeting', ...db()])).code, 0, 'deleting an absent key succeeds')
  })

  test('binary values round-trip through stdin and @file unchanged', async () => {
    const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) % 256))
    assert.equal((await runCli(['put', 'bin-stdin', '-', ...db()], { input: binary })).code, 0)
    assert.deepEqual((await runCli(['get', 'bin-stdin', ...db()])).stdout, binary)
    const file = join(dir, 'value.bin')
    await writeFile(file, binary.subarray(0, 1000))
    assert.equal((await runCli(['put', 'bin-file', `@${file}`, ...db()])).code, 0)
    assert.deepEqual((await runCli(['get', 'bin-file', ...db()])).stdout, binary.subarray(0, 1000))
    assert.equal((await runCli(['get', 'bin-file', '--hex', ...db()])).stdout.toString(), binary.subarray(0, 1000).toString('hex') + '\n')
    assert.equal((await runCli(['put', 'empty', '-', ...db()], { input: '' })).code, 0)
    const empty = await runCli(['get', 'empty', ...db()])
    assert.equal(empty.code, 0)
    assert.equal(empty.stdout.length, 0)
  })

  test('binary keys by --key-encoding hex and base64', async () => {
    assert.equal((await runCli(['put', '00ff10', 'v', '--key-encoding', 'hex', ...db()])).code, 0)
    assert.equal((await runCli(['get', 'AP8Q', '--key-encoding', 'base64', ...db()])).stdout.toString(), 'v')
    const bad = await runCli(['get', 'zz', '--key-encoding', 'hex', ...db()])
    assert.equal(bad.code, 2)
    assert.match(bad.stderr, /^distkv: KV_ERR_INVALID: KEY is not hex/)
  })

  test('errors exit 2 with one line naming the KV_ERR code', async () => {
    const huge = Buffer.alloc(1024 * 1024 + 1, 1)
    const tooLarge = await runCli(['put', 'huge', '-', ...db()], { input: huge })
    assert.equal(tooLarge.code, 2)
    assert.match(tooLarge.stderr, /^distkv: KV_ERR_VALUE_TOO_LARGE: .*valueBytesMax/)
    assert.equal(tooLarge.stderr.split('\n').length, 2, 'one line')
    const noFile = await runCli(['put', 'k', '@/nonexistent/file', ...db()])
    assert.equal(noFile.code, 2)
    assert.match(noFile.stderr, /KV_ERR_INVALID: cannot read \/nonexistent\/file: ENOENT/)
    const both = await runCli(['get', 'k', ...db(), '--endpoint', server.endpoint])
    assert.match(both.stderr, /KV_ERR_INVALID: get: give exactly one of --db DIR or --endpoint/)
    const neither = await runCli(['get', 'k'])
    assert.equal(neither.code, 2)
    const extra = await runCli(['get', 'a', 'b', ...db()])
    assert.match(extra.stderr, /KV_ERR_INVALID: get: expected 1 argument/)
    const badLimit = await runCli(['scan', '--limit', 'ten', ...db()])
    assert.match(badLimit.stderr, /KV_ERR_INVALID: --limit must be an integer/)
  })

  test('--endpoint with a token from the flag or DISTKV_TOKEN; a wrong token is KV_ERR_AUTH', async () => {
    const endpoint = ['--endpoint', server.endpoint]
    assert.equal((await runCli(['put', 'remote', 'r1', ...endpoint, '--token', token])).code, 0)
    assert.equal((await runCli(['get', 'remote', ...endpoint], { env: { DISTKV_TOKEN: token } })).stdout.toString(), 'r1')
    assert.equal((await runCli(['get', 'remote', ...db()])).stdout.toString(), 'r1', 'same data through the Unix socket')
    const wrong = await runCli(['get', 'remote', ...endpoint, '--token', 'nope'])
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /^distkv: KV_ERR_AUTH: /)
    const unreachable = await runCli(['get', 'remote', '--endpoint', '127.0.0.1:1', '--timeout', '1'])
    assert.equal(unreachable.code, 2)
    assert.match(unreachable.stderr, /^distkv: KV_ERR_(UNAVAILABLE|TIMEOUT): /)
  })

  test('scan: ranges, prefix, reverse, limit, keys-only and the three output forms', async () => {
    const ops = ['s/a', 's/b', 's/c', 's/d'].map((key, i) => ({ type: 'put', key, value: `v${i}` }))
    ops.push({ type: 'put', key: 's/e\tx', value: 'tab\nnewline\\' })
    assert.equal((await runCli(['batch', ...db()], { input: JSON.stringify(ops) })).code, 0)
    assert.equal((await runCli(['put', '73ff', '-', '--key-encoding', 'hex', ...db()], { input: Buffer.from([0x00, 0xff]) })).code, 0)
    const lines = async (...args: string[]) => {
      const result = await runCli(['scan', ...args, ...db()])
      assert.equal(result.code, 0, result.stderr)
      return result.stdout.toString().trimEnd().split('\n')
    }
    assert.deepEqual(await lines('--prefix', 's/'), ['s/a\tv0', 's/b\tv1', 's/c\tv2', 's/d\tv3', 's/e\\tx\ttab\\nnewline\\\\'])
    assert.deepEqual(await lines('--gt', 's/a', '--lte', 's/c'), ['s/b\tv1', 's/c\tv2'])
    assert.deepEqual(await lines('--prefix', 's/', '--reverse', '--limit', '2', '--keys-only'), ['s/e\\tx', 's/d'])
    assert.deepEqual(await lines('--gte', 's/d', '--lt', 't', '--hex'), ['732f64\t7633', '732f650978\t7461620a6e65776c696e655c', '73ff\t00ff'])
    assert.deepEqual(await lines('--gte', 's/e', '--json'), [
      JSON.stringify({ key: 's/e\tx', value: 'tab\nnewline\\' }),
      JSON.stringify({ keyBase64: Buffer.from([0x73, 0xff]).toString('base64'), valueBase64: Buffer.from([0, 0xff]).toString('base64') }),
    ])
    assert.deepEqual(await lines('--gt', '73', '--key-encoding', 'hex', '--lt', '7330'), ['s/a\tv0', 's/b\tv1', 's/c\tv2', 's/d\tv3', 's/e\\tx\ttab\\nnewline\\\\'])
    assert.deepEqual(await lines('--gte', '73ff', '--key-encoding', 'hex'), ['s\\xff\t\\x00\\xff'])
  })

  test('batch from a file and stdin is atomic; a bad op applies nothing', async () => {
    const file = join(dir, 'ops.json')
    await writeFile(file, JSON.stringify({ ops: [{ type: 'put', key: 'b/1', value: 'one' }, { type: 'put', key: 'b/2', valueBase64: 'AAE=' }] }))
    assert.equal((await runCli(['batch', file, ...db()])).code, 0)
    const got = await runCli(['get', 'b/2', ...db()])
    assert.equal(got.code, 0, got.stderr)
    assert.deepEqual(got.stdout, Buffer.from([0, 1]))
    const bad = [{ type: 'del', key: 'b/1' }, { type: 'put', key: 'b/3' }]
    const rejected = await runCli(['batch', '-', ...db()], { input: JSON.stringify(bad) })
    assert.equal(rejected.code, 2)
    assert.match(rejected.stderr, /KV_ERR_INVALID: batch: ops\[1\] needs exactly one of "value"/)
    assert.equal((await runCli(['get', 'b/1', ...db()])).stdout.toString(), 'one', 'nothing applied')
    const notJson = await runCli(['batch', ...db()], { input: '{nope' })
    assert.match(notJson.stderr, /KV_ERR_INVALID: batch: input is not JSON/)
    const roundTrip = await runCli(['scan', '--prefix', 'b/', '--json', ...db()])
    const ops = roundTrip.stdout.toString().trim().split('\n').map((line) => ({ type: 'put', ...JSON.parse(line), key: `copy/${JSON.parse(line).key}` }))
    assert.equal((await runCli(['batch', ...db()], { input: JSON.stringify(ops) })).code, 0)
    assert.deepEqual((await runCli(['get', 'copy/b/2', ...db()])).stdout, Buffer.from([0, 1]))
  })
})
