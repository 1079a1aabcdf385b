/**
 * Seeded randomness for the simulator: one 32-bit seed drives every choice (fault schedule,
 * network delays, client operations, each node's election jitter), so a seed replays exactly.
 * The generator is xoshiro128** (Blackman & Vigna), seeded through splitmix32 so that nearby
 * seeds give unrelated streams. Never use Math.random anywhere in test/sim.
 */
import { ErrorCode, KvError } from '../../src/errors.js'

const UINT32 = 0x1_0000_0000

function splitmix32(state: { s: number }): number {
  state.s = (state.s + 0x9e3779b9) | 0
  let z = state.s
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b)
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35)
  return (z ^ (z >>> 16)) >>> 0
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k))
}

/** hashString is FNV-1a over a string's UTF-16 code units; used to derive labelled sub-streams and trace hashes. */
export function hashString(text: string, seed = 0x811c9dc5): number {
  let h = seed >>> 0
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i)
    h = Math.imul(h, 0x01000193)
  }
  return h >>> 0
}

/** Random is a deterministic PRNG with the helpers the simulator needs. */
export class Random {
  private a: number
  private b: number
  private c: number
  private d: number

  constructor(seed: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) {
      throw new KvError(ErrorCode.INVALID, `Random: seed must be a non-negative safe integer, got ${seed}`, { seed })
    }
    const state = { s: (seed ^ Math.floor(seed / UINT32)) | 0 }
    this.a = splitmix32(state)
    this.b = splitmix32(state)
    this.c = splitmix32(state)
    this.d = splitmix32(state)
    // xoshiro's all-zero state is a fixed point; splitmix32 cannot produce four zeros, but be explicit.
    if ((this.a | this.b | this.c | this.d) === 0) this.a = 1
  }

  /** uint32 returns the next raw 32-bit output. */
  uint32(): number {
    const result = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0
    const t = this.b << 9
    this.c ^= this.a
    this.d ^= this.b
    this.b ^= this.c
    this.a ^= this.d
    this.c ^= t
    this.d = rotl(this.d, 11)
    return result
  }

  /** float returns a float in [0, 1); this is the RandomSource handed to a RaftNode. */
  float(): number {
    return this.uint32() / UINT32
  }

  /** int returns an integer uniformly in [min, max] (both inclusive). */
  int(min: number, max: number): number {
    if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max) || max < min || max - min >= UINT32) {
      throw new KvError(ErrorCode.INVALID, `Random.int: bad range [${min}, ${max}]`, { min, max })
    }
    return min + Math.floor(this.float() * (max - min + 1))
  }

  /** chance returns true with probability `p`. */
  chance(p: number): boolean {
    return p > 0 && this.float() < p
  }

  /** pick returns one element of a non-empty array. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new KvError(ErrorCode.INVALID, 'Random.pick: empty array')
    return items[this.int(0, items.length - 1)]!
  }

  /** shuffle permutes `items` in place (Fisher-Yates) and returns it. */
  shuffle<T>(items: T[]): T[] {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.int(0, i)
      const tmp = items[i]!
      items[i] = items[j]!
      items[j] = tmp
    }
    return items
  }

  /** fork derives an independent stream named `label`, so adding draws in one part of the sim does not shift another. */
  fork(label: string): Random {
    return new Random(hashString(label, this.uint32()))
  }

  /** source wraps this stream as a Raft RandomSource. */
  source(): () => number {
    return () => this.float()
  }
}
