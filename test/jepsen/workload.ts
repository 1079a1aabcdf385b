/**
 * The workload and history recorder: `clients` concurrent clients, each its own connect() to
 * every client-side proxy (rotated so they prefer different nodes), issue put, get, getMany, del
 * and single-shard batch on a small key set (keys share hash tags so a batch is atomic) with
 * values unique across the run. Besides them, pinned readers (one per node and key group, each
 * connected to that node's proxy only, no failover) issue only get and getMany of their group:
 * a node cut off from its peers keeps being asked, which is how a stale leader serving local
 * reads gets caught (a failing-over client stops asking it as soon as a write there hangs).
 * Each operation is recorded with its invocation and completion times and an outcome:
 * - ok: acknowledged (a read's values are recorded);
 * - fail: definitely not applied: the error is a refusal (KV_ERR_UNAVAILABLE is the proxy's
 *   "no attempt may have run", per docs/cluster.md; bad-input codes);
 * - unknown: anything else (KV_ERR_TIMEOUT, connection loss, our own hard deadline): the write
 *   may or may not have taken effect, at any time after its invocation.
 */
import { connect } from '../../src/client/index.js'
import type { DistKV } from '../../src/client/types.js'
import { ErrorCode, isKvError } from '../../src/errors.js'
import { SLOT_COUNT, slotOf } from '../../src/meta/slots.js'
import type { Random } from '../sim/random.js'

/** OpType is what a client operation does. */
export type OpType = 'put' | 'get' | 'getMany' | 'del' | 'batch'

/** BatchStep is one operation of a batch: value undefined for a del. */
export interface BatchStep {
  key: string
  value: string | undefined
}

/** HistoryOp is one recorded client operation. */
export interface HistoryOp {
  id: number
  client: number
  type: OpType
  /** steps: the writes (put: one, del: one with value undefined, batch: several); a get has one step naming its key, a getMany one per key. */
  steps: BatchStep[]
  /** call and ret: ms since the run began; ret is Infinity for unknown outcomes. */
  call: number
  ret: number
  outcome: 'ok' | 'fail' | 'unknown'
  /** read: a get's result (undefined = absent). */
  read?: string | undefined
  /** reads: a getMany's results, one per step. */
  reads?: Array<string | undefined>
  error?: string
}

/** WorkloadOptions size the workload. */
export interface WorkloadOptions {
  clients: number
  /** groups x keysPerGroup keys; a group shares a hash tag (one slot), batches stay inside one group. */
  groups: number
  keysPerGroup: number
  /** opTimeoutMs: the workload's own deadline per operation, beyond the client's request timeout. */
  opTimeoutMs: number
  clientRequestTimeoutMs: number
  thinkMs: number
  /** readers: whether the pinned readers run (one per node and group); readerTimeoutMs is their request timeout. */
  readers: boolean
  readerTimeoutMs: number
}

/** readerClientBase: pinned readers are clients readerClientBase + node * 100 + group (kept apart in availability figures). */
export const readerClientBase = 1_000

/** isReaderClient tells a pinned reader's client number from a workload client's. */
export function isReaderClient(client: number): boolean {
  return client >= readerClientBase
}

/** isRead tells reads (get, getMany) from writes. */
export function isRead(op: HistoryOp): boolean {
  return op.type === 'get' || op.type === 'getMany'
}

/** readOf is what a successful read returned for `key` (undefined = absent). */
export function readOf(op: HistoryOp, key: string): string | undefined {
  if (op.type === 'get') return op.read
  const index = op.steps.findIndex((s) => s.key === key)
  return op.reads?.[index]
}

/** historyOpsMax bounds a run's history (memory and check time); clients stop issuing operations at it. */
export const historyOpsMax = 120_000

/** FAIL_CODES are errors that mean "not applied" (the contract under test says so). */
export const FAIL_CODES: ReadonlySet<string> = new Set([ErrorCode.UNAVAILABLE, ErrorCode.INVALID, ErrorCode.CROSS_SHARD_BATCH, ErrorCode.KEY_TOO_LARGE, ErrorCode.VALUE_TOO_LARGE, ErrorCode.BATCH_TOO_LARGE])

/** classify maps a thrown error to an outcome. */
export function classify(error: unknown): 'fail' | 'unknown' {
  return isKvError(error) && FAIL_CODES.has(error.code) ? 'fail' : 'unknown'
}

const groupTags: string[] = []

/** groupTag is group g's hash tag: tags alternate between the two halves of the slot space, so with two or more shards the groups spread over shards. */
export function groupTag(group: number): string {
  for (let i = groupTags.length === 0 ? 0 : Number(groupTags.at(-1)!.slice(1)) + 1; groupTags.length <= group; i++) {
    const tag = `g${i}`
    if ((slotOf(Buffer.from(tag)) < SLOT_COUNT / 2) === (groupTags.length % 2 === 0)) groupTags.push(tag)
  }
  return groupTags[group]!
}

/** keyName is the key of group g, index i. */
export function keyName(group: number, index: number): string {
  return `{${groupTag(group)}}k${index}`
}

/** History collects operations from every client. */
export class History {
  readonly ops: HistoryOp[] = []
  private nextId = 0

  constructor(readonly now: () => number) {}

  /** record runs `run` as one operation and records it; `run` returns a get's value. */
  async record(client: number, type: OpType, steps: BatchStep[], timeoutMs: number, run: () => Promise<Buffer | undefined | void | Array<Buffer | undefined>>): Promise<HistoryOp> {
    const op: HistoryOp = { id: this.nextId++, client, type, steps, call: this.now(), ret: Infinity, outcome: 'unknown' }
    this.ops.push(op)
    let timer: NodeJS.Timeout | undefined
    const deadline = new Promise<'deadline'>((resolve) => (timer = setTimeout(() => resolve('deadline'), timeoutMs)))
    try {
      const result = await Promise.race([run(), deadline])
      if (result === 'deadline') {
        op.error = `no answer within ${timeoutMs} ms`
        return op
      }
      op.ret = this.now()
      op.outcome = 'ok'
      if (type === 'get') op.read = result === undefined ? undefined : (result as Buffer).toString()
      if (type === 'getMany') op.reads = (result as Array<Buffer | undefined>).map((value) => value?.toString())
    } catch (error) {
      op.outcome = classify(error)
      op.error = isKvError(error) ? `${error.code}: ${error.message}` : String((error as Error)?.message ?? error)
      if (op.outcome === 'fail') op.ret = this.now()
    } finally {
      clearTimeout(timer)
    }
    return op
  }
}

/** Workload runs the clients until stopped. */
export class Workload {
  private stopped = false
  private readonly kvs: DistKV[] = []

  constructor(
    private readonly options: WorkloadOptions,
    private readonly history: History,
    private readonly random: Random,
  ) {}

  /** keys lists every key of the workload. */
  keys(): string[] {
    return Array.from({ length: this.options.groups }, (_, g) => Array.from({ length: this.options.keysPerGroup }, (_, i) => keyName(g, i))).flat()
  }

  /** run starts the clients on `endpoints(i)` and the pinned readers on `nodeEndpoints`, and resolves when every one has stopped. */
  async run(endpoints: (client: number) => string[], nodeEndpoints: readonly string[]): Promise<void> {
    const open = async (list: string[], requestTimeoutMs: number, name: string) => {
      const kv = await connect(list, { requestTimeoutMs, name })
      this.kvs.push(kv)
      return kv
    }
    const clients = await Promise.all(Array.from({ length: this.options.clients }, (_, i) => open(endpoints(i), this.options.clientRequestTimeoutMs, `jepsen-${i}`)))
    const readers = !this.options.readers ? [] : await Promise.all(nodeEndpoints.flatMap((endpoint, node) => Array.from({ length: this.options.groups }, async (_, group) => {
      const client = readerClientBase + node * 100 + group
      return { kv: await open([endpoint], this.options.readerTimeoutMs, `jepsen-reader-${node + 1}-${group}`), client, group }
    })))
    await Promise.all([
      ...clients.map((kv, i) => this.loop(kv, i, this.random.fork(`client-${i}`))),
      ...readers.map((r) => this.readerLoop(r.kv, r.client, r.group, this.random.fork(`reader-${r.client}`))),
    ])
  }

  /** stop makes every client finish its current operation and stop. */
  stop(): void {
    this.stopped = true
  }

  /** close closes the clients (after run resolved). */
  async close(): Promise<void> {
    await Promise.all(this.kvs.map((kv) => kv.close().catch(() => undefined)))
  }

  private async loop(kv: DistKV, client: number, random: Random): Promise<void> {
    let seq = 0
    // A client whose last op is unknown starts a fresh one anyway: histories allow concurrency.
    while (!this.stopped && this.history.ops.length < historyOpsMax) {
      const group = random.int(0, this.options.groups - 1)
      const key = () => keyName(group, random.int(0, this.options.keysPerGroup - 1))
      const value = () => `c${client}-${seq++}`
      const roll = random.float()
      const { opTimeoutMs } = this.options
      if (roll < 0.3) {
        const k = key()
        await this.history.record(client, 'get', [{ key: k, value: undefined }], opTimeoutMs, () => kv.get(k))
      } else if (roll < 0.4) {
        await this.readMany(kv, client, group, random)
      } else if (roll < 0.7) {
        const step = { key: key(), value: value() }
        await this.history.record(client, 'put', [step], opTimeoutMs, () => kv.put(step.key, step.value!))
      } else if (roll < 0.8) {
        const k = key()
        await this.history.record(client, 'del', [{ key: k, value: undefined }], opTimeoutMs, () => kv.del(k))
      } else {
        const steps = Array.from({ length: random.int(2, 3) }, () => ({ key: key(), value: random.chance(0.8) ? value() : undefined }))
        const ops = steps.map((s) => (s.value === undefined ? { type: 'del' as const, key: s.key } : { type: 'put' as const, key: s.key, value: s.value }))
        await this.history.record(client, 'batch', steps, opTimeoutMs, () => kv.batch(ops))
      }
      if (this.options.thinkMs > 0) await new Promise((resolve) => setTimeout(resolve, random.int(0, this.options.thinkMs)))
    }
  }

  /** readMany reads 2..all keys of a group in one getMany (a single-shard read: one snapshot). */
  private async readMany(kv: DistKV, client: number, group: number, random: Random): Promise<void> {
    const all = Array.from({ length: this.options.keysPerGroup }, (_, i) => keyName(group, i))
    const keys = random.shuffle(all).slice(0, random.int(Math.min(2, all.length), all.length))
    await this.history.record(client, 'getMany', keys.map((key) => ({ key, value: undefined })), this.options.opTimeoutMs, () => kv.getMany(keys))
  }

  /** readerLoop is a pinned reader: get or getMany of its group only, through its one node, with a short timeout (an unknown read is harmless). */
  private async readerLoop(kv: DistKV, client: number, group: number, random: Random): Promise<void> {
    const timeoutMs = this.options.readerTimeoutMs + 1_000
    while (!this.stopped && this.history.ops.length < historyOpsMax) {
      if (random.chance(0.5)) {
        const key = keyName(group, random.int(0, this.options.keysPerGroup - 1))
        await this.history.record(client, 'get', [{ key, value: undefined }], timeoutMs, () => kv.get(key))
      } else {
        await this.readMany(kv, client, group, random)
      }
      await new Promise((resolve) => setTimeout(resolve, random.int(50, 150)))
    }
  }
}
