// The command-level behaviour of the real distkv binary: --help everywhere, unknown commands
// and flags, `local-server` on a directory that already has one, `clients`, and `local-dev`
// from start to a clean stop on SIGTERM.
import assert from 'node:assert/strict'
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { test } from 'node:test'
import { open } from '../../src/client/index.js'
import { commands } from '../../src/cli/main.js'
import { parse, targetOptions } from '../../src/cli/args.js'
import { newToken } from '../../src/local/auth.js'
import { binPath, killPointedServer, runCli, startServer } from './helpers.js'

test('every command answers --help with its usage and exit 0', async () => {
  const top = await runCli(['--help'])
  assert.equal(top.code, 0)
  for (const command of commands) assert.match(top.stdout.toString(), new RegExp(`^  ${command.name} `, 'm'))
  const local = commands.filter((command) => ['get', 'put', 'del', 'has', 'size', 'scan', 'batch', 'clients', 'local-server', 'local-dev'].includes(command.name))
  assert.equal(local.length, 10)
  await Promise.all(
    local.map(async (command) => {
      const result = await runCli([command.name, '--help'])
      assert.equal(result.code, 0, command.name)
      assert.match(result.stdout.toString(), new RegExp(`^usage: distkv ${command.name}`), command.name)
    }),
  )
  assert.equal((await runCli(['help', 'scan'])).stdout.toString(), (await runCli(['scan', '-h'])).stdout.toString())
})

test('the command table agrees with every command module it loads lazily', async () => {
  for (const entry of commands) {
    const command = await entry.load()
    assert.equal(command.name, entry.name)
    assert.equal(command.summary, entry.summary, `summary of ${entry.name}`)
  }
})

test('unknown commands and bad flags exit 2 with one KV_ERR_INVALID line', async () => {
  for (const args of [['frobnicate'], ['get', 'k', '--db', '/tmp/x', '--bogus'], ['put', 'k'], ['scan', '--db'], ['local-server'], ['local-server', '/tmp/x', '--port', 'http']]) {
    const result = await runCli(args)
    assert.equal(result.code, 2, args.join(' '))
    assert.match(result.stderr, /^distkv: KV_ERR_INVALID: [^\n]+\n$/, args.join(' '))
    assert.equal(result.stdout.length, 0)
  }
  const tcpWithoutToken = await runCli(['local-server', '/tmp/never-created-dir', '--port', '0'])
  assert.equal(tcpWithoutToken.code, 2)
  assert.match(tcpWithoutToken.stderr, /KV_ERR_INVALID: .*token/)
})

test('local-server exits 3 when the directory has a server; clients lists who is connected', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'distkv-cli-srv-'))
  const server = await startServer(dir, 'tok')
  const holder = await open(dir, { name: 'cli-test-holder' })
  try {
    const second = await runCli(['local-server', dir, '--idle-timeout', '0'])
    assert.equal(second.code, 3)
    assert.match(second.stderr, /already/)
    const table = await runCli(['clients', '--db', dir])
    assert.equal(table.code, 0, table.stderr)
    const [header, ...rows] = table.stdout.toString().trimEnd().split('\n')
    assert.match(header!, /^ID\s+NAME\s+PID\s+TRANSPORT\s+SINCE\s+REQUESTS$/)
    assert.ok(rows.some((row) => row.includes('cli-test-holder') && row.includes(String(process.pid))), table.stdout.toString())
    const json = await runCli(['clients', '--endpoint', server.endpoint, '--json'], { env: { DISTKV_TOKEN: 'tok' } })
    const records = JSON.parse(json.stdout.toString()) as Array<{ id: string; name: string; transport: string }>
    assert.ok(records.some((record) => record.id === holder.clientId && record.transport === 'unix'))
  } finally {
    await holder.close()
    await server.stop()
    killPointedServer(dir)
    await rm(dir, { recursive: true, force: true })
  }
})

test('generated tokens are distinct and can always follow --token as their own argument', () => {
  // One base64url token in 64 starts with '-', which the parser takes for a flag: `--token -x…`
  // failed with KV_ERR_INVALID. Four thousand draws meet such a token with near certainty.
  const seen = new Set<string>()
  for (let i = 0; i < 4000; i++) {
    const token = newToken()
    assert.match(token, /^[A-Za-z0-9_][A-Za-z0-9_-]{31}$/)
    assert.equal(parse('get', ['k', '--token', token], targetOptions).values.token, token)
    seen.add(token)
  }
  assert.equal(seen.size, 4000)
})

/** canListen says whether 127.0.0.1:port is free right now. */
function canListen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer()
    server.once('error', () => resolve(false))
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)))
  })
}

/** freePortPair finds a port that is free together with the next one (local-dev listens on both). */
async function freePortPair(): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    // Below Linux's ephemeral range (32768+), where an outgoing connection may take a probed port.
    const port = 20_000 + Math.floor(Math.random() * 12_000)
    if ((await canListen(port)) && (await canListen(port + 1))) return port
  }
  throw new Error('no two consecutive free ports found')
}

test('local-dev serves on --port + 1 with a token, prints how to connect, and stops on SIGTERM', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'distkv-cli-dev-'))
  // Picked by probing, not from the pid: a fixed pick collided with other processes' ports on a busy machine.
  const port = await freePortPair()
  const child = spawn(process.execPath, [binPath, 'local-dev', '--dir', dir, '--port', String(port)], { stdio: ['ignore', 'pipe', 'pipe'] })
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
  let output = ''
  child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()))
  try {
    for (let i = 0; i < 400 && !output.includes('Ctrl-C'); i++) await new Promise((resolve) => setTimeout(resolve, 25))
    assert.match(output, new RegExp(`endpoint: +127\\.0\\.0\\.1:${port + 1}`))
    const token = /token: +(\S+)/.exec(output)![1]!
    assert.match(output, /node: +node --input-type=module -e "import \{ connect \} from 'distkv'/)
    const file = JSON.parse(readFileSync(join(dir, 'local-dev.json'), 'utf8')) as { rpc: string; token: string }
    assert.deepEqual([file.rpc, file.token], [`127.0.0.1:${port + 1}`, token])
    const endpoint = ['--endpoint', `127.0.0.1:${port + 1}`, '--token', token]
    const put = await runCli(['put', 'dev-key', 'dev-value', ...endpoint])
    assert.equal(put.code, 0, put.stderr)
    assert.equal((await runCli(['get', 'dev-key', '--db', dir])).stdout.toString(), 'dev-value')
    child.kill('SIGTERM')
    assert.equal(await exited, 0)
    assert.match(output, /stopped/)
    assert.equal(existsSync(join(dir, 'local-dev.json')), false)
  } finally {
    child.kill('SIGKILL')
    killPointedServer(dir)
    await rm(dir, { recursive: true, force: true })
  }
})
