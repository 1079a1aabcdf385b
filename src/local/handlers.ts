/**
 * The local server's RPC methods: the DistKV operations and the admin calls, registered on a
 * WireServer. Every parameter is validated again here, because any program may speak the wire.
 * Write methods pass the request's UUID to the store, which applies each id at most once.
 */
import type { RequestContext, WireServer } from '../wire/index.js'
import { ErrorCode, KvError } from '../errors.js'
import type { LocalStore } from './store.js'
import { checkMultiOps, executeMulti } from './multi.js'
import { MULTI_BINARY_METHOD, executeMultiBinary } from './multi-codec.js'
import { checkKey, checkKeys, checkOps, checkRange, checkSync, checkValue } from './validate.js'

/** LocalMethod names every method the local server serves. */
export const LocalMethod = {
  get: 'kv.get',
  getMany: 'kv.getMany',
  multi: 'kv.multi',
  multiBinary: MULTI_BINARY_METHOD,
  put: 'kv.put',
  del: 'kv.del',
  batch: 'kv.batch',
  has: 'kv.has',
  getSize: 'kv.getSize',
  sync: 'kv.sync',
  query: 'kv.query',
  clients: 'admin.clients',
  info: 'admin.info',
} as const

/** ClientRecord is one registered client as `admin.clients` reports it. */
export interface ClientRecord {
  id: string
  name: string
  pid: number
  transport: 'unix' | 'tcp'
  remoteAddress: string
  since: number
  requests: number
}

function paramsOf(params: unknown): Record<string, unknown> {
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new KvError(ErrorCode.INVALID, 'request params must be an object')
  }
  return params as Record<string, unknown>
}

// Validation happens inside the generator so a bad range fails the stream, not the dispatcher.
async function* queryPages(store: LocalStore, params: unknown, signal: AbortSignal): AsyncGenerator<unknown> {
  yield* store.query(checkRange(params), signal)
}

/** registerLocalHandlers wires the store and the admin calls onto `server`. */
export function registerLocalHandlers(
  server: WireServer,
  store: LocalStore,
  info: () => Record<string, unknown>,
  onUnexpected: (error: unknown, method: string) => void = () => undefined,
): void {
  server.handle(LocalMethod.get, async (params) => {
    const value = await store.get(checkKey(paramsOf(params).key))
    return value ?? null
  })
  server.handle(LocalMethod.getMany, async (params) => {
    const values = await store.getMany(checkKeys(paramsOf(params).keys))
    // null, not undefined, marks an absent key: it survives every msgpack decoder.
    return values.map((value) => value ?? null)
  })
  server.handle(LocalMethod.multi, (params) =>
    executeMulti(store, checkMultiOps(params), (error) => onUnexpected(error, LocalMethod.multi)),
  )
  server.handle(LocalMethod.multiBinary, (params) =>
    executeMultiBinary(store, params, (error) => onUnexpected(error, LocalMethod.multiBinary)),
  )
  server.handle(LocalMethod.has, async (params) => (await store.get(checkKey(paramsOf(params).key))) !== undefined)
  server.handle(LocalMethod.getSize, async (params) => {
    const value = await store.get(checkKey(paramsOf(params).key))
    return value === undefined ? null : value.length
  })
  server.handle(LocalMethod.put, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    const op = { type: 'put', key: checkKey(p.key), value: checkValue(p.value) } as const
    await store.write(ctx.requestId, [op], checkSync(p))
    return null
  })
  server.handle(LocalMethod.del, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    await store.write(ctx.requestId, [{ type: 'del', key: checkKey(p.key) }], checkSync(p))
    return null
  })
  server.handle(LocalMethod.batch, async (params, ctx: RequestContext) => {
    const p = paramsOf(params)
    const ops = checkOps(p.ops)
    const sync = checkSync(p)
    // An empty batch still goes through the store so that its id is recorded like any write.
    await store.write(ctx.requestId, ops, sync)
    return null
  })
  server.handle(LocalMethod.sync, async () => {
    await store.sync()
    return null
  })
  server.handleStream(LocalMethod.query, (params, ctx: RequestContext) => queryPages(store, params, ctx.signal))
  server.handle(LocalMethod.clients, async (): Promise<ClientRecord[]> =>
    server.peers().map((peer) => ({
      id: peer.clientId,
      name: peer.name,
      pid: peer.pid,
      transport: peer.transport,
      remoteAddress: peer.remoteAddress,
      since: peer.connectedAt,
      requests: peer.requests,
    })),
  )
  server.handle(LocalMethod.info, async () => ({ ...info(), stats: { ...store.stats, recentRequestIds: store.recentRequestIds } }))
}
