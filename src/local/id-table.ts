/**
 * IdTable: a set of 16-byte request ids kept in typed arrays (open addressing, linear probing,
 * backward-shift deletion), for the local server's index of applied write ids.
 *
 * Why not a Set of strings: the index holds up to `idsMax` (200,000) ids for minutes, so every
 * one of them is promoted to V8's old generation and re-marked by each major GC, and each
 * lookup hashes a fresh string; under the local benchmark the Set was the largest single
 * JavaScript cost of a put. Here an id costs 16 bytes of a Uint32Array and no object.
 *
 * Ids are random (UUIDs), but a client may choose them, so slots come from a hash of all 16
 * bytes mixed with a per-table random seed: ids crafted to collide in one table do not in
 * another process. The load factor stays at most 1/2; the table doubles when it would pass it.
 */
import { randomInt } from 'node:crypto'
import { assert } from '../errors.js'

/** idTableSlotsMax bounds the table: 2^24 slots (256 MiB of ids); far above any idsMax in use. */
export const idTableSlotsMax = 2 ** 24

const idBytes = 16
const initialSlots = 1024

function word(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0
}

/** IdTable is a set of 16-byte ids; `add/has/delete` read the id at `offset` of a byte array. */
export class IdTable {
  // words[4 * slot .. 4 * slot + 3]: the id in that slot, valid where used[slot] is 1.
  private words = new Uint32Array(initialSlots * 4)
  private used = new Uint8Array(initialSlots)
  private mask = initialSlots - 1
  private count = 0
  private readonly seed = randomInt(2 ** 32) | 0

  /** size is the number of ids in the table. */
  get size(): number {
    return this.count
  }

  /** has tells whether the id at `offset` of `bytes` is in the table. */
  has(bytes: Uint8Array, offset = 0): boolean {
    return this.find(bytes, offset) >= 0
  }

  /** add inserts the id at `offset` of `bytes`; adding an id already present does nothing. */
  add(bytes: Uint8Array, offset = 0): void {
    assert(offset + idBytes <= bytes.length, 'IdTable.add: the id must be 16 bytes')
    if (this.find(bytes, offset) >= 0) return
    if ((this.count + 1) * 2 > this.used.length) this.grow()
    let slot = this.home(bytes, offset)
    while (this.used[slot] === 1) slot = (slot + 1) & this.mask
    this.used[slot] = 1
    for (let i = 0; i < 4; i++) this.words[slot * 4 + i] = word(bytes, offset + 4 * i)
    this.count++
  }

  /** delete removes the id at `offset` of `bytes`; false when it was absent. */
  delete(bytes: Uint8Array, offset = 0): boolean {
    let hole = this.find(bytes, offset)
    if (hole < 0) return false
    // Backward-shift deletion: move later entries of the probe run into the hole when their
    // home slot does not lie (cyclically) between the hole and them, so no tombstones build up.
    for (let next = (hole + 1) & this.mask; this.used[next] === 1; next = (next + 1) & this.mask) {
      const home = this.homeOfSlot(next)
      const stays = hole <= next ? home > hole && home <= next : home > hole || home <= next
      if (stays) continue
      this.words.copyWithin(hole * 4, next * 4, next * 4 + 4)
      hole = next
    }
    this.used[hole] = 0
    this.count--
    return true
  }

  private find(bytes: Uint8Array, offset: number): number {
    const w0 = word(bytes, offset)
    const w1 = word(bytes, offset + 4)
    const w2 = word(bytes, offset + 8)
    const w3 = word(bytes, offset + 12)
    for (let slot = this.hash(w0, w1, w2, w3); this.used[slot] === 1; slot = (slot + 1) & this.mask) {
      const at = slot * 4
      if (this.words[at] === w0 && this.words[at + 1] === w1 && this.words[at + 2] === w2 && this.words[at + 3] === w3) return slot
    }
    return -1
  }

  private home(bytes: Uint8Array, offset: number): number {
    return this.hash(word(bytes, offset), word(bytes, offset + 4), word(bytes, offset + 8), word(bytes, offset + 12))
  }

  private homeOfSlot(slot: number): number {
    const at = slot * 4
    return this.hash(this.words[at]!, this.words[at + 1]!, this.words[at + 2]!, this.words[at + 3]!)
  }

  private hash(w0: number, w1: number, w2: number, w3: number): number {
    let h = Math.imul(w0 ^ this.seed, 0x9e3779b1) ^ Math.imul(w1, 0x85ebca77) ^ Math.imul(w2, 0xc2b2ae3d) ^ Math.imul(w3, 0x27d4eb2f)
    h ^= h >>> 15
    h = Math.imul(h, 0x2c1b3c6d)
    h ^= h >>> 12
    return h & this.mask
  }

  private grow(): void {
    const slots = this.used.length * 2
    assert(slots <= idTableSlotsMax, `IdTable: more than idTableSlotsMax/2 (${idTableSlotsMax / 2}) ids`)
    const words = this.words
    const used = this.used
    this.words = new Uint32Array(slots * 4)
    this.used = new Uint8Array(slots)
    this.mask = slots - 1
    for (let slot = 0; slot < used.length; slot++) {
      if (used[slot] !== 1) continue
      const at = slot * 4
      let target = this.hash(words[at]!, words[at + 1]!, words[at + 2]!, words[at + 3]!)
      while (this.used[target] === 1) target = (target + 1) & this.mask
      this.used[target] = 1
      this.words.set(words.subarray(at, at + 4), target * 4)
    }
  }
}
