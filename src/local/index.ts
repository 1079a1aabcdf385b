/**
 * Local mode: one server process per database directory (see docs/local-mode.md).
 * `runLocalServer` is what `distkv local-server DIR` runs; `listClients` asks a running server
 * which clients are registered with it.
 */
import { ErrorCode, KvError } from '../errors.js'
import { WireClient, type WireAddress } from '../wire/index.js'
import { randomUUID } from 'node:crypto'
import { existsSync } from 'node:fs'
import { LocalMethod, type ClientRecord } from './handlers.js'
import { findLiveSocket } from './launcher.js'
import { localPaths } from './paths.js'
import { parseEndpoint } from './validate.js'

export { runLocalServer, startLocalServer } from './server.js'
export type { LocalServerOptions, LocalServerHandle, LocalServerInfo, EngineKind } from './server.js'
export { alreadyRunningExitCode, ensureServer } from './launcher.js'
export { LocalMethod } from './handlers.js'
export type { ClientRecord } from './handlers.js'
export { LocalStore } from './store.js'

/** ListClientsTarget names a server: by database directory (Unix socket) or TCP endpoint. */
export type ListClientsTarget = { dir: string } | { endpoint: string; token?: string }

/** listClients returns the clients registered with a server; [] when DIR has no running server. */
export async function listClients(target: ListClientsTarget): Promise<ClientRecord[]> {
  let address: WireAddress
  let token: string | undefined
  if ('dir' in target) {
    // A directory that does not exist has no server.
    if (!existsSync(target.dir)) return []
    const socket = await findLiveSocket(localPaths(target.dir))
    if (socket === undefined) return []
    address = { path: socket }
  } else {
    address = parseEndpoint(target.endpoint)
    token = target.token
  }
  const hello = { clientId: randomUUID(), name: 'distkv clients', pid: process.pid, ...(token !== undefined ? { token } : {}) }
  const client = await WireClient.connect(address, hello, { connectTimeoutMs: 5_000 })
  try {
    const clients = await client.request(LocalMethod.clients, {}, { timeoutMs: 5_000 })
    if (!Array.isArray(clients)) throw new KvError(ErrorCode.PROTOCOL, 'admin.clients returned no list')
    return (clients as ClientRecord[]).filter((record) => record.id !== hello.clientId)
  } finally {
    await client.close()
  }
}
