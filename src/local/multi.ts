/**
 * `kv.multi`: many independent single-key operations in one request frame, answered by one
 * reply frame. Clients coalesce the concurrent calls of one event-loop turn into it (like Redis
 * pipelining), which amortises framing, MessagePack, syscalls and promises over the whole set.
 *
 * Each operation is independent: it carries its own 16-byte request id (a write is applied at
 * most once per id, exactly as a lone `kv.put`, so re-sending an op after a reconnect, alone or
 * in another multi frame, is safe), and gets its own result or error (a bad op fails only
 * itself). The frame is not atomic; `kv.batch` is the atomic form. The server answers all the
 * reads of a frame with one engine getMany and queues all its writes together, so they share
 * one engine batch (group commit).
 *
 * Wire shape: params `{ ops: MultiOp[] }`, result `MultiResult[]` in the same order.
 */
import { ErrorCode, KvError } from '../errors.js'
import { errorToWire } from '../wire/codec.js'
import type { LocalStore } from './store.js'
import { checkKey, checkValue, type WireOp } from './validate.js'

/** multiOpsMax: most operations in one `kv.multi` frame; clients split larger sets. */
export const multiOpsMax = 1024

/** MultiKind numbers the operations a multi frame may carry (small integers keep frames short). */
export const MultiKind = { get: 0, put: 1, del: 2, has: 3, getSize: 4 } as const

/** MultiKindValue is one of the MultiKind numbers. */
export type MultiKindValue = (typeof MultiKind)[keyof typeof MultiKind]

/**
 * MultiOp is one operation as it travels: `[kind, id, key]` for reads, `[kind, id, key, value, sync]`
 * for a put, `[kind, id, key, null, sync]` for a del. `id` is the op's 16-byte request id.
 */
export type MultiOp = [MultiKindValue, Buffer, Buffer, (Buffer | null)?, boolean?]

/**
 * MultiResult is one op's answer: its result (Buffer or null for get, boolean for has, number
 * or null for getSize, null for writes), or `{ code, message, details? }` when it failed. A
 * plain object never is a result, so the two cannot be confused.
 */
export type MultiResult = Buffer | boolean | number | null | { code: string; message: string; details?: Record<string, unknown> }

function invalid(message: string): KvError {
  return new KvError(ErrorCode.INVALID, message)
}

/** checkMultiOps validates the frame as a whole; each op is validated on its own later. */
export function checkMultiOps(params: unknown): unknown[] {
  const ops = params !== null && typeof params === 'object' ? (params as { ops?: unknown }).ops : undefined
  if (!Array.isArray(ops)) throw invalid('kv.multi params must be { ops: array }')
  if (ops.length > multiOpsMax) {
    throw new KvError(ErrorCode.INVALID, `kv.multi carries ${ops.length} ops, more than multiOpsMax (${multiOpsMax})`, {
      ops: ops.length,
      multiOpsMax,
    })
  }
  return ops
}

/** ParsedOp is a validated op: reads carry the key, writes the id, the engine op and sync. */
export type ParsedOp = { read: true; kind: MultiKindValue; key: Buffer } | { read: false; id: Buffer; op: WireOp; sync: boolean }

function parseOp(raw: unknown): ParsedOp {
  if (!Array.isArray(raw) || raw.length < 3) throw invalid('a kv.multi op must be [kind, id, key, value?, sync?]')
  const [kind, id, key, value, sync] = raw as unknown[]
  if (!Buffer.isBuffer(id) || id.length !== 16) throw invalid('a kv.multi op id must be 16 bytes')
  if (sync !== undefined && sync !== null && typeof sync !== 'boolean') throw invalid('sync must be a boolean')
  // checkKey and checkValue inside check the types of key and value at run time.
  return parseDecodedOp(kind as number, id, key as Buffer, value as Buffer | null, sync !== false)
}

/** parseDecodedOp validates one op of either frame form (msgpack kv.multi, or binary: src/local/multi-codec.ts). */
export function parseDecodedOp(kind: number, id: Buffer, key: Buffer, value: Buffer | null, sync: boolean): ParsedOp {
  switch (kind) {
    case MultiKind.get:
    case MultiKind.has:
    case MultiKind.getSize:
      return { read: true, kind, key: checkKey(key) }
    case MultiKind.put:
      return { read: false, id, op: { type: 'put', key: checkKey(key), value: checkValue(value) }, sync }
    case MultiKind.del:
      return { read: false, id, op: { type: 'del', key: checkKey(key) }, sync }
    default:
      throw invalid(`unknown kv.multi op kind ${kind}`)
  }
}

function readResult(kind: MultiKindValue, value: Buffer | undefined): MultiResult {
  if (kind === MultiKind.has) return value !== undefined
  if (kind === MultiKind.getSize) return value === undefined ? null : value.length
  return value ?? null
}

/**
 * enqueueWrites queues a frame's writes, settling through callbacks rather than a promise per
 * write, and resolves once every one has settled (`failed` is told which did not). The
 * callbacks do not hold `writes`, so a write's value is released as soon as it is written.
 */
function enqueueWrites(store: LocalStore, writes: Array<ParsedOp & { read: false }>, failed: (index: number, error: unknown) => void): Promise<void> {
  let resolve!: () => void
  const settled = new Promise<void>((done) => (resolve = done))
  const progress: WritesProgress = { left: writes.length, failed, resolve }
  for (let i = 0; i < writes.length; i++) {
    const write = writes[i]!
    store.enqueueWrite(write.id, [write.op], write.sync, settleWrite.bind(null, progress, i))
  }
  return settled
}

interface WritesProgress {
  left: number
  failed: (index: number, error: unknown) => void
  resolve: () => void
}

function settleWrite(progress: WritesProgress, index: number, error?: unknown): void {
  if (error !== undefined) progress.failed(index, error)
  if (--progress.left === 0) progress.resolve()
}

/**
 * executeMulti runs the ops of one frame: every read through one store getMany, every write
 * queued for the same commit group. Settles once every op has its own result or error.
 */
export function executeMulti(store: LocalStore, rawOps: unknown[], onUnexpected: (error: unknown) => void): Promise<MultiResult[]> {
  return executeParsed(store, rawOps.length, (at) => parseOp(rawOps[at]), onUnexpected)
}

/**
 * executeParsed is executeMulti over `count` ops that `parse(at)` validates (throwing for a bad
 * op, which fails only that op), whatever form they travelled in.
 */
export async function executeParsed(store: LocalStore, count: number, parse: (at: number) => ParsedOp, onUnexpected: (error: unknown) => void): Promise<MultiResult[]> {
  const results: MultiResult[] = new Array(count)
  const readAt: number[] = []
  const readKeys: Buffer[] = []
  const writeAt: number[] = []
  const writeOps: Array<ParsedOp & { read: false }> = []
  const fail = (at: number, error: unknown): void => {
    if (!(error instanceof KvError)) onUnexpected(error)
    results[at] = errorToWire(error)
  }
  for (let at = 0; at < count; at++) {
    let parsed: ParsedOp
    try {
      parsed = parse(at)
    } catch (error) {
      fail(at, error)
      continue
    }
    if (parsed.read) {
      readAt.push(at)
      readKeys.push(parsed.key)
      results[at] = parsed.kind
    } else {
      results[at] = null
      writeAt.push(at)
      writeOps.push(parsed)
    }
  }
  // Reads go first, so a frame's reads see the state before its writes (no order is promised).
  const reading = readKeys.length > 0 ? store.getMany(readKeys) : undefined
  const writing = writeOps.length === 0 ? undefined : enqueueWrites(store, writeOps, (i, error) => fail(writeAt[i]!, error))
  if (reading !== undefined) {
    try {
      const values = await reading
      for (let i = 0; i < readAt.length; i++) results[readAt[i]!] = readResult(results[readAt[i]!] as MultiKindValue, values[i])
    } catch (error) {
      for (const at of readAt) fail(at, error)
    }
  }
  await writing
  return results
}
