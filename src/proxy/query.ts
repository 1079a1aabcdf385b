/**
 * Scatter-gather query: one `store.query` stream per shard, opened concurrently on each
 * shard's leader (each a linearizable read of that shard), merged in key order (or reverse)
 * with the limit applied at the merge, and re-paged for the client. Nothing is read ahead of
 * what the client consumes beyond one page per shard (the streams are flow-controlled).
 *
 * Slot moves: each shard reports the slots it owned when its read started. If the union does
 * not cover every slot (a slot was between owners), the gather starts again with fresh
 * routing; a key seen from two shards (a slot that moved between their reads) is yielded once.
 * NB: shards are read at slightly different instants, so a query is linearizable per shard,
 * not one snapshot of the whole cluster (as in etcd's per-range reads across many ranges, not
 * etcd's single-range revision).
 */
import { ErrorCode, KvError, isKvError } from '../errors.js'
import { Limits } from '../limits.js'
import type { WireRange } from '../local/validate.js'
import type { PeerPool } from '../cluster/peers.js'
import type { Routing } from '../meta/routing.js'
import { SLOT_COUNT, SlotSet } from '../meta/slots.js'
import type { StoreClient } from '../store/client.js'
import { sleep, type Router } from './router.js'

/** gatherAttemptsMax: restarts of a gather whose shards' owned slots did not cover every slot. */
const gatherAttemptsMax = 20

type Item = [Buffer, Buffer]

/** ShardCursor reads one shard's stream, resuming after its last key if the stream breaks. */
class ShardCursor {
  owned: SlotSet | undefined
  private items: Item[] = []
  private index = 0
  private iterator: AsyncIterator<unknown> | undefined
  private lastKey: Buffer | undefined
  private ended = false

  constructor(
    private readonly routing: Routing,
    private readonly shardId: number,
    private readonly range: WireRange,
    private readonly deps: { pool: PeerPool; stores: StoreClient; deadline: number },
  ) {}

  /** open starts the stream on the shard's leader and reads its first page. */
  async open(): Promise<void> {
    await this.connect()
  }

  /** head is the cursor's current item, or undefined when the shard has no more. */
  async head(): Promise<Item | undefined> {
    while (this.index >= this.items.length) {
      if (this.ended) return undefined
      await this.nextPage()
    }
    return this.items[this.index]
  }

  /** advance moves past the current item. */
  advance(): void {
    this.lastKey = this.items[this.index]![0]
    this.index++
  }

  /** close cancels the stream. */
  async close(): Promise<void> {
    await this.iterator?.return?.().catch(() => undefined)
  }

  private async nextPage(): Promise<void> {
    try {
      const next = await this.iterator!.next()
      if (next.done === true) {
        this.ended = true
        return
      }
      this.takePage(next.value)
    } catch (error) {
      if (!isKvError(error) || Date.now() > this.deps.deadline) throw error
      await this.connect()
    }
  }

  private takePage(page: unknown): void {
    const p = page as { keys?: unknown; values?: unknown; owned?: unknown }
    if (!Array.isArray(p?.keys) || !Array.isArray(p?.values)) throw new KvError(ErrorCode.PROTOCOL, 'malformed store.query page')
    if (p.owned instanceof Uint8Array && this.owned === undefined) this.owned = new SlotSet(p.owned)
    this.items = p.keys.map((k, i) => [Buffer.from(k as Uint8Array), Buffer.from((p.values as Uint8Array[])[i]!)])
    this.index = 0
  }

  /** connect (re)opens the stream after the last delivered key, trying the leader, then each replica. */
  private async connect(): Promise<void> {
    const shard = this.routing.shards.find((s) => s.id === this.shardId)!
    const range: WireRange = { ...this.range }
    if (this.lastKey !== undefined) {
      if (range.reverse === true) {
        delete range.lte
        range.lt = this.lastKey
      } else {
        delete range.gte
        range.gt = this.lastKey
      }
    }
    let lastError: unknown
    while (Date.now() < this.deps.deadline) {
      const candidates = [...new Set([this.deps.stores.leaderOf(this.shardId), shard.leader, ...shard.replicas].filter((id) => id !== 0))]
      for (const raftId of candidates) {
        const address = this.routing.nodes.find((n) => n.raftId === raftId)?.rpc
        if (address === undefined) continue
        try {
          const client = await this.deps.pool.get(address)
          const iterator = client.stream('store.query', { shard: this.shardId, range })[Symbol.asyncIterator]()
          const first = await iterator.next()
          this.iterator = iterator
          if (first.done === true) this.ended = true
          else this.takePage(first.value)
          this.deps.stores.noteLeader(this.shardId, raftId)
          return
        } catch (error) {
          lastError = error
          if (!isKvError(error) || [ErrorCode.INVALID, ErrorCode.AUTH, ErrorCode.PROTOCOL].includes(error.code as never)) throw error
        }
      }
      await sleep(50)
    }
    throw new KvError(ErrorCode.UNAVAILABLE, `shard ${this.shardId}: no leader could serve the query: ${(lastError as Error)?.message ?? 'no replica'}`, { quorumLost: true })
  }
}

/** gatherQuery yields the merged result of `range` over every shard, in pages. */
export async function* gatherQuery(router: Router, deps: { pool: PeerPool; stores: StoreClient }, range: WireRange, signal: AbortSignal): AsyncGenerator<{ keys: Buffer[]; values: Buffer[] }> {
  const deadline = Date.now() + router.requestTimeoutMs
  const cursors = await openCovering(router, deps, range, deadline)
  const reverse = range.reverse === true
  const wantKeys = range.keys !== false
  const empty = Buffer.alloc(0)
  let remaining = range.limit ?? Infinity
  let page = { keys: [] as Buffer[], values: [] as Buffer[] }
  let pageBytes = 0
  try {
    while (remaining > 0 && !signal.aborted) {
      let best: Item | undefined
      for (const cursor of cursors) {
        const head = await cursor.head()
        if (head === undefined) continue
        if (best === undefined || (reverse ? Buffer.compare(head[0], best[0]) > 0 : Buffer.compare(head[0], best[0]) < 0)) best = head
      }
      if (best === undefined) break
      const key = best[0]
      for (const cursor of cursors) {
        const head = await cursor.head()
        if (head !== undefined && head[0].equals(key)) cursor.advance()
      }
      page.keys.push(wantKeys ? key : empty)
      page.values.push(best[1])
      pageBytes += key.length + best[1].length
      remaining--
      if (page.keys.length >= Limits.queryPageItemsMax || pageBytes >= Limits.queryPageBytesMax) {
        yield page
        page = { keys: [], values: [] }
        pageBytes = 0
      }
    }
    if (page.keys.length > 0) yield page
  } finally {
    await Promise.all(cursors.map((c) => c.close()))
  }
}

async function openCovering(router: Router, deps: { pool: PeerPool; stores: StoreClient }, range: WireRange, deadline: number): Promise<ShardCursor[]> {
  // Keys are needed to merge and to resume, whatever the client asked for.
  const wire: WireRange = { ...range, keys: true }
  for (let attempt = 0; attempt < gatherAttemptsMax && Date.now() < deadline; attempt++) {
    const routing = await router.current(deadline)
    const cursors = routing.shards.map((shard) => new ShardCursor(routing, shard.id, wire, { ...deps, deadline }))
    const opened = await Promise.allSettled(cursors.map((c) => c.open()))
    const failed = opened.find((o) => o.status === 'rejected') as PromiseRejectedResult | undefined
    const union = new SlotSet()
    for (const cursor of cursors) if (cursor.owned !== undefined) union.union(cursor.owned)
    if (failed === undefined && union.size === SLOT_COUNT) return cursors
    await Promise.all(cursors.map((c) => c.close()))
    if (failed !== undefined && isKvError(failed.reason) && failed.reason.code !== ErrorCode.UNAVAILABLE) throw failed.reason
    if (failed !== undefined && Date.now() >= deadline) throw failed.reason
    await router.refresh().catch(() => undefined)
    await sleep(20 * (attempt + 1))
  }
  throw new KvError(ErrorCode.UNAVAILABLE, `query: could not read every shard within ${router.requestTimeoutMs} ms`, { quorumLost: true })
}
