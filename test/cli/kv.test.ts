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

  // Invocations that do not depend on each other run concurrently: each costs a Node start.
  test('put, get, has, size, del round trip with exit statuses', async () => {
    assert.equal((await runCli(['put', 'greeting', 'hello world', ...db()])).code, 0)
    const [got, has, size] = await Promise.all([runCli(['get', 'greeting', ...db()]), runCli(['has', 'greeting', ...db()]), runCli(['size', 'greeting', ...db()])])
    assert.equal(got.code, 0, got.stderr)
    assert.equal(got.stdout.toString(), 'hello world')
    assert.deepEqual(has, { code: 0, stdout: Buffer.from('true\n'), stderr: '' })
    assert.equal(size.stdout.toString(), '11\n')
    assert.equal((await runCli(['del', 'greeting', ...db()])).code, 0)
    const [missing, hasNot, noSize, delAgain] = await Promise.all([
      runCli(['get', 'greeting', ...db()]),
      runCli(['has', 'greeting', ...db()]),
      runCli(['size', 'greeting', ...db()]),
      runCli(['del', 'greeting', ...db()]),
    ])
    assert.deepEqual(missing, { code: 1, stdout: Buffer.alloc(0), stderr: '' })
    assert.deepEqual([hasNot.code, hasNot.stdout.toString()], [1, 'false\n'])
    assert.deepEqual([noSize.code, noSize.stdout.length], [1, 0])
    assert.equal(delAgain.code, 0, 'deleting an absent key succeeds')
  })

  test('binary values round-trip through stdin and @file unchanged; binary keys by --key-encoding', async () => {
    const binary = Buffer.from(Array.from({ length: 70_000 }, (_, i) => (i * 31 + 7) % 256))
    const file = join(dir, 'value.bin')
    await writeFile(file, binary.subarray(0, 1000))
    const puts = await Promise.all([
      runCli(['put', 'bin-stdin', '-', ...db()], { input: binary }),
      runCli(['put', 'bin-file', `@${file}`, ...db()]),
      runCli(['put', 'empty', '-', ...db()], { input: '' }),
      runCli(['put', '00ff10', 'v', '--key-encoding', 'hex', ...db()]),
    ])
    for (const put of puts) assert.equal(put.code, 0, put.stderr)
    const [fromStdin, fromFile, hex, empty, byBase64, badHex] = await Promise.all([
      runCli(['get', 'bin-stdin', ...db()]),
      runCli(['get', 'bin-file', ...db()]),
      runCli(['get', 'bin-file', '--hex', ...db()]),
      runCli(['get', 'empty', ...db()]),
      runCli(['get', 'AP8Q', '--key-encoding', 'base64', ...db()]),
      runCli(['get', 'zz', '--key-encoding', 'hex', ...db()]),
    ])
    assert.deepEqual(fromStdin.stdout, binary)
    assert.deepEqual(fromFile.stdout, binary.subarray(0, 1000))
    assert.equal(hex.stdout.toString(), binary.subarray(0, 1000).toString('hex') + '\n')
    assert.deepEqual([empty.code, empty.stdout.length], [0, 0])
    assert.equal(byBase64.stdout.toString(), 'v')
    assert.equal(badHex.code, 2)
    assert.match(badHex.stderr, /^distkv: KV_ERR_INVALID: KEY is not hex/)
  })

  test('errors exit 2 with one line naming the KV_ERR code', async () => {
    const [tooLarge, noFile, both, neither, extra, badLimit] = await Promise.all([
      runCli(['put', 'huge', '-', ...db()], { input: Buffer.alloc(1024 * 1024 + 1, 1) }),
      runCli(['put', 'k', '@/nonexistent/file', ...db()]),
      runCli(['get', 'k', ...db(), '--endpoint', server.endpoint]),
      runCli(['get', 'k']),
      runCli(['get', 'a', 'b', ...db()]),
      runCli(['scan', '--limit', 'ten', ...db()]),
    ])
    assert.match(tooLarge.stderr, /^distkv: KV_ERR_VALUE_TOO_LARGE: [^\n]*valueBytesMax[^\n]*\n$/)
    assert.match(noFile.stderr, /KV_ERR_INVALID: cannot read \/nonexistent\/file: ENOENT/)
    assert.match(both.stderr, /KV_ERR_INVALID: get: give exactly one of --db DIR or --endpoint/)
    assert.match(neither.stderr, /KV_ERR_INVALID: get: give exactly one of/)
    assert.match(extra.stderr, /KV_ERR_INVALID: get: expected 1 argument/)
    assert.match(badLimit.stderr, /KV_ERR_INVALID: --limit must be an integer/)
    for (const result of [tooLarge, noFile, both, neither, extra, badLimit]) {
      assert.equal(result.code, 2)
      assert.equal(result.stdout.length, 0)
    }
  })

  test('--endpoint with a token from the flag or DISTKV_TOKEN; a wrong token is KV_ERR_AUTH', async () => {
    const endpoint = ['--endpoint', server.endpoint]
    assert.equal((await runCli(['put', 'remote', 'r1', ...endpoint, '--token', token])).code, 0)
    const [fromEnv, local, wrong, unreachable] = await Promise.all([
      runCli(['get', 'remote', ...endpoint], { env: { DISTKV_TOKEN: token } }),
      runCli(['get', 'remote', ...db()]),
      runCli(['get', 'remote', ...endpoint, '--token', 'nope']),
      runCli(['get', 'remote', '--endpoint', '127.0.0.1:1', '--timeout', '1']),
    ])
    assert.equal(fromEnv.stdout.toString(), 'r1')
    assert.equal(local.stdout.toString(), 'r1', 'same data through the Unix socket')
    assert.equal(wrong.code, 2)
    assert.match(wrong.stderr, /^distkv: KV_ERR_AUTH: /)
    assert.equal(unreachable.code, 2)
    assert.match(unreachable.stderr, /^distkv: KV_ERR_(UNAVAILABLE|TIMEOUT): /)
  })

  test('scan: ranges, prefix, reverse, limit, keys-only and the three output forms', async () => {
    const ops = ['s/a', 's/b', 's/c', 's/d'].map((key, i) => ({ type: 'put', key, value: `v${i}` }))
    ops.push({ type: 'put', key: 's/e\tx', value: 'tab\nnewline\\' })
    const writes = await Promise.all([
      runCli(['batch', ...db()], { input: JSON.stringify(ops) }),
      runCli(['put', '73ff', '-', '--key-encoding', 'hex', ...db()], { input: Buffer.from([0x00, 0xff]) }),
    ])
    for (const write of writes) assert.equal(write.code, 0, write.stderr)
    const lines = async (...args: string[]) => {
      const result = await runCli(['scan', ...args, ...db()])
      assert.equal(result.code, 0, result.stderr)
      return result.stdout.toString().trimEnd().split('\n')
    }
    const all = ['s/a\tv0', 's/b\tv1', 's/c\tv2', 's/d\tv3', 's/e\\tx\ttab\\nnewline\\\\']
    const expectations: Array<[string[], string[]]> = [
      [['--prefix', 's/'], all],
      [['--gt', 's/a', '--lte', 's/c'], ['s/b\tv1', 's/c\tv2']],
      [['--prefix', 's/', '--reverse', '--limit', '2', '--keys-only'], ['s/e\\tx', 's/d']],
      [['--gte', 's/d', '--lt', 't', '--hex'], ['732f64\t7633', '732f650978\t7461620a6e65776c696e655c', '73ff\t00ff']],
      [['--gte', 's/e', '--json'], [
        JSON.stringify({ key: 's/e\tx', value: 'tab\nnewline\\' }),
        JSON.stringify({ keyBase64: Buffer.from([0x73, 0xff]).toString('base64'), valueBase64: Buffer.from([0, 0xff]).toString('base64') }),
      ]],
      [['--gt', '73', '--key-encoding', 'hex', '--lt', '7330'], all],
      [['--gte', '73ff', '--key-encoding', 'hex'], ['s\\xff\t\\x00\\xff']],
    ]
    const results = await Promise.all(expectations.map(([args]) => lines(...args)))
    expectations.forEach(([args, expected], i) => assert.deepEqual(results[i], expected, args.join(' ')))
  })

  test('batch from a file and stdin is atomic; a bad op applies nothing; scan --json feeds batch', async () => {
    const file = join(dir, 'ops.json')
    await writeFile(file, JSON.stringify({ ops: [{ type: 'put', key: 'b/1', value: 'one' }, { type: 'put', key: 'b/2', valueBase64: 'AAE=' }] }))
    assert.equal((await runCli(['batch', file, ...db()])).code, 0)
    const bad = [{ type: 'del', key: 'b/1' }, { type: 'put', key: 'b/3' }]
    const [got, rejected, notJson, exported] = await Promise.all([
      runCli(['get', 'b/2', ...db()]),
      runCli(['batch', '-', ...db()], { input: JSON.stringify(bad) }),
      runCli(['batch', ...db()], { input: '{nope' }),
      runCli(['scan', '--prefix', 'b/', '--json', ...db()]),
    ])
    assert.deepEqual(got.stdout, Buffer.from([0, 1]))
    assert.equal(rejected.code, 2)
    assert.match(rejected.stderr, /KV_ERR_INVALID: batch: ops\[1\] needs exactly one of "value"/)
    assert.match(notJson.stderr, /KV_ERR_INVALID: batch: input is not JSON/)
    const copies = exported.stdout.toString().trim().split('\n').map((line) => ({ type: 'put', ...JSON.parse(line), key: `copy/${JSON.parse(line).key}` }))
    const [kept, copied] = await Promise.all([runCli(['get', 'b/1', ...db()]), runCli(['batch', ...db()], { input: JSON.stringify(copies) })])
    assert.equal(kept.stdout.toString(), 'one', 'nothing of the bad batch applied')
    assert.equal(copied.code, 0, copied.stderr)
    assert.deepEqual((await runCli(['get', 'copy/b/2', ...db()])).stdout, Buffer.from([0, 1]))
  })
})
