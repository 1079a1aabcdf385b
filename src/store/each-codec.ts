/**
 * The binary form of an `each` command (a proxy's group of independent single-key writes), so
 * a group is encoded ONCE, by the proxy, and travels unchanged as the store.write parameter, the
 * Raft proposal, the log entry and the replicated message, and is decoded into views (no copies
 * of keys or values) where it is validated (the leader) and applied (every replica). msgpack
 * decoding of the same group into objects was the largest single cost of applying it.
 *
 * Layout (integers big-endian):
 *   EACH_TAG (1) | units (u32) | units × [ id (16) | ops (u16) | ops × op ]
 *   op = 0 (put) | key length (u32) | key | value length (u32) | value
 *      | 1 (del) | key length (u32) | key
 * The first byte tells it from a msgpack command (always a map: 0x80..0x8f, 0xde, 0xdf).
 *
 * Fault model: the bytes come from a peer holding the cluster token, and from the log; both are
 * checked in full (every length against what is left, the key, value and batch limits, at least
 * one unit and one op per unit, nothing trailing), so a truncated or lying group is refused with
 * KV_ERR_INVALID and never half applied.
 */
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import type { WireOp } from '../local/validate.js'
import type { WriteOp, WriteUnit } from './machine.js'

/** EACH_TAG is the first byte of a binary `each` command. */
export const EACH_TAG = 0x01
/** EACH_UNIT_OPS_MAX: most ops one unit may carry (the u16 count). */
export const EACH_UNIT_OPS_MAX = 0xffff

/** isEachCommand tells whether log entry data is a binary `each` command. */
export function isEachCommand(data: Uint8Array): boolean {
  return data.byteLength > 0 && data[0] === EACH_TAG
}

/** encodeEach encodes units of validated ops (ids of 16 bytes) as one binary `each` command. */
export function encodeEach(units: ReadonlyArray<{ id: Uint8Array; ops: readonly WireOp[] }>): Buffer {
  return encodeEachParts(units, 0, Number.POSITIVE_INFINITY).head
}

// A store.write request body is the MessagePack array ['store.write', { shard, each }]. Its header
// is written by hand in front of the command (shard always as uint32, each as bin32), so the
// wire encoder never copies the group's values.
const REQUEST_PREFIX = Buffer.from([0x92, 0xab, ...Buffer.from('store.write'), 0x82, 0xa5, ...Buffer.from('shard'), 0xce])
const EACH_KEY = Buffer.from([0xa4, ...Buffer.from('each'), 0xc6])
/** EACH_REQUEST_HEADER_BYTES: prefix, shard (u32), the `each` key and bin32 tag, its length (u32). */
const EACH_REQUEST_HEADER_BYTES = REQUEST_PREFIX.length + 4 + EACH_KEY.length + 4

/**
 * valueByReferenceBytes: values at least this large go into a remote request body by reference
 * (their own part of the frame's writev), not copied into it. A 1 MiB file chunk copied into a
 * fresh buffer cost ~0.3 ms (most of it the new pages' faults) on the front end's thread.
 */
export const valueByReferenceBytes = 16 * 1024

/**
 * EachRequest is a proxy's group encoded once as a `store.write` request: `each` is the binary
 * command (built when an in-process leader needs it), `body(shard)` the wire body around it for a
 * remote shard leader, as parts: the encoded headers, keys and small values in one buffer, and
 * each large value as it is, so its bytes are copied only by the socket write.
 * NB: a large value is therefore read when the frame is written, not when the write was submitted:
 * its owner must not change it until the write settles (FileStore chunks are never changed).
 */
export class EachRequest {
  private contiguous: Buffer | undefined
  private parts: Buffer[] | undefined
  private shard = -1

  constructor(private readonly units: ReadonlyArray<{ id: Uint8Array; ops: readonly WireOp[] }>) {}

  /** each is the binary `each` command (in process: the store.write parameter as it is). */
  get each(): Buffer {
    this.contiguous ??= encodeEach(this.units)
    return this.contiguous
  }

  /** body is the MessagePack body of `store.write { shard, each }` as parts; the same parts for the same shard. */
  body(shard: number): Buffer[] {
    if (!Number.isInteger(shard) || shard < 0 || shard > 0xffffffff) throw new KvError(ErrorCode.INVALID, `shard id ${shard} is not a u32`)
    if (shard === this.shard) return this.parts!
    // Parts already handed to a connection may still be queued by reference: another shard (the
    // slots moved between attempts, rare) gets parts of its own instead of a rewrite.
    const { head, parts, eachBytes } = encodeEachParts(this.units, EACH_REQUEST_HEADER_BYTES, valueByReferenceBytes)
    REQUEST_PREFIX.copy(head, 0)
    head.writeUInt32BE(shard, REQUEST_PREFIX.length)
    EACH_KEY.copy(head, REQUEST_PREFIX.length + 4)
    head.writeUInt32BE(eachBytes, EACH_REQUEST_HEADER_BYTES - 4)
    this.parts = parts
    this.shard = shard
    return parts
  }
}

/**
 * encodeEachParts encodes units as an `each` command after `headroom` bytes left for the caller,
 * with every value of `byReferenceBytes` or more left out of the encoded buffer (`head`) and
 * placed, by reference, between its slices in `parts`. With no value that large, `head` is the
 * whole command (encodeEach).
 */
function encodeEachParts(units: ReadonlyArray<{ id: Uint8Array; ops: readonly WireOp[] }>, headroom: number, byReferenceBytes: number): { head: Buffer; parts: Buffer[]; eachBytes: number } {
  let eachBytes = 5
  let referenced = 0
  for (const unit of units) {
    eachBytes += 18
    for (const op of unit.ops) {
      eachBytes += 5 + op.key.length
      if (op.type !== 'put') continue
      eachBytes += 4 + op.value.length
      if (op.value.length >= byReferenceBytes) referenced += op.value.length
    }
  }
  const head = Buffer.allocUnsafe(headroom + eachBytes - referenced)
  const parts: Buffer[] = []
  let start = 0
  head[headroom] = EACH_TAG
  head.writeUInt32BE(units.length, headroom + 1)
  let at = headroom + 5
  for (const unit of units) {
    if (unit.id.byteLength !== 16 || unit.ops.length === 0 || unit.ops.length > EACH_UNIT_OPS_MAX) throw new KvError(ErrorCode.INVALID, 'an each unit needs a 16-byte id and 1..65535 ops')
    head.set(unit.id, at)
    head.writeUInt16BE(unit.ops.length, at + 16)
    at += 18
    for (const op of unit.ops) {
      head[at] = op.type === 'put' ? 0 : 1
      head.writeUInt32BE(op.key.length, at + 1)
      head.set(op.key, at + 5)
      at += 5 + op.key.length
      if (op.type !== 'put') continue
      head.writeUInt32BE(op.value.length, at)
      at += 4
      if (op.value.length >= byReferenceBytes) {
        parts.push(head.subarray(start, at), Buffer.from(op.value.buffer, op.value.byteOffset, op.value.byteLength))
        start = at
      } else {
        head.set(op.value, at)
        at += op.value.length
      }
    }
  }
  if (start < at) parts.push(head.subarray(start, at))
  return { head, parts, eachBytes }
}

function malformed(why: string): KvError {
  return new KvError(ErrorCode.INVALID, `malformed each command: ${why}`)
}

/** Reader walks the bytes of one command, refusing any length past the end. */
class Reader {
  at = 0
  readonly view: Buffer

  constructor(data: Uint8Array) {
    this.view = Buffer.from(data.buffer, data.byteOffset, data.byteLength)
  }

  need(bytes: number, what: string): void {
    if (bytes > this.view.length - this.at) throw malformed(`${what} runs past the end`)
  }

  u8(): number {
    this.need(1, 'an op type')
    return this.view[this.at++]!
  }

  u16(): number {
    this.need(2, 'an op count')
    this.at += 2
    return this.view.readUInt16BE(this.at - 2)
  }

  u32(what: string): number {
    this.need(4, what)
    this.at += 4
    return this.view.readUInt32BE(this.at - 4)
  }

  bytes(length: number, what: string): Buffer {
    this.need(length, what)
    this.at += length
    return this.view.subarray(this.at - length, this.at)
  }
}

/** decodeEach checks a binary `each` command in full and returns its units, whose ids, keys and values are views of `data`. */
export function decodeEach(data: Uint8Array): WriteUnit[] {
  const reader = new Reader(data)
  if (reader.u8() !== EACH_TAG) throw malformed('wrong tag')
  const count = reader.u32('the unit count')
  // Each unit takes at least 18 + 5 bytes: a lying count cannot make us allocate past the data.
  if (count === 0 || count * 23 > data.byteLength) throw malformed(`${count} units in ${data.byteLength} bytes`)
  const units: WriteUnit[] = new Array(count)
  let opsTotal = 0
  let bytesTotal = 0
  for (let u = 0; u < count; u++) {
    const id = reader.bytes(16, 'an id')
    const opCount = reader.u16()
    if (opCount === 0) throw malformed(`unit ${u} has no ops`)
    opsTotal += opCount
    if (opsTotal > Limits.batchOpsMax) throw new KvError(ErrorCode.BATCH_TOO_LARGE, `each command of more than batchOpsMax (${Limits.batchOpsMax}) ops`, { batchOpsMax: Limits.batchOpsMax })
    const ops: WriteOp[] = new Array(opCount)
    for (let i = 0; i < opCount; i++) {
      const type = reader.u8()
      if (type > 1) throw malformed(`op type ${type}`)
      const key = reader.bytes(reader.u32('a key length'), 'a key')
      if (key.length > Limits.keyBytesMax) throw new KvError(ErrorCode.KEY_TOO_LARGE, `key of ${key.length} bytes, more than keyBytesMax (${Limits.keyBytesMax})`, { keyBytesMax: Limits.keyBytesMax })
      bytesTotal += key.length
      if (type === 1) {
        ops[i] = [1, key]
        continue
      }
      const value = reader.bytes(reader.u32('a value length'), 'a value')
      if (value.length > Limits.valueBytesMax) throw new KvError(ErrorCode.VALUE_TOO_LARGE, `value of ${value.length} bytes, more than valueBytesMax (${Limits.valueBytesMax})`, { valueBytesMax: Limits.valueBytesMax })
      bytesTotal += value.length
      ops[i] = [0, key, value]
    }
    if (bytesTotal > Limits.batchBytesMax) throw new KvError(ErrorCode.BATCH_TOO_LARGE, `each command of more than batchBytesMax (${Limits.batchBytesMax}) bytes`, { batchBytesMax: Limits.batchBytesMax })
    units[u] = { id, ops }
  }
  if (reader.at !== data.byteLength) throw malformed(`${data.byteLength - reader.at} trailing bytes`)
  return units
}
