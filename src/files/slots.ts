/**
 * Slots: a counting semaphore that bounds the chunk writes one FileStore has in flight across
 * all of its uploads. Why: a cluster applies every chunk through Raft, and 16 uploads with 4
 * chunks each in flight put 64 MiB of proposals in front of each replica's disk at once; each
 * write then waits so long behind the others that it runs into the request timeout, and the
 * retries add to the pile. Queueing the excess here, before the write is sent, keeps the same
 * throughput with short per-write latencies.
 *
 * The waiter queue needs no bound of its own: each upload waits for at most one slot at a
 * time, so it never holds more waiters than there are uploads running.
 */

/** Slots hands out at most `size` slots at a time, first come first served. */
export class Slots {
  #free: number
  readonly #waiters: Array<() => void> = []

  constructor(readonly size: number) {
    this.#free = size
  }

  /** acquire resolves once the caller holds a slot; it must call release() exactly once. */
  acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free--
      return Promise.resolve()
    }
    return new Promise((resolve) => this.#waiters.push(resolve))
  }

  /** release hands the slot to the longest waiter, or frees it. */
  release(): void {
    const next = this.#waiters.shift()
    if (next !== undefined) next()
    else this.#free++
  }

  /** waiting is the number of callers queued for a slot (for tests and metrics). */
  get waiting(): number {
    return this.#waiters.length
  }
}
