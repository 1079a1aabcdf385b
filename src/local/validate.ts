/**
 * Input validation for the DistKV operations, shared by the client (which checks before sending)
 * and the local server (which checks again, because a peer may be any program speaking the wire).
 * Every rejection is a KvError with a KV_ERR_* code that names the bound or field it hit.
 */
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'

/** WireOp is one batch operation as it travels on the wire: keys and values already bytes. */
export type WireOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }

/** WireRange is a query range as it travels on the wire: bounds already bytes. */
export interface WireRange {
  gt?: Buffer
  gte?: Buffer
  lt?: Buffer
  lte?: Buffer
  prefix?: Buffer
  limit?: number
  reverse?: boolean
  keys?: boolean
  values?: boolean
}

/** toBytes turns a string (UTF-8) or Uint8Array into a Buffer without copying bytes it already has. */
export function toBytes(input: unknown, field: string): Buffer {
  if (typeof input === 'string') return Buffer.from(input, 'utf8')
  if (Buffer.isBuffer(input)) return input
  if (input instanceof Uint8Array) return Buffer.from(input.buffer, input.byteOffset, input.byteLength)
  throw new KvError(ErrorCode.INVALID, `${field} must be a string or Uint8Array, got ${describe(input)}`, { field })
}

/** checkKey validates a key and returns it as bytes. */
export function checkKey(input: unknown, field = 'key'): Buffer {
  const key = toBytes(input, field)
  if (key.length > Limits.keyBytesMax) {
    throw new KvError(ErrorCode.KEY_TOO_LARGE, `${field} is ${key.length} bytes, more than keyBytesMax (${Limits.keyBytesMax})`, {
      field,
      bytes: key.length,
      keyBytesMax: Limits.keyBytesMax,
    })
  }
  return key
}

/** checkValue validates a value and returns it as bytes. */
export function checkValue(input: unknown, field = 'value'): Buffer {
  const value = toBytes(input, field)
  if (value.length > Limits.valueBytesMax) {
    throw new KvError(
      ErrorCode.VALUE_TOO_LARGE,
      `${field} is ${value.length} bytes, more than valueBytesMax (${Limits.valueBytesMax})`,
      { field, bytes: value.length, valueBytesMax: Limits.valueBytesMax },
    )
  }
  return value
}

/** checkKeys validates the key list of getMany. */
export function checkKeys(input: unknown): Buffer[] {
  if (!Array.isArray(input)) throw new KvError(ErrorCode.INVALID, `keys must be an array, got ${describe(input)}`)
  if (input.length > Limits.getManyKeysMax) {
    throw new KvError(ErrorCode.INVALID, `getMany of ${input.length} keys, more than getManyKeysMax (${Limits.getManyKeysMax})`, {
      getManyKeysMax: Limits.getManyKeysMax,
    })
  }
  return input.map((key, i) => checkKey(key, `keys[${i}]`))
}

/** checkOps validates a batch: each op, the op count and the total bytes. */
export function checkOps(input: unknown): WireOp[] {
  if (!Array.isArray(input)) throw new KvError(ErrorCode.INVALID, `batch ops must be an array, got ${describe(input)}`)
  if (input.length > Limits.batchOpsMax) {
    throw new KvError(ErrorCode.BATCH_TOO_LARGE, `batch of ${input.length} ops, more than batchOpsMax (${Limits.batchOpsMax})`, {
      ops: input.length,
      batchOpsMax: Limits.batchOpsMax,
    })
  }
  let bytes = 0
  const ops = input.map((op: unknown, i): WireOp => {
    if (op === null || typeof op !== 'object') throw new KvError(ErrorCode.INVALID, `ops[${i}] must be an object`)
    const { type, key, value } = op as Record<string, unknown>
    if (type === 'put') {
      const out = { type, key: checkKey(key, `ops[${i}].key`), value: checkValue(value, `ops[${i}].value`) } as const
      bytes += out.key.length + out.value.length
      return out
    }
    if (type === 'del') {
      const out = { type, key: checkKey(key, `ops[${i}].key`) } as const
      bytes += out.key.length
      return out
    }
    throw new KvError(ErrorCode.INVALID, `ops[${i}].type must be 'put' or 'del', got ${describe(type)}`)
  })
  if (bytes > Limits.batchBytesMax) {
    throw new KvError(ErrorCode.BATCH_TOO_LARGE, `batch of ${bytes} bytes, more than batchBytesMax (${Limits.batchBytesMax})`, {
      bytes,
      batchBytesMax: Limits.batchBytesMax,
    })
  }
  return ops
}

/** checkSync reads the `sync` write option: durable unless explicitly false. */
export function checkSync(options: unknown): boolean {
  if (options === undefined || options === null) return true
  if (typeof options !== 'object') throw new KvError(ErrorCode.INVALID, `options must be an object, got ${describe(options)}`)
  const sync = (options as Record<string, unknown>).sync
  if (sync === undefined || sync === null) return true
  if (typeof sync !== 'boolean') throw new KvError(ErrorCode.INVALID, `options.sync must be a boolean, got ${describe(sync)}`)
  return sync
}

/** checkRange validates query options and returns them with bounds as bytes. */
export function checkRange(input: unknown): WireRange {
  if (input === undefined || input === null) return {}
  if (typeof input !== 'object') throw new KvError(ErrorCode.INVALID, `query range must be an object, got ${describe(input)}`)
  const given = input as Record<string, unknown>
  const range: WireRange = {}
  for (const bound of ['gt', 'gte', 'lt', 'lte', 'prefix'] as const) {
    if (given[bound] !== undefined && given[bound] !== null) range[bound] = checkKey(given[bound], `range.${bound}`)
  }
  if (given.limit !== undefined && given.limit !== null) {
    const limit = given.limit
    if (typeof limit !== 'number' || !Number.isInteger(limit) || (limit < 0 && limit !== -1)) {
      throw new KvError(ErrorCode.INVALID, `range.limit must be a non-negative integer (or -1 for none), got ${describe(limit)}`)
    }
    if (limit >= 0) range.limit = limit
  }
  for (const flag of ['reverse', 'keys', 'values'] as const) {
    const value = given[flag]
    if (value === undefined || value === null) continue
    if (typeof value !== 'boolean') throw new KvError(ErrorCode.INVALID, `range.${flag} must be a boolean, got ${describe(value)}`)
    range[flag] = value
  }
  return range
}

/** parseEndpoint splits 'host:port' (or '[v6]:port') into a TCP address. */
export function parseEndpoint(endpoint: string): { host: string; port: number } {
  const match = typeof endpoint === 'string' ? /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(endpoint.trim()) : null
  const port = match ? Number(match[3]) : NaN
  if (!match || port < 1 || port > 65535) throw new KvError(ErrorCode.INVALID, `endpoint must be 'host:port', got ${String(endpoint)}`)
  return { host: (match[1] ?? match[2])!, port }
}

function describe(value: unknown): string {
  if (value === null) return 'null'
  if (Array.isArray(value)) return 'array'
  return typeof value
}
