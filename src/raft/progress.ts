/**
 * Progress: the leader's view of one follower's log, and the flow control for replicating to it.
 * A follower is in one of three states: probe (one append per heartbeat until the leader finds
 * where the logs agree), replicate (appends pipelined optimistically, bounded by an Inflights
 * window), snapshot (waiting for a snapshot to be delivered; nothing else is sent).
 */
import { assert } from '../errors.js'

/** ProgressState names the replication state of one follower. */
export type ProgressState = 'probe' | 'replicate' | 'snapshot'

/** Inflights is a bounded FIFO of the last indexes of append messages not yet acknowledged. */
export class Inflights {
  // Invariant: count <= capacity; buffer[(start + i) % capacity] for i < count are increasing.
  private readonly buffer: number[]
  private start = 0
  count = 0

  constructor(readonly capacity: number) {
    assert(capacity >= 1, 'Inflights: capacity must be at least 1')
    this.buffer = new Array<number>(capacity).fill(0)
  }

  /** add records an append message whose last entry is `index`. */
  add(index: number): void {
    assert(!this.full(), `Inflights.add: window of inflightMessagesMax=${this.capacity} is full`)
    this.buffer[(this.start + this.count) % this.capacity] = index
    this.count++
  }

  /** freeLE acknowledges every message whose last index is <= `index`. */
  freeLE(index: number): void {
    while (this.count > 0 && this.buffer[this.start]! <= index) {
      this.start = (this.start + 1) % this.capacity
      this.count--
    }
    if (this.count === 0) this.start = 0
  }

  /** freeFirstOne releases the oldest message, so a window full of lost appends cannot stall a peer forever. */
  freeFirstOne(): void {
    if (this.count === 0) return
    this.freeLE(this.buffer[this.start]!)
  }

  /** full tells whether another append would exceed inflightMessagesMax. */
  full(): boolean {
    return this.count === this.capacity
  }

  /** reset forgets every message in flight. */
  reset(): void {
    this.start = 0
    this.count = 0
  }
}

/** Progress is what a leader knows about one peer's log. */
export class Progress {
  // Invariant: match < next; entries <= match are known to be on the peer.
  match = 0
  next: number
  state: ProgressState = 'probe'
  /** pendingSnapshot is the index of the snapshot in flight (snapshot state only). */
  pendingSnapshot = 0
  /** recentActive says the peer was heard from within the last election timeout (check-quorum). */
  recentActive = false
  /** probeSent pauses a probing peer after one append until it answers or a heartbeat round passes. */
  probeSent = false
  isLearner: boolean
  readonly inflights: Inflights

  constructor(options: { next: number; inflightMessagesMax: number; isLearner: boolean }) {
    this.next = options.next
    this.isLearner = options.isLearner
    this.inflights = new Inflights(options.inflightMessagesMax)
  }

  private resetState(state: ProgressState): void {
    this.probeSent = false
    this.pendingSnapshot = 0
    this.state = state
    this.inflights.reset()
  }

  /** becomeProbe is entered after a rejection, an unreachable report or a finished snapshot. */
  becomeProbe(): void {
    if (this.state === 'snapshot') {
      const pending = this.pendingSnapshot
      this.resetState('probe')
      this.next = Math.max(this.match + 1, pending + 1)
    } else {
      this.resetState('probe')
      this.next = this.match + 1
    }
  }

  /** becomeReplicate is entered once the leader knows where the logs agree. */
  becomeReplicate(): void {
    this.resetState('replicate')
    this.next = this.match + 1
  }

  /** becomeSnapshot is entered when the entries the peer needs are compacted away. */
  becomeSnapshot(snapshotIndex: number): void {
    this.resetState('snapshot')
    this.pendingSnapshot = snapshotIndex
  }

  /** sentEntries updates flow control after an append carrying `count` entries ending at `lastIndex`. */
  sentEntries(count: number, lastIndex: number): void {
    if (this.state === 'replicate') {
      if (count > 0) {
        this.next = lastIndex + 1
        this.inflights.add(lastIndex)
      }
    } else if (this.state === 'probe') {
      this.probeSent = true
    } else {
      assert(false, `Progress.sentEntries in state ${this.state}`)
    }
  }

  /** maybeUpdate records an acknowledgement up to `index`; false if it is stale. */
  maybeUpdate(index: number): boolean {
    let updated = false
    if (this.match < index) {
      this.match = index
      updated = true
      this.probeSent = false
    }
    this.next = Math.max(this.next, index + 1)
    return updated
  }

  /**
   * maybeDecrTo handles a rejection of the append at `rejected`; `matchHint` is the follower's
   * guess of the last agreeing index. False means the rejection is stale and is ignored.
   */
  maybeDecrTo(rejected: number, matchHint: number): boolean {
    if (this.state === 'replicate') {
      if (rejected <= this.match) return false
      this.next = this.match + 1
      return true
    }
    if (this.next - 1 !== rejected) return false
    this.next = Math.max(Math.min(rejected, matchHint + 1), this.match + 1)
    this.probeSent = false
    return true
  }

  /** isPaused tells whether the leader must hold back appends to this peer. */
  isPaused(): boolean {
    switch (this.state) {
      case 'probe':
        return this.probeSent
      case 'replicate':
        return this.inflights.full()
      case 'snapshot':
        return true
    }
  }
}
