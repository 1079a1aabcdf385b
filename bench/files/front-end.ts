/**
 * bench:files front end: the CPU the HTTP front end and the files layer alone spend per 16 KiB
 * upload, with no cluster behind them (the DistKV is a stand-in whose put resolves at once), so
 * a change to src/proxy/http or src/files is measured without the noise of three Raft replicas.
 * The server runs in a child process (its CPU from process.cpuUsage between rounds), 16
 * keep-alive clients in this one. `--floor` serves the same requests from a bare node:http
 * handler that reads the body, hashes it and answers a small JSON: what Node itself costs.
 *
 * Usage: node dist/bench/files/front-end.js [--files 20000] [--rounds 3] [--bytes 16384] [--floor]
 *
 * Figures (21 Nov 2026, session 5, load 2-5; docs/files.md "Round 6"): floor ~50 us per upload,
 * the front end ~90-110 us before the round's cuts, ~60-90 after.
 */
import { fork } from 'node:child_process'
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { Agent, request } from 'node:http'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import type { DistKV } from '../../src/client/types.js'
import { startHttpServer } from '../../src/proxy/http/server.js'

const { values: args } = parseArgs({
  options: { files: { type: 'string' }, rounds: { type: 'string' }, bytes: { type: 'string' }, floor: { type: 'boolean' }, serve: { type: 'string' } },
})

/** stubKv is a DistKV that stores nothing: every write resolves at once, every read finds nothing. */
function stubKv(): DistKV {
  const none = async (): Promise<undefined> => undefined
  return {
    clientId: 'front-end-bench',
    get: none,
    getMany: async (keys: unknown[]) => keys.map(() => undefined),
    put: async () => undefined,
    del: async () => undefined,
    batch: async () => undefined,
    has: async () => false,
    getSize: none,
    query: async function* () {},
    sync: async () => undefined,
    close: async () => undefined,
  } as unknown as DistKV
}

/** serve runs in the child: one server, CPU figures on request over IPC. */
async function serve(kind: string): Promise<void> {
  let url: string
  let close: () => Promise<void>
  if (kind === 'floor') {
    const server = createServer((req, res) => {
      const parts: Buffer[] = []
      req.on('data', (part: Buffer) => parts.push(part))
      req.on('end', () => {
        const body = parts.length === 1 ? parts[0]! : Buffer.concat(parts)
        const sha256 = createHash('sha256').update(body).digest('hex')
        const text = JSON.stringify({ name: req.url, size: body.length, sha256, created: new Date().toISOString() })
        res.writeHead(201, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text)) })
        res.end(text)
      })
    })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
    close = () => new Promise((resolve) => server.close(() => resolve()))
  } else {
    const handle = await startHttpServer({ kv: stubKv(), sweepIntervalMs: 0 })
    url = handle.url
    close = () => handle.close()
  }
  let since = process.cpuUsage()
  process.on('message', (message) => {
    if (message === 'start') {
      since = process.cpuUsage()
      process.send!('started')
    } else if (message === 'stop') {
      process.send!(process.cpuUsage(since))
    } else if (message === 'exit') {
      void close().then(() => process.exit(0))
    }
  })
  process.send!({ url })
}

async function main(): Promise<void> {
  const files = Number(args.files ?? 20_000)
  const rounds = Number(args.rounds ?? 3)
  const body = Buffer.alloc(Number(args.bytes ?? 16 * 1024), 7)
  const child = fork(fileURLToPath(import.meta.url), ['--serve', args.floor === true ? 'floor' : 'front-end'])
  const next = (): Promise<unknown> => new Promise((resolve) => child.once('message', resolve))
  const { url } = (await next()) as { url: string }
  const agent = new Agent({ keepAlive: true, maxSockets: 16 })
  const put = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const req = request(`${url}/v1/files/bench/${i}`, { method: 'PUT', agent, headers: { 'content-length': String(body.length), 'content-type': 'application/octet-stream' } }, (res) => {
        res.resume()
        res.on('end', () => (res.statusCode === 201 ? resolve() : reject(new Error(`HTTP ${res.statusCode}`))))
      })
      req.on('error', reject)
      req.end(body)
    })
  const run = async (count: number): Promise<void> => {
    let i = 0
    await Promise.all(Array.from({ length: 16 }, async () => {
      while (i < count) await put(i++)
    }))
  }
  await run(5000) // untimed: JIT and connections
  const figures: string[] = []
  for (let round = 0; round < rounds; round++) {
    child.send('start')
    await next()
    await run(files)
    child.send('stop')
    const cpu = (await next()) as { user: number; system: number }
    figures.push(`${((cpu.user + cpu.system) / files).toFixed(1)} (user ${(cpu.user / files).toFixed(1)}, sys ${(cpu.system / files).toFixed(1)})`)
  }
  console.log(`${args.floor === true ? 'bare node:http floor' : 'front end + files'}, ${body.length} B uploads, 16 clients: server CPU us per upload: ${figures.join(' | ')}`)
  agent.destroy()
  child.send('exit')
}

if (args.serve !== undefined) await serve(args.serve)
else await main()
