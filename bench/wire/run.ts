// The wire protocol alone: CPU per request of the client's and the server's process, with no
// Raft or storage behind the handler (it answers at once), so the figures are what src/wire
// costs per request at both ends. Shaped like bench/raft's proposers: `--clients` (64) loops
// on one WireClient, each sending kv.propose { key, value } with a `--value-bytes` (1024) value
// and a timeout, over loopback TCP to a server in a child process. CPU comes from
// process.cpuUsage (microseconds) of each process over each `--seconds` round, so the figures
// hold on a loaded machine where the request rate does not; `--rounds` rounds are printed.
// Usage: npm run build && node dist/bench/wire/run.js [--seconds 3] [--rounds 3] [--clients 64] [--value-bytes 1024]
import { fork, type ChildProcess } from 'node:child_process'
import { WireClient } from '../../src/wire/client.js'
import { WireServer } from '../../src/wire/server.js'
import { argument } from '../lib/common.js'

/** serve runs the child: a WireServer with an instant kv.propose and a CPU probe. */
async function serve(): Promise<void> {
  const server = new WireServer({ serverInfo: { bench: 'wire' } })
  let index = 0
  // Not async: like the Raft fixture's handler, the reply is a promise settled later (here at once).
  server.handle('kv.propose', (params: { key?: unknown; value?: unknown }) => {
    if (typeof params?.key !== 'string' || !(params.value instanceof Uint8Array)) return Promise.reject(new Error('bad params'))
    return Promise.resolve(++index)
  })
  server.handle('bench.cpu', async () => {
    const usage = process.cpuUsage()
    return usage.user + usage.system
  })
  const address = await server.listen({ host: '127.0.0.1', port: 0 })
  process.send!(address)
  process.on('disconnect', () => process.exit(0))
}

async function measure(): Promise<void> {
  const seconds = Number(argument('seconds', '3'))
  const rounds = Number(argument('rounds', '3'))
  const clients = Number(argument('clients', '64'))
  const valueBytes = Number(argument('value-bytes', '1024'))
  const child: ChildProcess = fork(process.argv[1]!, ['--serve'], { stdio: 'inherit' })
  try {
    const address = await new Promise<{ host: string; port: number }>((resolve) => child.once('message', (message) => resolve(message as never)))
    const client = await WireClient.connect(address, { clientId: 'bench-wire', name: 'bench-wire', pid: process.pid })
    const value = Buffer.alloc(valueBytes, 0x61)
    const loop = async (seconds: number): Promise<number> => {
      const end = performance.now() + seconds * 1000
      const counts = await Promise.all(
        Array.from({ length: clients }, async (_, worker) => {
          let n = 0
          while (performance.now() < end) await client.request('kv.propose', { key: `w${worker}-${n++}`, value }, { timeoutMs: 10_000 })
          return n
        }),
      )
      return counts.reduce((sum, count) => sum + count, 0)
    }
    await loop(1) // warm-up: JIT and buffers
    for (let round = 1; round <= rounds; round++) {
      const serverBefore = (await client.request('bench.cpu', null)) as number
      const before = process.cpuUsage()
      const requests = await loop(seconds)
      const after = process.cpuUsage()
      const serverAfter = (await client.request('bench.cpu', null)) as number
      const clientUs = after.user + after.system - before.user - before.system
      console.log(
        `round ${round}: ${(requests / seconds).toFixed(0)} requests/s; CPU us per request: client ${(clientUs / requests).toFixed(2)}, server ${((serverAfter - serverBefore) / requests).toFixed(2)}`,
      )
    }
    await client.close()
  } finally {
    child.disconnect()
  }
}

if (process.argv.includes('--serve')) void serve()
else await measure()
