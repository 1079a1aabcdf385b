/**
 * A sorted map of Buffer keys (bytewise order) with O(n / B) snapshots, for the memory engine.
 *
 * Layout: a list of chunks, each a sorted run of at most `chunkEntriesMax` (B) entries; the
 * chunks are in key order and never empty. A snapshot copies the list of chunk references
 * and bumps the map's version; a chunk whose version is older than the map's is shared with
 * some snapshot and is copied before its first write (copy-on-write at chunk granularity).
 *
 * Costs, with n entries: get O(log n); set/delete O(log n + B), plus one O(B) chunk copy when
 * the chunk is shared, plus O(n / B) when a chunk is split or removed; snapshot O(n / B);
 * iteration O(1) per entry after an O(log n) seek.
 */

/** chunkEntriesMax is B: the most entries one chunk holds before it is split in two. */
export const chunkEntriesMax = 256

interface Chunk {
  readonly keys: Buffer[]
  readonly values: Buffer[]
  /** version: the map version that owns this chunk; older chunks are frozen (shared). */
  readonly version: number
}

/** Position is a cursor into a chunk list; valid when both indexes are in range. */
export interface Position {
  chunk: number
  index: number
}

/** Snapshot is a frozen view of a SortedMap: its chunks are never written again. */
export class Snapshot {
  readonly chunks: readonly Chunk[]
  readonly size: number

  constructor(chunks: readonly Chunk[], size: number) {
    this.chunks = chunks
    this.size = size
  }

  /** seekFirst returns the position of the first key after `key` (or at it, when inclusive). */
  seekFirst(bound: { key: Buffer; inclusive: boolean } | undefined): Position {
    if (bound === undefined) return { chunk: 0, index: 0 }
    const chunk = chunkFor(this.chunks, bound.key)
    if (chunk === this.chunks.length) return { chunk, index: 0 }
    const keys = this.chunks[chunk]!.keys
    let index = lowerBound(keys, bound.key)
    if (!bound.inclusive && index < keys.length && keys[index]!.equals(bound.key)) index++
    return this.normalize({ chunk, index })
  }

  /** seekLast returns the position of the last key before `key` (or at it, when inclusive). */
  seekLast(bound: { key: Buffer; inclusive: boolean } | undefined): Position {
    if (bound === undefined) return this.last()
    const after = this.seekFirst({ key: bound.key, inclusive: !bound.inclusive })
    return this.previous(after)
  }

  /** entry returns the entry at a valid position, or undefined past either end. */
  entry(position: Position): [Buffer, Buffer] | undefined {
    const chunk = this.chunks[position.chunk]
    if (chunk === undefined || position.index < 0 || position.index >= chunk.keys.length) return undefined
    return [chunk.keys[position.index]!, chunk.values[position.index]!]
  }

  /** next returns the position after `position`. */
  next(position: Position): Position {
    return this.normalize({ chunk: position.chunk, index: position.index + 1 })
  }

  /** previous returns the position before `position` (a position past the end is allowed). */
  previous(position: Position): Position {
    if (position.index > 0) return { chunk: position.chunk, index: position.index - 1 }
    const chunk = position.chunk - 1
    return { chunk, index: chunk >= 0 ? this.chunks[chunk]!.keys.length - 1 : -1 }
  }

  private last(): Position {
    const chunk = this.chunks.length - 1
    return { chunk, index: chunk >= 0 ? this.chunks[chunk]!.keys.length - 1 : -1 }
  }

  private normalize(position: Position): Position {
    const chunk = this.chunks[position.chunk]
    if (chunk !== undefined && position.index >= chunk.keys.length) return { chunk: position.chunk + 1, index: 0 }
    return position
  }
}

/** SortedMap is the live, writable map; `snapshot()` freezes what it holds now. */
export class SortedMap {
  /** Invariant: chunks are non-empty, sorted, and every key of chunk i is below every key of chunk i+1. */
  #chunks: Chunk[] = []
  /** Invariant: a chunk is written in place only if chunk.version === #version. */
  #version = 0
  #size = 0

  /** size is the number of entries. */
  get size(): number {
    return this.#size
  }

  /** get returns the value stored under `key`, or undefined. */
  get(key: Buffer): Buffer | undefined {
    const chunk = this.#chunks[chunkFor(this.#chunks, key)]
    if (chunk === undefined) return undefined
    const index = lowerBound(chunk.keys, key)
    return index < chunk.keys.length && chunk.keys[index]!.equals(key) ? chunk.values[index] : undefined
  }

  /** set stores `value` under `key`, replacing any previous value. */
  set(key: Buffer, value: Buffer): void {
    if (this.#chunks.length === 0) {
      this.#chunks.push({ keys: [key], values: [value], version: this.#version })
      this.#size = 1
      return
    }
    const at = Math.min(chunkFor(this.#chunks, key), this.#chunks.length - 1)
    const chunk = this.owned(at)
    const index = lowerBound(chunk.keys, key)
    if (index < chunk.keys.length && chunk.keys[index]!.equals(key)) {
      chunk.values[index] = value
      return
    }
    chunk.keys.splice(index, 0, key)
    chunk.values.splice(index, 0, value)
    this.#size++
    if (chunk.keys.length > chunkEntriesMax) {
      const half = chunk.keys.length >>> 1
      const right: Chunk = { keys: chunk.keys.splice(half), values: chunk.values.splice(half), version: this.#version }
      this.#chunks.splice(at + 1, 0, right)
    }
  }

  /** delete removes `key` and reports whether it was present. */
  delete(key: Buffer): boolean {
    const at = chunkFor(this.#chunks, key)
    const found = this.#chunks[at]
    if (found === undefined) return false
    const index = lowerBound(found.keys, key)
    if (index >= found.keys.length || !found.keys[index]!.equals(key)) return false
    const chunk = this.owned(at)
    chunk.keys.splice(index, 1)
    chunk.values.splice(index, 1)
    this.#size--
    if (chunk.keys.length === 0) this.#chunks.splice(at, 1)
    else this.maybeMerge(at)
    return true
  }

  /** snapshot freezes the current contents; later writes copy the chunks they touch. */
  snapshot(): Snapshot {
    this.#version++
    return new Snapshot(this.#chunks.slice(), this.#size)
  }

  /** restore makes the map hold exactly what `snapshot` held (a simulated crash rolls back to one). */
  restore(snapshot: Snapshot): void {
    this.#version++
    this.#chunks = snapshot.chunks.slice()
    this.#size = snapshot.size
  }

  /** owned returns chunk `at`, first copying it if a snapshot shares it. */
  private owned(at: number): Chunk {
    const chunk = this.#chunks[at]!
    if (chunk.version === this.#version) return chunk
    const copy: Chunk = { keys: chunk.keys.slice(), values: chunk.values.slice(), version: this.#version }
    this.#chunks[at] = copy
    return copy
  }

  /** maybeMerge joins a small chunk with its successor so deletes cannot leave a list of tiny chunks. */
  private maybeMerge(at: number): void {
    const chunk = this.#chunks[at]!
    const next = this.#chunks[at + 1]
    if (next === undefined || chunk.keys.length >= chunkEntriesMax / 4) return
    if (chunk.keys.length + next.keys.length > chunkEntriesMax / 2) return
    const merged = this.owned(at)
    merged.keys.push(...next.keys)
    merged.values.push(...next.values)
    this.#chunks.splice(at + 1, 1)
  }
}

/** lowerBound returns the first index whose key is >= `key` (keys.length if none). */
function lowerBound(keys: readonly Buffer[], key: Buffer): number {
  let low = 0
  let high = keys.length
  while (low < high) {
    const middle = (low + high) >>> 1
    if (Buffer.compare(keys[middle]!, key) < 0) low = middle + 1
    else high = middle
  }
  return low
}

/** chunkFor returns the first chunk whose last key is >= `key` (chunks.length if none). */
function chunkFor(chunks: readonly Chunk[], key: Buffer): number {
  let low = 0
  let high = chunks.length
  while (low < high) {
    const middle = (low + high) >>> 1
    const keys = chunks[middle]!.keys
    if (Buffer.compare(keys[keys.length - 1]!, key) < 0) low = middle + 1
    else high = middle
  }
  return low
}
