/**
 * LocalStore is the local server's view of its engine: the DistKV operations over the user
 * keyspace, exactly-once writes, and group commit.
 *
 * Group commit: write requests queue up; one commit loop takes everything queued (up to
 * `groupRequestsMax` requests / `groupBytesMax` bytes) and writes it as one engine batch,
 * made durable when any request in it asked for it. The group is written unsynced and its
 * fsync (engine.sync(), which covers every earlier write) runs while the next groups are
 * written, so the event loop never waits on the disk; the engine merges the fsyncs asked for
 * meanwhile, so under concurrency many sync writes share one. A synced group is acknowledged
 * only once its fsync has completed.
 * Each batch also records the request ids it applies, in one record (see RecentRequests), so a
 * retried request is recognised even across a crash.
 *
 * Read coalescing: single-key reads that arrive in one event-loop turn (from any connection)
 * are answered by one `engine.getMany`, at most `readBatchKeysMax` keys each; a dispatch per
 * key costs several times what the lookup does.
 *
 * Fault model: the process may die at any point; the engine batch is atomic, so a write and
 * its request-id record are both present or both absent on restart.
 */
import type { Engine, EngineOp } from '../engine/engine.js'
import { ErrorCode, KvError, assert } from '../errors.js'
import { Limits } from '../limits.js'
import { engineRange, requestIdBytes, stripUserKey, userKey } from './keyspace.js'
import { RecentRequests, defaultRecentRequestsOptions, type RecentRequestsOptions } from './recent-requests.js'
import type { WireOp, WireRange } from './validate.js'

/** LocalStoreOptions bounds the write queue and the commit groups. */
export interface LocalStoreOptions {
  /** pendingWritesMax: most write requests queued for the commit loop. */
  pendingWritesMax: number
  /** groupRequestsMax: most write requests merged into one engine batch. */
  groupRequestsMax: number
  /** groupBytesMax: most key+value bytes merged into one engine batch (one request may exceed it alone). */
  groupBytesMax: number
  /** readBatchKeysMax: most keys of coalesced single-key reads sent to the engine in one getMany. */
  readBatchKeysMax: number
  recentRequests: RecentRequestsOptions
}

/** defaultLocalStoreOptions are the server's defaults. */
export const defaultLocalStoreOptions: LocalStoreOptions = Object.freeze({
  pendingWritesMax: 16_384,
  groupRequestsMax: 1024,
  groupBytesMax: Limits.batchBytesMax,
  readBatchKeysMax: 1024,
  recentRequests: defaultRecentRequestsOptions,
})

/** QueryPage is one streamed page of a query: parallel arrays, empty Buffers for halves not asked for. */
export interface QueryPage {
  keys: Buffer[]
  values: Buffer[]
}

/** StoreStats counts requests and engine batches, to show how well group commit merges. */
export interface StoreStats {
  writeRequests: number
  duplicateRequests: number
  engineBatches: number
  syncedBatches: number
}

/** WriteDone is called once when a write is applied (no argument) or failed. */
export type WriteDone = (error?: unknown) => void

interface PendingWrite {
  id: Buffer
  key: string
  // Emptied once written: a synced write then waits for its fsync without pinning its values
  // (and the received frame they are slices of), which would otherwise outlive a few young
  // GCs, get promoted, and cost major GCs.
  ops: WireOp[]
  bytes: number
  sync: boolean
  // The original caller first, then re-sent copies that arrived while it was queued.
  done: WriteDone[]
}

const written: WireOp[] = []

interface PendingRead {
  keys: Buffer[]
  resolve: (values: Array<Buffer | undefined>) => void
  reject: (error: unknown) => void
}

/** LocalStore serves the DistKV operations from one engine. */
export class LocalStore {
  private readonly options: LocalStoreOptions
  private readonly recent: RecentRequests
  private readonly queue: PendingWrite[] = []
  // Writes queued or being written, by request id, so a re-sent copy waits for the original.
  private readonly inflight = new Map<string, PendingWrite>()
  private committing: Promise<void> | undefined
  private scheduled = false
  private closed = false
  // Groups written and waiting for their fsync (at most one per commit group in flight).
  private readonly syncing = new Set<Promise<void>>()
  private awaitingSync = 0
  private reads: PendingRead[] = []
  private readsScheduled = false
  /** stats counts writes and batches since start. */
  readonly stats: StoreStats = { writeRequests: 0, duplicateRequests: 0, engineBatches: 0, syncedBatches: 0 }

  constructor(
    private readonly engine: Engine,
    options: Partial<LocalStoreOptions> = {},
  ) {
    this.options = Object.freeze({ ...defaultLocalStoreOptions, ...options })
    this.recent = new RecentRequests(this.options.recentRequests)
  }

  /** open loads the applied request ids; the engine must already be open. */
  async open(): Promise<void> {
    await this.recent.load(this.engine)
  }

  /** write applies `ops` atomically once per request id and resolves when (if `sync`) durable. */
  write(requestId: string, ops: WireOp[], sync: boolean): Promise<void> {
    if (this.closed) return Promise.reject(new KvError(ErrorCode.CLOSED, 'local server is shutting down'))
    return this.writeId(requestIdBytes(requestId), ops, sync)
  }

  /** writeId is `write` for a request id already in its 16-byte form. */
  writeId(id: Buffer, ops: WireOp[], sync: boolean): Promise<void> {
    return new Promise((resolve, reject) => this.enqueueWrite(id, ops, sync, (error) => (error === undefined ? resolve() : reject(error))))
  }

  /**
   * enqueueWrite is `writeId` with a callback instead of a promise, for callers that settle
   * many writes at once (kv.multi); `done` may be called before enqueueWrite returns.
   */
  enqueueWrite(id: Buffer, ops: WireOp[], sync: boolean, done: WriteDone): void {
    if (this.closed) return done(new KvError(ErrorCode.CLOSED, 'local server is shutting down'))
    if (id.length !== 16) return done(new KvError(ErrorCode.INVALID, `request id must be 16 bytes, got ${id.length}`))
    // latin1 is the cheapest string form of the raw bytes to key a Map with.
    const key = id.toString('latin1')
    const running = this.inflight.get(key)
    if (running !== undefined || this.recent.has(id)) {
      this.stats.duplicateRequests++
      if (running !== undefined) running.done.push(done)
      else done()
      return
    }
    // Writes waiting for their fsync count too: a slow disk must not let them pile up.
    if (this.queue.length + this.awaitingSync >= this.options.pendingWritesMax) {
      const { pendingWritesMax } = this.options
      return done(new KvError(ErrorCode.TOO_MANY_REQUESTS, `write queue full: pendingWritesMax (${pendingWritesMax})`, { pendingWritesMax }))
    }
    let bytes = 0
    for (const op of ops) bytes += op.key.length + (op.type === 'put' ? op.value.length : 0)
    const write: PendingWrite = { id, key, ops, bytes, sync, done: [done] }
    this.queue.push(write)
    this.inflight.set(key, write)
    this.stats.writeRequests++
    this.schedule()
  }

  private settle(group: PendingWrite[], error?: unknown): void {
    for (const write of group) {
      this.inflight.delete(write.key)
      for (const done of write.done) done(error)
    }
  }

  /** get reads one user key; the reads of one event-loop turn share one engine getMany. */
  get(key: Buffer): Promise<Buffer | undefined> {
    return new Promise((resolve, reject) => this.enqueueRead([userKey(key)], (values) => resolve(values[0]), reject))
  }

  /** getMany reads many user keys, sharing an engine getMany with the other reads of this turn. */
  getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>> {
    return new Promise((resolve, reject) => this.enqueueRead(keys.map(userKey), resolve, reject))
  }

  private enqueueRead(keys: Buffer[], resolve: PendingRead['resolve'], reject: PendingRead['reject']): void {
    this.reads.push({ keys, resolve, reject })
    if (this.readsScheduled) return
    this.readsScheduled = true
    // setImmediate, like the commit loop: every request decoded from this turn's socket reads joins.
    setImmediate(() => this.flushReads())
  }

  private flushReads(): void {
    this.readsScheduled = false
    const reads = this.reads
    this.reads = []
    let start = 0
    while (start < reads.length) {
      // One request's keys are never split, so a getMany larger than the bound goes alone.
      let end = start
      let count = 0
      while (end < reads.length && (end === start || count + reads[end]!.keys.length <= this.options.readBatchKeysMax)) {
        count += reads[end]!.keys.length
        end++
      }
      this.readChunk(end - start === 1 ? reads[start]!.keys : reads.slice(start, end).flatMap((read) => read.keys), reads.slice(start, end))
      start = end
    }
  }

  private readChunk(keys: Buffer[], chunk: PendingRead[]): void {
    let reading: Promise<Array<Buffer | undefined>>
    try {
      reading = this.engine.getMany(keys)
    } catch (error) {
      // This runs from setImmediate: a throw here would take the whole server down.
      for (const read of chunk) read.reject(error)
      return
    }
    reading.then(
      (values) => {
        let at = 0
        for (const read of chunk) {
          read.resolve(chunk.length === 1 ? values : values.slice(at, at + read.keys.length))
          at += read.keys.length
        }
      },
      (error: unknown) => {
        for (const read of chunk) read.reject(error)
      },
    )
  }

  /** sync makes every write acknowledged so far durable, including `sync: false` ones. */
  async sync(): Promise<void> {
    await this.committing
    await this.engine.sync()
  }

  /**
   * query yields the range in pages of at most `queryPageItemsMax` entries and about
   * `queryPageBytesMax` bytes, reading the engine page by page so a large range is never held whole.
   */
  async *query(range: WireRange, signal?: AbortSignal): AsyncGenerator<QueryPage> {
    const wantKeys = range.keys !== false
    const wantValues = range.values !== false
    const iterator = this.engine.iterator(engineRange(range))
    const empty = Buffer.alloc(0)
    try {
      let page: QueryPage = { keys: [], values: [] }
      let pageBytes = 0
      for (;;) {
        if (signal?.aborted) return
        const entries = await iterator.nextBatch(Math.min(128, Limits.queryPageItemsMax - page.keys.length))
        for (const [key, value] of entries) {
          const userPart = stripUserKey(key)
          page.keys.push(wantKeys ? userPart : empty)
          page.values.push(wantValues ? value : empty)
          pageBytes += (wantKeys ? userPart.length : 0) + (wantValues ? value.length : 0)
        }
        const end = entries.length === 0
        if (page.keys.length > 0 && (end || page.keys.length >= Limits.queryPageItemsMax || pageBytes >= Limits.queryPageBytesMax)) {
          yield page
          page = { keys: [], values: [] }
          pageBytes = 0
        }
        if (end) return
      }
    } finally {
      await iterator.close()
    }
  }

  /** close finishes queued writes, then refuses new ones; the caller closes the engine. */
  async close(): Promise<void> {
    this.closed = true
    while (this.committing !== undefined || this.queue.length > 0) {
      this.schedule()
      await this.committing
    }
    await Promise.all([...this.syncing])
  }

  /** recentRequestIds is how many applied request ids are remembered. */
  get recentRequestIds(): number {
    return this.recent.size
  }

  private schedule(): void {
    if (this.scheduled || this.committing !== undefined) return
    this.scheduled = true
    // setImmediate rather than a microtask: writes decoded from the same socket read land in
    // the same group.
    setImmediate(() => {
      this.scheduled = false
      if (this.committing !== undefined || this.queue.length === 0) return
      this.committing = this.commitLoop().finally(() => {
        this.committing = undefined
        // Writes made by callers resumed from the last group arrive after the loop's final
        // check of the queue, while `committing` was still set: start them now.
        if (this.queue.length > 0) this.schedule()
      })
    })
  }

  private async commitLoop(): Promise<void> {
    while (this.queue.length > 0) {
      const group = this.takeGroup()
      const ops: EngineOp[] = []
      for (const write of group) {
        for (const op of write.ops) {
          ops.push(op.type === 'put' ? { type: 'put', key: userKey(op.key), value: op.value } : { type: 'del', key: userKey(op.key) })
        }
      }
      const record = this.recent.record(group.map((write) => write.id))
      for (const op of record.ops) ops.push(op)
      const sync = group.some((write) => write.sync)
      try {
        // Written unsynced; a synced group's fsync then runs while later groups are written.
        await this.engine.batch(ops, { sync: false })
      } catch (error) {
        this.settle(group, error)
        continue
      }
      // Applied ids are known at once; a re-sent copy still waits in `inflight` until its original settles.
      record.commit()
      for (const write of group) write.ops = written
      this.stats.engineBatches++
      if (!sync) {
        this.settle(group)
        continue
      }
      this.stats.syncedBatches++
      this.syncGroup(group)
    }
  }

  /** syncGroup acknowledges a written group once the engine has made it (and all before it) durable. */
  private syncGroup(group: PendingWrite[]): void {
    this.awaitingSync += group.length
    const durable: Promise<void> = this.engine.sync().then(
      () => this.settle(group),
      (error: unknown) => this.settle(group, error),
    )
    this.syncing.add(durable)
    void durable.finally(() => {
      this.syncing.delete(durable)
      this.awaitingSync -= group.length
    })
  }

  private takeGroup(): PendingWrite[] {
    let bytes = 0
    let count = 0
    while (count < this.queue.length && count < this.options.groupRequestsMax) {
      const next = this.queue[count]!
      if (count > 0 && bytes + next.bytes > this.options.groupBytesMax) break
      bytes += next.bytes
      count++
    }
    assert(count > 0, 'takeGroup called with an empty queue')
    return this.queue.splice(0, count)
  }
}
