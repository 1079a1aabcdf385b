/**
 * The workload and history recorder: `clients` concurrent clients, each its own connect() to
 * every client-side proxy (rotated so they prefer different nodes), issue put, get, del and
 * single-shard batch on a small key set (keys share hash tags so a batch is atomic) with values
 * unique across the run. Each operation is recorded with its invocation and completion times and
 * an outcome:
 * - ok: acknowledged (a get's value is recorded);
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
export type OpType = 'put' | 'get' | 'del' | 'batch'

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
  /** steps: the writes (put: one, del: one with value undefined, batch: several); a get has one step naming its key. */
  steps: BatchStep[]
  /** call and ret: ms since the run began; ret is Infinity for unknown outcomes. */
  call: number
  ret: number
  outcome: 'ok' | 'fail' | 'unknown'
  /** read: a get's result (undefined = absent). */
  read?: string | undefined
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
  async record(client: number, type: OpType, steps: BatchStep[], timeoutMs: number, run: () => Promise<Buffer | undefined | void>): Promise<HistoryOp> {
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

  /** run starts the clients on `endpoints(i)` and resolves when every client has stopped. */
  async run(endpoints: (client: number) => string[]): Promise<void> {
    const clients = await Promise.all(Array.from({ length: this.options.clients }, async (_, i) => {
      const kv = await connect(endpoints(i), { requestTimeoutMs: this.options.clientRequestTimeoutMs, name: `jepsen-${i}` })
      this.kvs.push(kv)
      return kv
    }))
    await Promise.all(clients.map((kv, i) => this.loop(kv, i, this.random.fork(`client-${i}`))))
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
      if (roll < 0.4) {
        const k = key()
        await this.history.record(client, 'get', [{ key: k, value: undefined }], opTimeoutMs, () => kv.get(k))
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
}
