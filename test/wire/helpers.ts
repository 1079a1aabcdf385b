// Shared set-up for wire tests: temp socket paths and a server with a few test methods.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { randomUUID } from 'node:crypto'
import { ErrorCode, KvError } from '../../src/errors.js'
import { WireClient, WireServer, type HelloInfo, type WireAddress, type WireServerOptions } from '../../src/wire/index.js'

/** tempSocketPath returns a Unix socket path in a fresh temp dir, and a cleanup. */
export function tempSocketPath(): { path: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'distkv-wire-'))
  return { path: join(dir, 's.sock'), cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** hello returns a HelloInfo for a test client. */
export function hello(token?: string): HelloInfo {
  return { clientId: randomUUID(), name: 'test', pid: process.pid, ...(token === undefined ? {} : { token }) }
}

/** StreamProbe records how far a stream handler has produced and whether it was closed. */
export interface StreamProbe {
  produced: number
  returned: boolean
  aborted: boolean
}

/** startServer starts a WireServer with echo/fail/slow/count methods on a Unix socket and loopback TCP. */
export async function startServer(options: Partial<WireServerOptions> = {}) {
  const server = new WireServer({ serverInfo: { serverId: 'test-server', pid: process.pid }, onHandlerError: () => {}, ...options })
  const probe: StreamProbe = { produced: 0, returned: false, aborted: false }
  server.handle('echo', async (params) => params)
  server.handle('ctx', async (_params, ctx) => ({ requestId: ctx.requestId, clientId: ctx.peer.clientId, transport: ctx.peer.transport }))
  server.handle('fail', async (params) => {
    throw new KvError(ErrorCode.VALUE_TOO_LARGE, 'value is too large', { valueBytesMax: params })
  })
  server.handle('bug', async () => {
    throw new TypeError('oops')
  })
  server.handle('wait', (_params, ctx) => new Promise((resolve) => ctx.signal.addEventListener('abort', () => resolve('aborted'))))
  server.handle('sleep', (ms: number) => new Promise((resolve) => setTimeout(() => resolve(ms), ms)))
  server.handle('blob', async (bytes: number) => Buffer.alloc(bytes, 7))
  server.handleStream('count', async function* (params: { to: number }, ctx) {
    try {
      for (let i = 0; i < params.to; i++) {
        probe.produced = i + 1
        yield [i]
      }
    } finally {
      probe.returned = true
      probe.aborted = ctx.signal.aborted
    }
  })
  server.handleStream('broken', async function* () {
    yield 1
    throw new KvError(ErrorCode.UNAVAILABLE, 'disk went away')
  })
  const socket = tempSocketPath()
  const unix = await server.listen({ path: socket.path })
  const tcp = (await server.listen({ host: '127.0.0.1', port: 0 })) as { host: string; port: number }
  return {
    server,
    probe,
    unix,
    tcp,
    async stop() {
      await server.close()
      socket.cleanup()
    },
  }
}

/** connectClient connects a test client. */
export function connectClient(address: WireAddress, token?: string): Promise<WireClient> {
  return WireClient.connect(address, hello(token))
}

/** rejectsWith asserts that a promise rejects with a KvError of `code`. */
export async function rejectsWith(promise: Promise<unknown>, code: string): Promise<KvError> {
  try {
    await promise
  } catch (error) {
    if (!(error instanceof KvError) || error.code !== code) throw new Error(`expected ${code}, got ${String(error)}`)
    return error
  }
  throw new Error(`expected ${code}, but it resolved`)
}
