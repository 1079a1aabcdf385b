/**
 * `distkv server`: runs one cluster node with the roles it is given, configured by a JSON file
 * (--config), flags for every field (which win over the file) and the environment (tokens).
 * Prints one line `ready {"id":..,"rpc":..,"http":..,"pid":..}` on stdout once serving, and stops
 * cleanly on SIGTERM or Ctrl-C.
 */
import { readFileSync } from 'node:fs'
import { ErrorCode, KvError } from '../errors.js'
import { positionalCount, stringFlag, type Parsed } from '../cli/args.js'
import type { Command, Io } from '../cli/command.js'
import { write } from '../cli/io.js'
import { resolveNodeConfig } from './config.js'
import { startNode } from './node.js'

const FLAG_FIELDS: Record<string, string> = {
  id: 'id',
  rpc: 'rpc',
  http: 'http',
  raft: 'raft',
  'data-dir': 'dataDir',
  roles: 'roles',
  token: 'token',
  'client-token': 'clientToken',
  shards: 'shards',
  replicas: 'replicas',
  'tick-ms': 'tickMs',
  'election-ticks': 'electionTicks',
  'request-timeout-ms': 'requestTimeoutMs',
  'down-after-ms': 'downAfterMs',
  balance: 'balance',
  'blob-threshold-bytes': 'blobThresholdBytes',
  'raft-log-file-bytes': 'raftLogFileBytes',
  'log-values': 'logValues',
}

/**
 * parseMembers reads `--members 1@host:port,2@host:port` (every member gets every role). A
 * member may add its Raft peer-stream port as `ID@HOST:PORT/RAFTPORT` (same host), so a
 * cluster configured by flags alone can use peer streams too.
 */
export function parseMembers(text: string): Array<{ id: number; rpc: string; raft?: string; roles: string[] }> {
  return text.split(',').filter((m) => m.trim() !== '').map((member) => {
    const match = /^(\d+)@(.+?)(?:\/(\d+))?$/.exec(member.trim())
    if (match === null) throw new KvError(ErrorCode.INVALID, `--members: '${member}' is not ID@HOST:PORT or ID@HOST:PORT/RAFTPORT`, { field: 'members' })
    const rpc = match[2]!
    const raftPort = match[3]
    if (raftPort === undefined) return { id: Number(match[1]), rpc, roles: ['meta', 'store', 'proxy'] }
    // The host is everything before the rpc port's last colon (an IPv6 host keeps its brackets).
    const colon = rpc.lastIndexOf(':')
    if (colon <= 0) throw new KvError(ErrorCode.INVALID, `--members: '${member}' has a raft port but no HOST:PORT`, { field: 'members' })
    return { id: Number(match[1]), rpc, raft: `${rpc.slice(0, colon)}:${raftPort}`, roles: ['meta', 'store', 'proxy'] }
  })
}

/** loadServerConfig merges the config file and the flags into a raw configuration. */
export function loadServerConfig(parsed: Parsed): Record<string, unknown> {
  const file = stringFlag(parsed, 'config')
  let raw: Record<string, unknown> = {}
  if (file !== undefined) {
    try {
      raw = JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>
    } catch (error) {
      throw new KvError(ErrorCode.INVALID, `--config ${file}: ${(error as Error).message}`)
    }
    if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new KvError(ErrorCode.INVALID, `--config ${file}: must hold a JSON object`)
  }
  for (const [flag, field] of Object.entries(FLAG_FIELDS)) {
    const value = stringFlag(parsed, flag)
    if (value !== undefined) raw[field] = value
  }
  const members = stringFlag(parsed, 'members')
  if (members !== undefined) raw.members = parseMembers(members)
  return raw
}

/** serverCommand runs a cluster node until it is stopped. */
export const serverCommand: Command = {
  name: 'server',
  summary: 'run a cluster node (roles meta, store, proxy)',
  help: `usage: distkv server [--config FILE] [--id N --rpc HOST:PORT --data-dir DIR --members LIST ...]

Runs one node of a distkv cluster. Every field of the config file can be given as a flag:
  --config FILE            JSON file with the fields below (flags win)
  --id N                   this node's id (1..999999), unique in the cluster
  --roles LIST             meta,store,proxy (default: this member's roles, or all three)
  --rpc HOST:PORT          wire listener for clients, proxies and peers
  --http HOST:PORT         HTTP front end (proxy role)
  --data-dir DIR           where this node keeps its RocksDB data
  --members LIST           the static member list: 1@HOST:PORT,2@HOST:PORT,... (same on every node);
                           ID@HOST:PORT/RAFTPORT also gives a member's Raft peer-stream port
  --token T                cluster token shared by all nodes (or DISTKV_TOKEN)
  --client-token T         token clients must present (or DISTKV_CLIENT_TOKEN; default none)
  --shards N --replicas R  layout a new cluster starts with (default 4 x 3)
  --tick-ms MS             Raft tick (default 40); --election-ticks N (default 10)
  --request-timeout-ms MS  how long the proxy retries one request (default 10000)
  --down-after-ms MS       silence after which a node is down and its replicas move (default 30000)
  --balance true|false     let meta rebalance replicas and leaders by itself (default true)
  --blob-threshold-bytes N shard values this long or longer are kept out of RocksDB: in the
                           Raft log file that holds them, or in DATA-DIR/blobs (default 8192; 0 = off)
  --raft-log-file-bytes N  size at which a Raft log file is sealed (default 67108864)
  --log-values true|false  store large values as pointers into the Raft log files that hold
                           them, written once per replica (default true)
  --exit-with-stdin        stop cleanly when stdin ends (a supervisor's lifeline: distkv dev)`,
  options: { ...Object.fromEntries([...Object.keys(FLAG_FIELDS), 'config', 'members'].map((flag) => [flag, { type: 'string' as const }])), 'exit-with-stdin': { type: 'boolean' as const } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('server', parsed, 0, 0)
    const config = resolveNodeConfig(loadServerConfig(parsed), io.env)
    const node = await startNode(config, (line) => void write(io.stderr, `${line}\n`).catch(() => undefined))
    await write(io.stdout, `ready ${JSON.stringify({ id: config.id, rpc: node.rpc, http: node.http ?? null, pid: process.pid, raftId: node.raftId })}\n`)
    await new Promise<void>((resolve) => {
      process.once('SIGTERM', resolve)
      process.once('SIGINT', resolve)
      if (parsed.values['exit-with-stdin'] === true) {
        // The supervisor never writes; the pipe ends when it dies, however it dies.
        io.stdin.once('end', () => {
          void write(io.stderr, `distkv node ${config.id}: stdin ended (its supervisor is gone); stopping\n`).catch(() => undefined)
          resolve()
        })
        io.stdin.once('error', () => resolve())
        io.stdin.resume()
      }
    })
    // A stdin still read would keep the process alive after a signal: let it go.
    if (parsed.values['exit-with-stdin'] === true) io.stdin.destroy()
    await node.close()
    return 0
  },
}
