/**
 * The key/value routes: GET|PUT|DELETE|HEAD /v1/kv/{key}, GET /v1/kv (list with paging) and
 * POST /v1/batch. Keys in paths and query strings are UTF-8 text, so they can never reach the
 * reserved file namespace (keys starting with 0xFF); listings stop below it.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import type { BatchOp, DistKV, QueryRange } from '../../client/types.js'
import { ErrorCode, KvError } from '../../errors.js'
import { userKeysEnd } from '../../files/keys.js'
import { Limits } from '../../limits.js'
import { declaredLength, notFound, parseJson, readBody, sendJson } from './respond.js'

/** kvListLimitMax: most keys one GET /v1/kv page returns. */
export const kvListLimitMax = 1000

/** kvListLimitDefault: keys per page when `limit` is not given. */
export const kvListLimitDefault = 100

/** sizeLookupsInflight: getSize calls in flight while a listing page is built. */
const sizeLookupsInflight = 16

/** batchBodyBytesMax: largest POST /v1/batch body (base64 values make it about 4/3 of batchBytesMax). */
export const batchBodyBytesMax = Math.ceil((Limits.batchBytesMax * 4) / 3) + 1024 * 1024

function syncOf(url: URL): { sync: boolean } {
  const sync = url.searchParams.get('sync')
  if (sync === null || sync === 'true' || sync === '1') return { sync: true }
  if (sync === 'false' || sync === '0') return { sync: false }
  throw new KvError(ErrorCode.INVALID, `sync must be true or false, got ${sync}`)
}

function valueTooLarge(bytes: number): KvError {
  return new KvError(ErrorCode.VALUE_TOO_LARGE, `value is more than valueBytesMax (${Limits.valueBytesMax}); store large values as files`, {
    bytes,
    valueBytesMax: Limits.valueBytesMax,
  })
}

/** checkValueLength refuses a PUT whose Content-Length is over valueBytesMax, before its body is read. */
export function checkValueLength(req: IncomingMessage): void {
  const length = req.method === 'PUT' ? declaredLength(req) : undefined
  if (length !== undefined && length > Limits.valueBytesMax) throw valueTooLarge(length)
}

/** handleKey serves one key: GET, HEAD, PUT, DELETE. */
export async function handleKey(kv: DistKV, key: string, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  switch (req.method) {
    case 'GET': {
      const value = await kv.get(key)
      if (value === undefined) throw notFound(`key '${key}'`)
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(value.length), 'cache-control': 'no-store' })
      res.end(value)
      return
    }
    case 'HEAD': {
      const size = await kv.getSize(key)
      if (size === undefined) throw notFound(`key '${key}'`)
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(size), 'cache-control': 'no-store' })
      res.end()
      return
    }
    case 'PUT': {
      const value = await readBody(req, Limits.valueBytesMax, valueTooLarge)
      await kv.put(key, value, syncOf(url))
      res.writeHead(204).end()
      return
    }
    case 'DELETE':
      await kv.del(key, syncOf(url))
      res.writeHead(204).end()
      return
    default:
      throw new KvError(ErrorCode.UNKNOWN_METHOD, `method ${req.method} is not allowed on /v1/kv/{key}`)
  }
}

/** listRange turns the query string of GET /v1/kv into a range that stays below the file namespace. */
export function listRange(url: URL): QueryRange & { limit: number } {
  const params = url.searchParams
  const range: QueryRange & { limit: number } = { limit: kvListLimitDefault }
  for (const bound of ['prefix', 'gt', 'gte', 'lt', 'lte'] as const) {
    const value = params.get(bound)
    if (value !== null && (value !== '' || bound !== 'prefix')) range[bound] = value
  }
  const limit = params.get('limit')
  if (limit !== null) {
    const n = Number(limit)
    if (!/^\d+$/.test(limit) || n < 1 || n > kvListLimitMax) throw new KvError(ErrorCode.INVALID, `limit must be 1 to kvListLimitMax (${kvListLimitMax}), got ${limit}`)
    range.limit = n
  }
  const reverse = params.get('reverse')
  if (reverse === 'true' || reverse === '1') range.reverse = true
  else if (reverse !== null && reverse !== 'false' && reverse !== '0') throw new KvError(ErrorCode.INVALID, `reverse must be true or false, got ${reverse}`)
  // UTF-8 text never starts with 0xFF, so any given upper bound is already below the file namespace.
  if (range.lt === undefined && range.lte === undefined) range.lt = userKeysEnd
  return range
}

async function mapBounded<T, R>(items: T[], inflight: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length)
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const index = next++
      out[index] = await fn(items[index]!)
    }
  }
  await Promise.all(Array.from({ length: Math.min(inflight, items.length) }, worker))
  return out
}

/** handleList serves GET /v1/kv: `{ items: [{ key, size }], next? }`; pass `next` as gt (lt when reverse) for the next page. */
export async function handleList(kv: DistKV, res: ServerResponse, url: URL): Promise<void> {
  const range = listRange(url)
  const keys: Buffer[] = []
  let more = false
  // Values are not fetched: a page of big values would cost far more than the sizes alone.
  for await (const [key] of kv.query({ ...range, limit: range.limit + 1, values: false })) {
    if (keys.length === range.limit) {
      more = true
      break
    }
    keys.push(key)
  }
  const sizes = await mapBounded(keys, sizeLookupsInflight, (key) => kv.getSize(key))
  const items = keys.map((key, i) => {
    const text = key.toString('utf8')
    const item: { key: string; size: number | null; keyBase64?: string } = { key: text, size: sizes[i] ?? null }
    if (!Buffer.from(text, 'utf8').equals(key)) item.keyBase64 = key.toString('base64')
    return item
  })
  sendJson(res, 200, more ? { items, next: items[items.length - 1]!.key } : { items })
}

function checkBatchOps(body: unknown): BatchOp[] {
  const ops = (body as { ops?: unknown } | null)?.ops
  if (!Array.isArray(ops)) throw new KvError(ErrorCode.INVALID, 'batch body must be { "ops": [...] }')
  if (ops.length > Limits.batchOpsMax) {
    throw new KvError(ErrorCode.BATCH_TOO_LARGE, `batch has ${ops.length} ops, more than batchOpsMax (${Limits.batchOpsMax})`)
  }
  return ops.map((op: unknown, i): BatchOp => {
    const { type, key, value } = (op ?? {}) as { type?: unknown; key?: unknown; value?: unknown }
    if (typeof key !== 'string') throw new KvError(ErrorCode.INVALID, `ops[${i}].key must be a string`)
    if (type === 'del') return { type, key }
    if (type !== 'put') throw new KvError(ErrorCode.INVALID, `ops[${i}].type must be 'put' or 'del'`)
    if (typeof value !== 'string' || !/^[A-Za-z0-9+/]*={0,2}$/.test(value)) {
      throw new KvError(ErrorCode.INVALID, `ops[${i}].value must be a base64 string`)
    }
    return { type, key, value: Buffer.from(value, 'base64') }
  })
}

/** handleBatch serves POST /v1/batch: `{ ops: [{ type, key, value (base64) }] }`, applied atomically. */
export async function handleBatch(kv: DistKV, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  if (req.method !== 'POST') throw new KvError(ErrorCode.UNKNOWN_METHOD, `method ${req.method} is not allowed on /v1/batch`)
  const body = await readBody(
    req,
    batchBodyBytesMax,
    (bytes) => new KvError(ErrorCode.BATCH_TOO_LARGE, `batch body is more than batchBodyBytesMax (${batchBodyBytesMax})`, { bytes, batchBodyBytesMax }),
  )
  const ops = checkBatchOps(parseJson(body))
  await kv.batch(ops, syncOf(url))
  sendJson(res, 200, { ok: true, ops: ops.length })
}
