/**
 * The local-mode server commands. `local-server DIR` runs the one server that owns a database
 * directory (what open() starts detached; also runnable by hand). `local-dev` is the light
 * sibling of the cluster's `dev`: one local server with a TCP listener and a fresh token that
 * prints how to reach it and stops cleanly on Ctrl-C or SIGTERM.
 */
import { mkdirSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ErrorCode, KvError, isKvError } from '../errors.js'
import { newToken } from '../local/auth.js'
import { alreadyRunningExitCode, runLocalServer, startLocalServer, type LocalServerHandle } from '../local/index.js'
import { integerFlag, positionalCount, stringFlag, type Parsed } from './args.js'
import { ExitCode, type Command, type Io } from './command.js'
import { write } from './io.js'
import { runLocalServerWithHttp } from './local-http.js'
import type { LocalServerOptions } from '../local/index.js'

type DiskEngine = 'rocksdb' | 'leveldb'

function engineOf(parsed: Parsed): DiskEngine | undefined {
  const engine = stringFlag(parsed, 'engine')
  if (engine === undefined || engine === 'rocksdb' || engine === 'leveldb') return engine
  throw new KvError(ErrorCode.INVALID, `--engine must be rocksdb or leveldb, got '${engine}'`)
}

const portRange = { min: 0, max: 65535 }

/** localServerCommand runs DIR's server until it is stopped; exit 3 if DIR already has one. */
export const localServerCommand: Command = {
  name: 'local-server',
  summary: 'run the server that owns database directory DIR',
  help: `usage: distkv local-server DIR [--port P --token T] [--host H] [--idle-timeout SECONDS] [--engine rocksdb|leveldb] [--http HOST:PORT]

Runs the one server of DIR: clients of the same user reach it through a private Unix socket;
with --port (or --host) it also listens on TCP, which requires a token (--token or
DISTKV_TOKEN). open(DIR) starts this command by itself when no server runs.

  --port P              also listen on TCP port P (0 picks a free port)
  --host H              TCP address to listen on (default 127.0.0.1)
  --token T             the token TCP clients must present
  --idle-timeout S      exit after S seconds with no client connected; 0 = never (default 30)
  --engine E            rocksdb (default) or leveldb, for a new directory
  --http HOST:PORT      also serve the HTTP API and web UI there (with --token, the API needs it)

Exit status: 0 after a clean stop (idle, SIGTERM, Ctrl-C), 3 when DIR already has a server,
2 on any other error.`,
  options: {
    port: { type: 'string' },
    host: { type: 'string' },
    token: { type: 'string' },
    'idle-timeout': { type: 'string' },
    engine: { type: 'string' },
    http: { type: 'string' },
  },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('local-server', parsed, 1, 1)
    const port = integerFlag(parsed, 'port', portRange)
    const host = stringFlag(parsed, 'host')
    const tcp = port !== undefined || host !== undefined
    // The environment's token only applies when TCP was asked for on the command line.
    const token = stringFlag(parsed, 'token') ?? (tcp ? io.env.DISTKV_TOKEN || undefined : undefined)
    const idleTimeoutSeconds = integerFlag(parsed, 'idle-timeout', { min: 0, max: 2_147_483 })
    const engine = engineOf(parsed)
    try {
      const run = (options: LocalServerOptions): Promise<void> => {
        const http = stringFlag(parsed, 'http')
        return http === undefined ? runLocalServer(options) : runLocalServerWithHttp(options, http, io)
      }
      await run({
        dir: parsed.positionals[0]!,
        ...(port !== undefined ? { port } : {}),
        ...(host !== undefined ? { host } : {}),
        ...(token !== undefined ? { token } : {}),
        ...(idleTimeoutSeconds !== undefined ? { idleTimeoutSeconds } : {}),
        ...(engine !== undefined ? { engine } : {}),
      })
    } catch (error) {
      if (isKvError(error) && error.details?.alreadyRunning === true) {
        await write(io.stderr, `distkv: ${error.code}: ${error.message}\n`)
        return alreadyRunningExitCode
      }
      throw error
    }
    return ExitCode.ok
  },
}

/** localDevCommand runs one local server for development on loopback and prints how to use it. */
export const localDevCommand: Command = {
  name: 'local-dev',
  summary: 'run one local server with TCP and a generated token (no cluster)',
  help: `usage: distkv local-dev [--dir DIR] [--port 7700] [--host H] [--token T] [--engine rocksdb|leveldb]

Runs one local server on DIR (default ./data/local-dev) that never idles out, with TCP on
--port + 1 (where \`distkv dev\` puts the cluster's client endpoint) and a generated token,
prints the directory, endpoint, token and a one-line Node.js example, and writes
DIR/local-dev.json (mode 0600; it holds the token). Ctrl-C or SIGTERM stops it cleanly.
The cluster flags --nodes, --shards, --replicas and --no-restart are accepted and ignored.

  --dir DIR             database directory (default ./data/local-dev)
  --port P              base port (default 7700): the client endpoint is P + 1
  --host H              address to listen on (default 127.0.0.1)
  --token T             use this token instead of a generated one
  --engine E            rocksdb (default) or leveldb`,
  options: {
    dir: { type: 'string' },
    port: { type: 'string' },
    host: { type: 'string' },
    token: { type: 'string' },
    engine: { type: 'string' },
    nodes: { type: 'string' },
    shards: { type: 'string' },
    replicas: { type: 'string' },
    'no-restart': { type: 'boolean' },
  },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('local-dev', parsed, 0, 0)
    for (const name of ['nodes', 'shards', 'replicas']) integerFlag(parsed, name, { min: 1, max: 99 })
    const dir = resolve(stringFlag(parsed, 'dir') ?? join('data', 'local-dev'))
    const port = integerFlag(parsed, 'port', { min: 1, max: 65534 }) ?? 7700
    const host = stringFlag(parsed, 'host') ?? '127.0.0.1'
    const token = stringFlag(parsed, 'token') ?? newToken()
    const engine = engineOf(parsed) ?? 'rocksdb'
    mkdirSync(dir, { recursive: true })
    const handle = await startDev({ dir, host, port: port + 1, token, engine })
    const endpoint = `${handle.info.tcp!.host}:${handle.info.tcp!.port}`
    const clusterFile = writeClusterFile(dir, endpoint, token, handle)
    await write(io.stdout, devBanner({ dir, endpoint, token, engine, pid: process.pid }))
    await handle.stopped
    rmSync(clusterFile, { force: true })
    await write(io.stdout, 'distkv local-dev: stopped\n')
    return ExitCode.ok
  },
}

async function startDev(options: { dir: string; host: string; port: number; token: string; engine: DiskEngine }): Promise<LocalServerHandle> {
  try {
    return await startLocalServer({ ...options, idleTimeoutSeconds: 0, handleSignals: true })
  } catch (error) {
    if (isKvError(error) && error.details?.alreadyRunning === true) {
      throw new KvError(ErrorCode.UNAVAILABLE, `${options.dir} already has a running server; stop it or pass another --dir`)
    }
    throw error
  }
}

/** writeClusterFile records the endpoint and token for tools, in the shape of the cluster's cluster.json. */
function writeClusterFile(dir: string, endpoint: string, token: string, handle: LocalServerHandle): string {
  const path = join(dir, 'local-dev.json')
  const document = {
    mode: 'local',
    rpc: endpoint,
    token,
    nodes: [{ id: 1, pid: process.pid, roles: ['local'], rpc: endpoint, engine: handle.info.engine, dir }],
  }
  const temporary = `${path}.${process.pid}.tmp`
  writeFileSync(temporary, JSON.stringify(document, null, 2) + '\n', { mode: 0o600 })
  renameSync(temporary, path)
  return path
}

function devBanner(info: { dir: string; endpoint: string; token: string; engine: string; pid: number }): string {
  const example =
    `node --input-type=module -e "import { connect } from 'distkv'; ` +
    `const kv = await connect('${info.endpoint}', { token: '${info.token}' }); ` +
    `await kv.put('hello', 'world'); console.log(String(await kv.get('hello'))); await kv.close()"`
  return [
    `distkv local-dev: serving ${info.dir} (engine ${info.engine}, pid ${info.pid})`,
    `  (one local server, no cluster and no web UI: \`distkv dev\` runs those)`,
    `  local:     distkv scan --db ${info.dir}`,
    `  endpoint:  ${info.endpoint}`,
    `  token:     ${info.token}`,
    `  remote:    DISTKV_TOKEN=${info.token} distkv get hello --endpoint ${info.endpoint}`,
    `  node:      ${example}`,
    `Ctrl-C stops it.`,
    '',
  ].join('\n')
}
