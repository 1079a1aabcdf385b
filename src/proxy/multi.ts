/**
 * The proxy's `kv.multi` (the frame shape of src/local/multi.ts): the single-key calls a client
 * coalesced into one frame, each with its own 16-byte request id and its own result or error.
 * Writes go to the WriteBatcher (grouped per shard with every other write of this turn, each
 * still exactly-once under its own id); reads of one kind go out as one `store.read` per shard.
 * A bad op fails only itself.
 */
import { ErrorCode, KvError } from '../errors.js'
import { MultiKind, multiOpsMax, type MultiKindValue, type MultiResult } from '../local/multi.js'
import { checkKey, checkValue, type WireOp } from '../local/validate.js'
import { decodeMultiRequest, encodeMultiReply } from '../local/multi-codec.js'
import { errorToWire, type EncodedBody } from '../wire/codec.js'
import type { WriteBatcher } from './batcher.js'

/** MultiReader reads keys through the proxy (ClusterKV.read). */
export type MultiReader = (keys: Buffer[], kind: 'get' | 'has' | 'size') => Promise<unknown[]>

/** ParsedOp is one validated op of a frame. */
type ParsedOp = { read: 'get' | 'has' | 'size'; key: Buffer } | { read: undefined; id: Buffer; op: WireOp }

function invalid(message: string): KvError {
  return new KvError(ErrorCode.INVALID, message)
}

const READ_KINDS: Partial<Record<MultiKindValue, 'get' | 'has' | 'size'>> = { [MultiKind.get]: 'get', [MultiKind.has]: 'has', [MultiKind.getSize]: 'size' }

function parseOp(raw: unknown): ParsedOp {
  if (!Array.isArray(raw) || raw.length < 3) throw invalid('a kv.multi op must be [kind, id, key, value?, sync?]')
  const [kind, id, key, value, sync] = raw as unknown[]
  if (!(id instanceof Uint8Array) || id.byteLength !== 16) throw invalid('a kv.multi op id must be 16 bytes')
  // Every acknowledged cluster write is fsynced by a majority, whatever `sync` asks.
  if (sync !== undefined && sync !== null && typeof sync !== 'boolean') throw invalid('sync must be a boolean')
  const read = READ_KINDS[kind as MultiKindValue]
  if (read !== undefined) return { read, key: checkKey(key) }
  const bytes = Buffer.from(id.buffer, id.byteOffset, 16)
  if (kind === MultiKind.put) return { read: undefined, id: bytes, op: { type: 'put', key: checkKey(key), value: checkValue(value) } }
  if (kind === MultiKind.del) return { read: undefined, id: bytes, op: { type: 'del', key: checkKey(key) } }
  throw invalid(`unknown kv.multi op kind ${String(kind)}`)
}

/** executeClusterMulti answers one kv.multi frame: every op settles with its own result or error. */
export function executeClusterMulti(params: unknown, batcher: WriteBatcher, read: MultiReader): Promise<MultiResult[]> {
  const ops = params !== null && typeof params === 'object' ? (params as { ops?: unknown }).ops : undefined
  if (!Array.isArray(ops)) throw invalid('kv.multi params must be { ops: array }')
  if (ops.length > multiOpsMax) throw new KvError(ErrorCode.INVALID, `kv.multi carries ${ops.length} ops, more than multiOpsMax (${multiOpsMax})`, { ops: ops.length, multiOpsMax })
  return executeParsed(ops.length, (at) => parseOp(ops[at]), batcher, read)
}

/**
 * executeClusterMultiBinary answers one `kv.multiBinary` frame (src/local/multi-codec.ts: ids,
 * keys and values read as views of the request, results written into one reply buffer), so a
 * client of the cluster skips the MessagePack `kv.multi` fallback and its extra round trip.
 */
export async function executeClusterMultiBinary(payload: unknown, batcher: WriteBatcher, read: MultiReader): Promise<EncodedBody> {
  const ops = decodeMultiRequest(payload)
  const results = await executeParsed(ops.length, (at) => {
    const op = ops[at]!
    return parseOp([op.kind, op.id, op.key, op.value ?? undefined, op.sync])
  }, batcher, read)
  return encodeMultiReply(results)
}

async function executeParsed(count: number, parse: (at: number) => ParsedOp, batcher: WriteBatcher, read: MultiReader): Promise<MultiResult[]> {
  const results: MultiResult[] = new Array(count).fill(null)
  const reads = new Map<'get' | 'has' | 'size', { at: number[]; keys: Buffer[] }>()
  const waits: Array<Promise<void>> = []
  for (let at = 0; at < count; at++) {
    let parsed: ParsedOp
    try {
      parsed = parse(at)
    } catch (error) {
      results[at] = errorToWire(error)
      continue
    }
    if (parsed.read === undefined) {
      waits.push(batcher.submit(parsed.id, [parsed.op]).then(() => undefined, (error: unknown) => void (results[at] = errorToWire(error))))
      continue
    }
    let group = reads.get(parsed.read)
    if (group === undefined) reads.set(parsed.read, (group = { at: [], keys: [] }))
    group.at.push(at)
    group.keys.push(parsed.key)
  }
  for (const [kind, group] of reads) {
    waits.push(read(group.keys, kind).then(
      (values) => group.at.forEach((at, i) => (results[at] = (values[i] ?? null) as MultiResult)),
      (error: unknown) => group.at.forEach((at) => (results[at] = errorToWire(error))),
    ))
  }
  await Promise.all(waits)
  return results
}
