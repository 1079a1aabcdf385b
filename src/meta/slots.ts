/**
 * Hash slots: every key maps to one of SLOT_COUNT slots, and the meta group maps each slot to
 * a shard. Keys that share a non-empty `{tag}` share a slot (so a batch over them is atomic).
 * The function is part of the cluster's durable format: changing it moves every key.
 */
import { crc32 } from 'node:zlib'

/** SLOT_COUNT is the fixed number of hash slots of a cluster. */
export const SLOT_COUNT = 4096

const OPEN_BRACE = 0x7b
const CLOSE_BRACE = 0x7d

/** hashTag is the part of `key` inside its first `{...}` when that part is non-empty, else the whole key. */
export function hashTag(key: Uint8Array): Uint8Array {
  const open = key.indexOf(OPEN_BRACE)
  if (open < 0) return key
  const close = key.indexOf(CLOSE_BRACE, open + 1)
  if (close <= open + 1) return key
  return key.subarray(open + 1, close)
}

/** slotOf is the hash slot of a key: crc32 of its hash tag modulo SLOT_COUNT. */
export function slotOf(key: Uint8Array): number {
  return crc32(hashTag(key)) % SLOT_COUNT
}

/** SlotRange is a run of consecutive slots owned by one shard, both ends inclusive. */
export interface SlotRange {
  from: number
  to: number
  shard: number
}

/** slotRanges compresses a slot table (slot -> shard id) into runs. */
export function slotRanges(table: readonly number[]): SlotRange[] {
  const out: SlotRange[] = []
  for (let slot = 0; slot < table.length; slot++) {
    const shard = table[slot]!
    const last = out[out.length - 1]
    if (last !== undefined && last.shard === shard && last.to === slot - 1) last.to = slot
    else out.push({ from: slot, to: slot, shard })
  }
  return out
}

/** SlotSet is a fixed-size bit set of slots (the slots a shard replica owns or has frozen). */
export class SlotSet {
  readonly bits: Uint8Array

  constructor(bits?: Uint8Array) {
    this.bits = new Uint8Array(SLOT_COUNT / 8)
    if (bits !== undefined && bits.byteLength === this.bits.byteLength) this.bits.set(bits)
  }

  /** has tells whether `slot` is in the set. */
  has(slot: number): boolean {
    return (this.bits[slot >> 3]! & (1 << (slot & 7))) !== 0
  }

  /** add puts every slot of `slots` in the set. */
  add(slots: Iterable<number>): void {
    for (const slot of slots) this.bits[slot >> 3]! |= 1 << (slot & 7)
  }

  /** delete removes every slot of `slots` from the set. */
  delete(slots: Iterable<number>): void {
    for (const slot of slots) this.bits[slot >> 3]! &= ~(1 << (slot & 7))
  }

  /** size counts the slots in the set. */
  get size(): number {
    let count = 0
    for (let slot = 0; slot < SLOT_COUNT; slot++) if (this.has(slot)) count++
    return count
  }

  /** union adds every slot of `other`. */
  union(other: SlotSet): void {
    for (let i = 0; i < this.bits.length; i++) this.bits[i]! |= other.bits[i]!
  }
}

/** checkSlots validates a list of slot numbers received from a peer or a command line. */
export function checkSlots(input: unknown): number[] | undefined {
  if (!Array.isArray(input) || input.length === 0 || input.length > SLOT_COUNT) return undefined
  for (const slot of input) if (!Number.isInteger(slot) || slot < 0 || slot >= SLOT_COUNT) return undefined
  return input as number[]
}
