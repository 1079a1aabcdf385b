/**
 * bench:files: file upload and download throughput through the HTTP API with 16 concurrent
 * clients, for 16 KiB, 256 KiB and 4 MiB files, beside two baselines from the same run:
 *   - the disk's sequential write bandwidth divided by the replica count (the bound when every
 *     replica writes to this one disk), for the upload figures;
 *   - etcd storing the 16 KiB files as values with the same 16 clients.
 *
 * Usage: npm run bench:files [-- --url http://HOST:PORT --replicas 3 --clients 16 --mib 128]
 * Without --url it starts `distkv local-server DIR --http` (one replica). Results are also
 * written to bench/results/files.json.
 */
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { diskWriteMiBps, findEtcd, startEtcd } from './baselines.js'

const { values: args } = parseArgs({
  options: { url: { type: 'string' }, replicas: { type: 'string' }, clients: { type: 'string' }, mib: { type: 'string' } },
})
const clients = Number(args.clients ?? 16)
const budgetMiB = Number(args.mib ?? 128)
const KiB = 1024
const MiB = 1024 * KiB
const sizes = [16 * KiB, 256 * KiB, 4 * MiB]

/** runParallel runs `count` jobs on `clients` workers and returns the elapsed seconds. */
async function runParallel(count: number, job: (index: number) => Promise<void>): Promise<number> {
  let next = 0
  const started = performance.now()
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (next < count) await job(next++)
    }),
  )
  return (performance.now() - started) / 1000
}

function httpCall(agent: Agent, url: string, method: string, body?: Buffer): Promise<number> {
  return new Promise((resolve, reject) => {
    const headers = body ? { 'content-length': String(body.length), 'content-type': 'application/octet-stream' } : {}
    const req = request(url, { method, agent, headers }, (res) => {
      let bytes = 0
      res.on('data', (part: Buffer) => (bytes += part.length))
      res.on('end', () => (res.statusCode! < 300 ? resolve(bytes) : reject(new Error(`${method} ${url}: HTTP ${res.statusCode}`))))
    })
    req.on('error', reject)
    req.end(body)
  })
}

async function startLocalHttp(dir: string): Promise<{ url: string; stop: () => Promise<void> }> {
  const bin = fileURLToPath(new URL('../../../bin/distkv.js', import.meta.url))
  const child = spawn(process.execPath, [bin, 'local-server', join(dir, 'db'), '--http', '127.0.0.1:0', '--idle-timeout', '0'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const line = await new Promise<string>((resolve) => createInterface({ input: child.stdout! }).once('line', resolve))
  const url = /at (http:\/\/\S+?)\/?$/.exec(line)![1]!
  return {
    url,
    stop: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      child.kill('SIGTERM')
      await exited
    },
  }
}

interface Row {
  size: string
  files: number
  uploadFilesPerSecond: number
  uploadMiBps: number
  downloadFilesPerSecond: number
  downloadMiBps: number
}

async function benchSize(url: string, size: number): Promise<Row> {
  const agent = new Agent({ keepAlive: true, maxSockets: clients })
  const count = Math.max(clients * 4, Math.floor((budgetMiB * MiB) / size))
  const body = randomBytes(size)
  const name = (i: number): string => `${url}/v1/files/bench/${size}/${i}`
  const up = await runParallel(count, async (i) => void (await httpCall(agent, name(i), 'PUT', body)))
  const down = await runParallel(count, async (i) => {
    const bytes = await httpCall(agent, name(i), 'GET')
    if (bytes !== size) throw new Error(`download of ${name(i)} gave ${bytes} bytes`)
  })
  agent.destroy()
  const mib = (count * size) / MiB
  return {
    size: size >= MiB ? `${size / MiB} MiB` : `${size / KiB} KiB`,
    files: count,
    uploadFilesPerSecond: count / up,
    uploadMiBps: mib / up,
    downloadFilesPerSecond: count / down,
    downloadMiBps: mib / down,
  }
}

async function benchEtcd(dir: string, count: number): Promise<number | undefined> {
  const binary = findEtcd()
  if (binary === undefined) return undefined
  const etcd = await startEtcd(binary, dir)
  try {
    const value = randomBytes(16 * KiB)
    const seconds = await runParallel(count, async (i) => void (await etcd.client.put(`bench/${i}`).value(value)))
    return count / seconds
  } finally {
    await etcd.stop()
  }
}

const dir = mkdtempSync(join(tmpdir(), 'distkv-bench-files-'))
try {
  const replicas = Number(args.replicas ?? (args.url === undefined ? 1 : 3))
  const disk = diskWriteMiBps(dir, 256)
  const bound = disk / replicas
  console.log(`disk sequential write: ${disk.toFixed(0)} MiB/s; / ${replicas} replica(s) = ${bound.toFixed(0)} MiB/s upload bound`)
  const server = args.url === undefined ? await startLocalHttp(dir) : { url: args.url, stop: async () => undefined }
  const rows: Row[] = []
  try {
    for (const size of sizes) {
      const row = await benchSize(server.url, size)
      rows.push(row)
      console.log(
        `${row.size.padStart(8)}: upload ${row.uploadFilesPerSecond.toFixed(0).padStart(6)} files/s ${row.uploadMiBps.toFixed(1).padStart(7)} MiB/s (${((row.uploadMiBps / bound) * 100).toFixed(0)}% of bound)` +
          ` | download ${row.downloadFilesPerSecond.toFixed(0).padStart(6)} files/s ${row.downloadMiBps.toFixed(1).padStart(7)} MiB/s`,
      )
    }
  } finally {
    await server.stop()
  }
  const small = rows[0]!
  const etcd = await benchEtcd(dir, small.files)
  if (etcd === undefined) console.log('etcd: not available (could not install etcd-server)')
  else console.log(`etcd 16 KiB puts: ${etcd.toFixed(0)}/s; distkv 16 KiB uploads: ${small.uploadFilesPerSecond.toFixed(0)}/s = ${(small.uploadFilesPerSecond / etcd).toFixed(2)}x etcd (target >= 2x)`)
  const large = rows[rows.length - 1]!
  console.log(`4 MiB uploads: ${large.uploadMiBps.toFixed(1)} MiB/s = ${((large.uploadMiBps / bound) * 100).toFixed(0)}% of the disk bound (target >= 50%)`)
  const results = join(fileURLToPath(new URL('../../../bench/results/', import.meta.url)))
  mkdirSync(results, { recursive: true })
  writeFileSync(join(results, 'files.json'), JSON.stringify({ at: new Date().toISOString(), clients, replicas, diskMiBps: disk, boundMiBps: bound, etcdPutsPerSecond: etcd, rows }, null, 2) + '\n')
} finally {
  rmSync(dir, { recursive: true, force: true })
}
