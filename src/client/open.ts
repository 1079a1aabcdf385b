/**
 * open(dir) and connect(endpoint): the two ways to get a DistKV (CONTRACT.md, "Library").
 *
 * open() is local mode: it connects to DIR's server over its private Unix socket, starting the
 * server first when none answers (see local/launcher.ts); after a server dies it does the same
 * again, so a client outlives any number of server restarts. connect() reaches a local server's
 * TCP listener (with its token); it cannot start a server, so it only retries connecting.
 */
import { ErrorCode, KvError, isKvError } from '../errors.js'
import { sleep } from '../local/discovery.js'
import { ensureServer } from '../local/launcher.js'
import { parseEndpoint } from '../local/validate.js'
import { WireClient, type HelloInfo } from '../wire/index.js'
import { RemoteKV, type Connector } from './remote.js'
import type { ConnectOptions, DistKV, OpenOptions } from './types.js'

/** connectAttemptMsMax: the longest one connection attempt may take before it is retried. */
export const connectAttemptMsMax = 5_000

function checkOptions(options: unknown): Record<string, unknown> {
  if (options === undefined) return {}
  if (options === null || typeof options !== 'object') throw new KvError(ErrorCode.INVALID, 'options must be an object')
  return options as Record<string, unknown>
}

function attemptMs(deadline: number): number {
  return Math.max(1, Math.min(connectAttemptMsMax, deadline - Date.now()))
}

/** open returns a DistKV on the database directory `dir`, starting its server when needed. */
export async function open(dir: string, options?: OpenOptions): Promise<DistKV> {
  if (typeof dir !== 'string' || dir.length === 0) throw new KvError(ErrorCode.INVALID, 'dir must be a non-empty string')
  const given = checkOptions(options) as OpenOptions
  if (given.engine !== undefined && given.engine !== 'rocksdb' && given.engine !== 'leveldb') {
    throw new KvError(ErrorCode.INVALID, `engine must be 'rocksdb' or 'leveldb', got ${String(given.engine)}`)
  }
  const idle = given.idleTimeoutSeconds
  if (idle !== undefined && (typeof idle !== 'number' || !Number.isFinite(idle) || idle < 0)) {
    throw new KvError(ErrorCode.INVALID, `idleTimeoutSeconds must be a number >= 0, got ${String(idle)}`)
  }
  const connector: Connector = async (hello: HelloInfo, deadline: number) => {
    let backoffMs = 10
    for (;;) {
      const socket = await ensureServer(dir, { engine: given.engine, idleTimeoutSeconds: idle, deadline })
      try {
        return await WireClient.connect({ path: socket }, hello, { connectTimeoutMs: attemptMs(deadline) })
      } catch (error) {
        // The server we found may have died or be shutting down: look again.
        if (isKvError(error) && error.code === ErrorCode.AUTH) throw error
        if (Date.now() >= deadline) throw error
      }
      await sleep(backoffMs)
      backoffMs = Math.min(backoffMs * 2, 200)
    }
  }
  return new RemoteKV({ connector, name: given.name, requestTimeoutMs: given.requestTimeoutMs }).start()
}

/** connect returns a DistKV on the server at `endpoint` ('host:port', or a list to try in turn). */
export async function connect(endpoint: string | string[], options?: ConnectOptions): Promise<DistKV> {
  const addresses = (Array.isArray(endpoint) ? endpoint : [endpoint]).map(parseEndpoint)
  if (addresses.length === 0) throw new KvError(ErrorCode.INVALID, 'connect needs at least one endpoint')
  const given = checkOptions(options) as ConnectOptions
  if (given.token !== undefined && typeof given.token !== 'string') throw new KvError(ErrorCode.INVALID, 'token must be a string')
  let next = 0
  const connector: Connector = async (hello: HelloInfo, deadline: number) => {
    let backoffMs = 10
    for (;;) {
      const address = addresses[next++ % addresses.length]!
      try {
        return await WireClient.connect(address, hello, { connectTimeoutMs: attemptMs(deadline) })
      } catch (error) {
        if (isKvError(error) && error.code === ErrorCode.AUTH) throw error
        if (Date.now() >= deadline) {
          throw new KvError(ErrorCode.UNAVAILABLE, `cannot reach ${addresses.map((a) => `${a.host}:${a.port}`).join(', ')}: ${(error as Error).message}`)
        }
      }
      await sleep(backoffMs)
      backoffMs = Math.min(backoffMs * 2, 500)
    }
  }
  return new RemoteKV({ connector, name: given.name, token: given.token, requestTimeoutMs: given.requestTimeoutMs }).start()
}
