/**
 * ClusterInProcessKV: the DistKV interface straight over a proxy node's own ClusterKV and
 * Router, for the HTTP front end that runs inside that node. Before it, every HTTP request
 * went out through a client connected to the node's own RPC listener and back in: one
 * loopback round trip, a msgpack encode and decode of every value (1 MiB per file chunk) and
 * a socket copy each way, for nothing (docs/files.md, Figures). Validation is the RPC
 * handlers' own (src/local/validate.ts), and writes carry a fresh request id each, which the
 * router keeps across its retries, so a write is applied at most once as over RPC. Single-key
 * writes of one turn share a store write per shard (the proxy's WriteBatcher), and single-key
 * reads share a store read per shard (ReadCoalescer).
 *
 * Fault model: it lives and dies with its node. Routing failures, leader changes and timeouts
 * are the router's (the same outcomes an RPC client sees); after close(), calls fail with
 * KV_ERR_CLOSED.
 */
import { randomUUID } from 'node:crypto'
import type { BatchOp, BatchOptions, DistKV, KeyLike, QueryRange, ValueLike, WriteOptions } from '../../client/types.js'
import { ErrorCode, KvError } from '../../errors.js'
import { checkKey, checkKeys, checkOps, checkRange, checkSync, checkValue } from '../../local/validate.js'
import { gatherQuery } from '../query.js'
import { ReadCoalescer } from './read-coalescer.js'
import type { ClusterKV, ProxyDeps } from '../service.js'

/** asValue turns a value as a store returns it (Buffer, Uint8Array, or null when absent) into a Buffer or undefined. */
function asValue(value: unknown): Buffer | undefined {
  if (value === null || value === undefined) return undefined
  if (Buffer.isBuffer(value)) return value
  if (value instanceof Uint8Array) return Buffer.from(value.buffer, value.byteOffset, value.byteLength)
  throw new KvError(ErrorCode.PROTOCOL, `a store answered a read with a ${typeof value}, not bytes`)
}

/** ClusterInProcessKV serves DistKV calls through a ClusterKV of this process, with no socket in between. */
export class ClusterInProcessKV implements DistKV {
  /** clientId identifies this in-process client (it is not registered over the wire). */
  readonly clientId: string = randomUUID()
  private closed = false
  /** reads groups the single-key reads of one turn into one read per shard. */
  private readonly reads: ReadCoalescer

  constructor(
    private readonly kv: ClusterKV,
    private readonly deps: ProxyDeps,
  ) {
    this.reads = new ReadCoalescer((keys, kind) => kv.read(keys, kind))
  }

  private check(): void {
    if (this.closed) throw new KvError(ErrorCode.CLOSED, 'this DistKV client is closed')
  }

  async get(key: KeyLike): Promise<Buffer | undefined> {
    this.check()
    return asValue(await this.reads.read(checkKey(key), 'get'))
  }

  async getMany(keys: KeyLike[]): Promise<Array<Buffer | undefined>> {
    this.check()
    return (await this.kv.read(checkKeys(keys), 'get')).map(asValue)
  }

  async put(key: KeyLike, value: ValueLike, options?: WriteOptions): Promise<void> {
    this.check()
    // Every acknowledged cluster write is fsynced by a majority, so `sync` only needs checking.
    checkSync(options)
    // Through the proxy's write batcher: concurrent uploads' writes to one shard share a proposal.
    await this.kv.writeOne(randomUUID(), { type: 'put', key: checkKey(key), value: checkValue(value) })
  }

  async del(key: KeyLike, options?: WriteOptions): Promise<void> {
    this.check()
    checkSync(options)
    await this.kv.writeOne(randomUUID(), { type: 'del', key: checkKey(key) })
  }

  async batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    this.check()
    checkSync(options)
    const atomic = options?.atomic
    if (atomic !== undefined && typeof atomic !== 'boolean') throw new KvError(ErrorCode.INVALID, 'options.atomic must be a boolean')
    await this.kv.write(randomUUID(), checkOps(ops), atomic !== false)
  }

  async has(key: KeyLike): Promise<boolean> {
    this.check()
    return (await this.reads.read(checkKey(key), 'has')) === true
  }

  async getSize(key: KeyLike): Promise<number | undefined> {
    this.check()
    const size = await this.reads.read(checkKey(key), 'size')
    return typeof size === 'number' ? size : undefined
  }

  async *query(range?: QueryRange): AsyncGenerator<[Buffer, Buffer]> {
    this.check()
    const wire = checkRange(range ?? {})
    if (wire.limit === 0) return
    // Ending the iteration early (break) aborts the shard cursors through gatherQuery's finally.
    const abort = new AbortController()
    try {
      for await (const page of gatherQuery(this.deps.router, this.deps, wire, abort.signal)) {
        for (let i = 0; i < page.keys.length; i++) yield [page.keys[i]!, asValue(page.values[i]) ?? Buffer.alloc(0)]
      }
    } finally {
      abort.abort()
    }
  }

  async sync(): Promise<void> {
    // Every acknowledged cluster write is already fsynced by a majority (as the RPC handler says).
    this.check()
  }

  async close(): Promise<void> {
    this.closed = true
  }
}
