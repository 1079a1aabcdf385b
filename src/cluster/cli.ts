/**
 * Cluster commands of the distkv CLI: `dev` (a whole cluster on loopback, what `npm start`
 * runs), `status` (the cluster view from any node) and `admin` (placement changes, which need
 * the cluster token).
 */
import { readFileSync } from 'node:fs'
import { join, resolve } from 'node:path'
import { ErrorCode, KvError } from '../errors.js'
import { connect } from '../client/open.js'
import type { RemoteKV } from '../client/remote.js'
import { booleanFlag, integerFlag, positionalCount, stringFlag, type Parsed } from '../cli/args.js'
import type { Command, Io } from '../cli/command.js'
import { write } from '../cli/io.js'
import type { ClusterView } from '../meta/routing.js'
import { DevCluster } from './dev.js'
import { logFileBytesMaxLimit, logFileBytesMaxMin } from '../raftstore/log-files.js'
import { blobThresholdBytesMax } from '../engine/blob-engine.js'

/**
 * devReadyTimeoutMs: how long `distkv dev` waits, once every node printed ready, for every shard
 * to have a leader and its slots. Elections count in Raft ticks, and on a loaded machine ticks come
 * late rather than fast, so this wall-clock bound is generous; it only ends a start that cannot
 * succeed (say a majority of nodes kept dying) with an error naming the shards still waiting.
 */
const devReadyTimeoutMs = 120_000
/** removeNodeTimeoutMs: how long `admin remove-node` waits for the node's replicas to move. */
const removeNodeTimeoutMs = 300_000

/** clusterDevCommand runs a dev cluster until Ctrl-C or SIGTERM. */
export const clusterDevCommand: Command = {
  name: 'dev',
  summary: 'run a whole cluster on loopback (what npm start runs)',
  help: `usage: distkv dev [--dir DIR] [--nodes 3] [--shards 4] [--replicas 3] [--port 7700] [--no-restart] [--exit-with-parent]

Starts --nodes node processes on 127.0.0.1, each with the meta, store and proxy roles, holding
--shards shards of --replicas replicas. Node 1 serves HTTP on --port and RPC on the next port
(node i: port + 10(i-1) and the one after). Writes DIR/cluster.json (addresses and pids),
restarts a node that dies after about a second (unless --no-restart), and stops everything
on Ctrl-C or SIGTERM. DIR defaults to ./data/dev. Nodes stop by themselves if this
supervisor dies. --exit-with-parent also stops the cluster when the process that started this
one is gone (npm start uses it: npm's shell dies on SIGTERM without passing it on).
  --tick-ms MS, --request-timeout-ms MS, --down-after-ms MS   tuning (tests use short ones)
  --blob-threshold-bytes N   shard values this long or longer are kept out of RocksDB (default 8192, 0 = off)
  --raft-log-file-bytes N    size at which a node's Raft log file is sealed (default 67108864)
  --log-values true|false    large values point into the Raft log files that hold them (default true)`,
  options: {
    dir: { type: 'string' },
    nodes: { type: 'string' },
    shards: { type: 'string' },
    replicas: { type: 'string' },
    port: { type: 'string' },
    'no-restart': { type: 'boolean' },
    'exit-with-parent': { type: 'boolean' },
    'tick-ms': { type: 'string' },
    'request-timeout-ms': { type: 'string' },
    'down-after-ms': { type: 'string' },
    'blob-threshold-bytes': { type: 'string' },
    'log-values': { type: 'string' },
    'raft-log-file-bytes': { type: 'string' },
  },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('dev', parsed, 0, 0)
    const nodes = integerFlag(parsed, 'nodes', { min: 1, max: 9 }) ?? 3
    const cluster = new DevCluster({
      dir: resolve(stringFlag(parsed, 'dir') ?? join('data', 'dev')),
      nodes,
      shards: integerFlag(parsed, 'shards', { min: 1, max: 256 }) ?? 4,
      replicas: integerFlag(parsed, 'replicas', { min: 1, max: 7 }) ?? Math.min(3, nodes),
      port: integerFlag(parsed, 'port', { min: 1, max: 65_000 }) ?? 7700,
      restart: parsed.values['no-restart'] !== true,
      restartDelayMs: 1_000,
      tickMs: integerFlag(parsed, 'tick-ms', { min: 1, max: 10_000 }),
      requestTimeoutMs: integerFlag(parsed, 'request-timeout-ms', { min: 100, max: 300_000 }),
      downAfterMs: integerFlag(parsed, 'down-after-ms', { min: 100, max: 86_400_000 }),
      blobThresholdBytes: integerFlag(parsed, 'blob-threshold-bytes', { min: 0, max: blobThresholdBytesMax }),
      raftLogFileBytes: integerFlag(parsed, 'raft-log-file-bytes', { min: logFileBytesMaxMin, max: logFileBytesMaxLimit }),
      logValues: booleanFlag(parsed, 'log-values'),
      exitWithParent: parsed.values['exit-with-parent'] === true,
      log: (line) => void write(io.stderr, `${line}\n`).catch(() => undefined),
    })
    // No SIGHUP handler: one would override nohup's ignore. A supervisor a hang-up kills still
    // takes its nodes with it (their stdin lifeline ends).
    const stopped = Promise.race([cluster.stopped, new Promise<void>((done) => {
      for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, done)
    })])
    try {
      // A stop asked for during start-up (Ctrl-C, the parent gone) ends the wait at once.
      const started = cluster.start()
      started.catch(() => undefined)
      if ((await Promise.race([started.then(() => 'started' as const), stopped.then(() => 'stopped' as const)])) === 'started') {
        const view = await waitForLeaders(cluster, stopped)
        if (view !== undefined) await write(io.stdout, banner(cluster, view))
        await stopped
      }
    } finally {
      await cluster.stop()
    }
    await write(io.stdout, 'distkv dev: stopped\n')
    return 0
  },
}

/** waitForLeaders polls the cluster view until every shard has a leader and its slots (or stopped). */
async function waitForLeaders(cluster: DevCluster, stopped: Promise<void>): Promise<ClusterView | undefined> {
  let stop = false
  void stopped.then(() => (stop = true))
  // Every node's address: a node busy or restarting does not hold up the check (any node forwards admin.cluster to meta).
  const kv = (await connect(cluster.nodes.map((n) => n.rpc), { token: cluster.token, name: 'distkv-dev' })) as RemoteKV
  try {
    const deadline = Date.now() + devReadyTimeoutMs
    let last: ClusterView | Error | undefined
    while (!stop && Date.now() < deadline) {
      last = (await kv.call('admin.cluster', {}).catch((error: Error) => error)) as ClusterView | Error
      if (!(last instanceof Error) && last.shards.length > 0 && last.shards.every((s) => s.leader !== null && s.claimed)) return last
      await new Promise((r) => setTimeout(r, 200))
    }
    if (!stop) throw new KvError(ErrorCode.TIMEOUT, `every node printed ready, but ${notReady(last)} after devReadyTimeoutMs = ${devReadyTimeoutMs} ms; node logs: ${cluster.nodes.map((n) => n.logFile).join(', ')}`)
    return undefined
  } finally {
    await kv.close()
  }
}

/** notReady says what the last cluster view (or the error in its place) still lacked. */
function notReady(last: ClusterView | Error | undefined): string {
  if (last === undefined) return 'no cluster view was read'
  if (last instanceof Error) return `no node answered admin.cluster (${last.message})`
  if (last.shards.length === 0) return `meta has no shards yet (meta leader: ${last.meta.leader === null ? 'none' : `node ${last.meta.leader}`})`
  const waiting = last.shards.filter((s) => s.leader === null || !s.claimed).map((s) => `shard ${s.id} (replicas on nodes ${s.replicas.join(',')}: ${s.leader === null ? 'no leader' : 'slots not claimed'})`)
  return `still waiting for ${waiting.join(', ')}`
}

function banner(cluster: DevCluster, view: ClusterView): string {
  const o = cluster.options
  return [
    `distkv dev: ${o.nodes} nodes, ${view.shards.length} shards x ${o.replicas} replicas, data in ${o.dir}`,
    `  web UI and HTTP API: http://${cluster.nodes[0]!.http}`,
    `  client endpoint:     ${cluster.endpoint}   (connect('${cluster.endpoint}'), or any node's RPC address)`,
    `  cluster file:        ${join(o.dir, 'cluster.json')}`,
    ...cluster.nodes.map((n) => `  node ${n.id}: rpc ${n.rpc}, http http://${n.http}, pid ${n.pid}`),
    'Ctrl-C stops the cluster.',
    '',
  ].join('\n')
}

function endpointOf(parsed: Parsed): string {
  const endpoint = stringFlag(parsed, 'endpoint')
  if (endpoint !== undefined) return endpoint
  const dir = stringFlag(parsed, 'dir')
  if (dir !== undefined) return (JSON.parse(readFileSync(join(dir, 'cluster.json'), 'utf8')) as { rpc: string }).rpc
  throw new KvError(ErrorCode.INVALID, 'give --endpoint HOST:PORT (or --dir of a dev cluster)')
}

function tokenOf(parsed: Parsed, io: Io): string | undefined {
  const dir = stringFlag(parsed, 'dir')
  return stringFlag(parsed, 'token') ?? io.env.DISTKV_TOKEN ?? (dir === undefined ? undefined : readFileSync(join(dir, 'cluster-token'), 'utf8').trim())
}

/** statusCommand prints the cluster view of the node at --endpoint. */
export const statusCommand: Command = {
  name: 'status',
  summary: 'show nodes, shards, leaders and slot ranges of a cluster',
  help: `usage: distkv status (--endpoint HOST:PORT | --dir DEVDIR) [--token T] [--json]`,
  options: { endpoint: { type: 'string' }, dir: { type: 'string' }, token: { type: 'string' }, json: { type: 'boolean' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('status', parsed, 0, 0)
    const kv = (await connect(endpointOf(parsed), { token: tokenOf(parsed, io), requestTimeoutMs: 10_000 })) as RemoteKV
    try {
      const view = (await kv.call('admin.cluster', {})) as ClusterView
      await write(io.stdout, parsed.values.json === true ? `${JSON.stringify(view, null, 2)}\n` : renderStatus(view))
    } finally {
      await kv.close()
    }
    return 0
  },
}

/** renderStatus is the human-readable form of a cluster view. */
export function renderStatus(view: ClusterView): string {
  const lines = [`cluster ${view.clusterId} (routing version ${view.version}), meta leader: node ${view.meta.leader ?? 'none'}`, 'nodes:']
  for (const n of view.nodes) lines.push(`  node ${n.id}  ${n.health.padEnd(4)}  rpc ${n.rpc}${n.http ? `  http ${n.http}` : ''}  roles ${n.roles.join(',')}`)
  lines.push('shards:')
  for (const s of view.shards) {
    const ranges = s.slots.map(([a, b]) => (a === b ? `${a}` : `${a}-${b}`)).join(',')
    lines.push(`  shard ${s.id}  epoch ${s.epoch}  leader ${s.leader ?? 'none'}  replicas ${s.replicas.join(',')}${s.learners.length ? `  learners ${s.learners.join(',')}` : ''}  slots ${s.slotCount} [${ranges}]`)
  }
  for (const m of view.moves) lines.push(`  moving ${m.slots.length} slots from shard ${m.from} to ${m.to}: ${m.stage}`)
  return `${lines.join('\n')}\n`
}

function parseSlots(text: string): number[] {
  const out: number[] = []
  for (const part of text.split(',')) {
    const m = /^(\d+)(?:-(\d+))?$/.exec(part.trim())
    if (m === null) throw new KvError(ErrorCode.INVALID, `--slots: '${part}' is not N or N-M`)
    for (let s = Number(m[1]); s <= Number(m[2] ?? m[1]); s++) out.push(s)
  }
  return out
}

/** adminCommand changes placement: add-shard, move-slots, transfer-leader, replace-replica. */
export const adminCommand: Command = {
  name: 'admin',
  summary: 'change placement: add-shard, move-slots, transfer-leader, replace-replica, remove-node',
  help: `usage: distkv admin ACTION (--endpoint HOST:PORT | --dir DEVDIR) [--token CLUSTER_TOKEN] ...
  add-shard [--nodes 1,2,3] [--slots N]     new shard, N slots moved onto it online
  move-slots --slots A-B[,C] --to SHARD     move slots (all on one shard) to SHARD
  transfer-leader --shard S --node N        make node N's replica the leader of shard S
  replace-replica --shard S --from N --to M move shard S's replica from node N to node M
  remove-node --node N                      move node N's replicas to other nodes, then remove it
Adding a node: start \`distkv server\` on it with the same --members and token; it registers.`,
  options: { endpoint: { type: 'string' }, dir: { type: 'string' }, token: { type: 'string' }, nodes: { type: 'string' }, slots: { type: 'string' }, to: { type: 'string' }, shard: { type: 'string' }, node: { type: 'string' }, from: { type: 'string' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('admin', parsed, 1, 1)
    const action = parsed.positionals[0]!
    const num = (flag: string) => integerFlag(parsed, flag, { min: 1, max: 1e9 })
    const calls: Record<string, () => [string, unknown]> = {
      'add-shard': () => ['admin.addShard', { ...(stringFlag(parsed, 'nodes') ? { nodes: stringFlag(parsed, 'nodes')!.split(',').map(Number) } : {}), ...(num('slots') ? { slots: num('slots') } : {}) }],
      'move-slots': () => ['admin.moveSlots', { slots: parseSlots(stringFlag(parsed, 'slots') ?? ''), to: num('to') }],
      'transfer-leader': () => ['admin.transferLeader', { shard: num('shard'), node: num('node') }],
      'replace-replica': () => ['admin.replaceReplica', { shard: num('shard'), from: num('from'), to: num('to') }],
      'remove-node': () => ['admin.removeNode', { node: num('node') }],
    }
    const call = calls[action]
    if (call === undefined) throw new KvError(ErrorCode.INVALID, `admin: unknown action '${action}' (see distkv admin --help)`)
    const [method, params] = call()
    const kv = (await connect(endpointOf(parsed), { token: tokenOf(parsed, io), requestTimeoutMs: 30_000 })) as RemoteKV
    try {
      let result = (await kv.call(method, params)) as { removed?: boolean }
      // Removal completes once the meta leader has moved every replica away: wait for it.
      for (const deadline = Date.now() + removeNodeTimeoutMs; action === 'remove-node' && result.removed === false && Date.now() < deadline;) {
        await new Promise((r) => setTimeout(r, 1_000))
        result = (await kv.call(method, params)) as { removed?: boolean }
      }
      await write(io.stdout, `${JSON.stringify(result)}\n`)
      if (action === 'remove-node' && result.removed === false) throw new KvError(ErrorCode.TIMEOUT, `node still holds replicas after ${removeNodeTimeoutMs} ms (is there a live node to take them?)`)
    } finally {
      await kv.close()
    }
    return 0
  },
}
