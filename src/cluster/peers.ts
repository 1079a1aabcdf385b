/**
 * PeerPool: one wire connection per cluster address, opened on first use with the cluster
 * token and re-opened after it drops. Used by proxies (to stores and meta), by the meta leader
 * (to shard leaders) and by every node (to meta).
 *
 * Fault model: a peer may be down or slow. A failed connect is remembered for a short
 * back-off so a dead node costs one quick refusal per request, not a connect timeout each.
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, KvError } from '../errors.js'
import { parseEndpoint } from '../local/validate.js'
import { WireClient, type HelloInfo } from '../wire/index.js'

/** PeerPoolOptions configures a PeerPool. */
export interface PeerPoolOptions {
  name: string
  token: string
  connectTimeoutMs?: number
  /** downBackoffMs: after a failed connect, calls to that address fail fast for this long. */
  downBackoffMs?: number
  /** dial maps a peer address to the address actually connected to (a fault-injection proxy); identity when absent. */
  dial?: (address: string) => string
}

/** PeerPool holds connections to cluster peers by 'host:port'. */
export class PeerPool {
  private readonly clients = new Map<string, Promise<WireClient>>()
  /** ready: the connections already open, so a request on one skips the awaits of `get`. */
  private readonly ready = new Map<string, WireClient>()
  private readonly downUntil = new Map<string, number>()
  private readonly hello: HelloInfo
  private closed = false

  constructor(private readonly options: PeerPoolOptions) {
    this.hello = { clientId: randomUUID(), name: options.name, pid: process.pid, token: options.token }
  }

  /** get returns a live connection to `address`, connecting if needed. */
  async get(address: string): Promise<WireClient> {
    if (this.closed) throw new KvError(ErrorCode.CLOSED, 'peer pool closed')
    const existing = this.clients.get(address)
    if (existing !== undefined) {
      const client = await existing.catch(() => undefined)
      if (client !== undefined && !client.closed) return client
      if (this.clients.get(address) === existing) this.clients.delete(address)
      return this.get(address)
    }
    const until = this.downUntil.get(address) ?? 0
    if (Date.now() < until) throw new KvError(ErrorCode.UNAVAILABLE, `${address} is unreachable (retrying after a back-off)`, { address })
    const connecting = WireClient.connect(parseEndpoint(this.options.dial?.(address) ?? address), this.hello, { connectTimeoutMs: this.options.connectTimeoutMs ?? 1_000 })
    this.clients.set(address, connecting)
    try {
      const client = await connecting
      client.onClose(() => {
        if (this.clients.get(address) === connecting) this.clients.delete(address)
        if (this.ready.get(address) === client) this.ready.delete(address)
      })
      if (!this.closed) this.ready.set(address, client)
      this.downUntil.delete(address)
      return client
    } catch (error) {
      if (this.clients.get(address) === connecting) this.clients.delete(address)
      this.downUntil.set(address, Date.now() + (this.options.downBackoffMs ?? 200))
      throw error
    }
  }

  /** request sends one request to `address` (connecting if needed). */
  request(address: string, method: string, params: unknown, options: { timeoutMs: number; requestId?: string }): Promise<unknown> {
    const client = this.openClient(address)
    if (client !== undefined) return client.request(method, params, options)
    return this.get(address).then((connected) => connected.request(method, params, options))
  }

  /** requestBody is `request` with the body `[method, params]` already encoded by the caller (PreEncoded). */
  requestBody(address: string, method: string, body: Buffer | Buffer[], options: { timeoutMs: number; requestId?: string }): Promise<unknown> {
    const client = this.openClient(address)
    if (client !== undefined) return client.requestBody(method, body, options)
    return this.get(address).then((connected) => connected.requestBody(method, body, options))
  }

  /** openClient is the open connection to `address`, if there is one (the common case, no await). */
  private openClient(address: string): WireClient | undefined {
    if (this.closed) return undefined
    const client = this.ready.get(address)
    return client !== undefined && !client.closed ? client : undefined
  }

  /** close ends every connection. */
  async close(): Promise<void> {
    this.closed = true
    const pending = [...this.clients.values()]
    this.clients.clear()
    this.ready.clear()
    await Promise.all(pending.map(async (p) => (await p.catch(() => undefined))?.close()))
  }
}
