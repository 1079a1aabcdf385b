/**
 * A linearizability checker for histories of client operations (standalone and reusable: the
 * simulator and the cluster fault-injection suite both feed it). It is the Wing & Gong search
 * with Lowe's memoization (as in porcupine): walk the history's call/return events, try to
 * linearize each pending call against a sequential model, and backtrack at a return whose call
 * could not be placed; a cache of (set of linearized ops, model state) prunes configurations
 * already explored. Histories are partitioned (a key-value history into one register per key)
 * so each search stays small.
 *
 * An operation that never returned (the client gave up, the node crashed) has `ret: Infinity`:
 * it may take effect at any point after its call, or never (a write that never took effect can
 * always be linearized at the very end). Reads that never returned carry no information:
 * callers should leave them out. Times are abstract; an operation precedes another only when
 * it returned strictly before the other was called.
 */
import { ErrorCode, KvError } from '../../src/errors.js'

/** Operation is one client operation with its invocation (`call`) and response (`ret`) times. */
export interface Operation<I, O> {
  call: number
  ret: number
  input: I
  output: O
  /** client is informational (traces); the checker does not assume one op per client at a time. */
  client?: number
}

/** Model is a sequential specification; `key` renders a state for the memoization cache. */
export interface Model<S, I, O> {
  init(): S
  /** step applies `input` to `state`; ok is false when `output` is impossible from `state`. */
  step(state: S, input: I, output: O): { ok: boolean; state: S }
  key(state: S): string
}

/** CheckOptions bound the search. */
export interface CheckOptions {
  /** stepsMax bounds the search steps per partition; beyond it the verdict is "unknown". */
  stepsMax?: number
  /** operationsMax bounds a partition's size, since the search is exponential in the worst case. */
  operationsMax?: number
}

/** CheckResult is the verdict: `ok`, a `violation` (with the partition that has none), or `unknown` (budget spent). */
export type CheckResult<I, O> =
  | { outcome: 'ok'; steps: number }
  | { outcome: 'violation'; steps: number; partition: Operation<I, O>[] }
  | { outcome: 'unknown'; steps: number; partition: Operation<I, O>[] }

/** CHECK_DEFAULTS are the default search bounds. */
export const CHECK_DEFAULTS = { stepsMax: 2_000_000, operationsMax: 2_000 } as const

interface Node<I, O> {
  op: Operation<I, O> | undefined // undefined only for the list head
  id: number
  isCall: boolean
  time: number
  match: Node<I, O> | undefined // a call's return event
  prev: Node<I, O> | undefined
  next: Node<I, O> | undefined
}

function buildEventList<I, O>(ops: Operation<I, O>[]): Node<I, O> {
  const events: Node<I, O>[] = []
  ops.forEach((op, id) => {
    if (!(op.call <= op.ret)) throw new KvError(ErrorCode.INVALID, `linearizability: operation ${id} returns before it is called`, { call: op.call, ret: op.ret })
    const ret: Node<I, O> = { op, id, isCall: false, time: op.ret, match: undefined, prev: undefined, next: undefined }
    events.push({ op, id, isCall: true, time: op.call, match: ret, prev: undefined, next: undefined }, ret)
  })
  // Calls before returns at equal times: touching operations count as concurrent (the lenient reading).
  events.sort((a, b) => a.time - b.time || (a.isCall === b.isCall ? a.id - b.id : a.isCall ? -1 : 1))
  const head: Node<I, O> = { op: undefined, id: -1, isCall: false, time: -Infinity, match: undefined, prev: undefined, next: undefined }
  let prev = head
  for (const event of events) {
    prev.next = event
    event.prev = prev
    prev = event
  }
  return head
}

function lift<I, O>(call: Node<I, O>): void {
  call.prev!.next = call.next
  if (call.next) call.next.prev = call.prev
  const ret = call.match!
  ret.prev!.next = ret.next
  if (ret.next) ret.next.prev = ret.prev
}

function unlift<I, O>(call: Node<I, O>): void {
  const ret = call.match!
  ret.prev!.next = ret
  if (ret.next) ret.next.prev = ret
  call.prev!.next = call
  if (call.next) call.next.prev = call
}

/** checkPartition searches one partition for a linearization. */
export function checkPartition<S, I, O>(model: Model<S, I, O>, ops: Operation<I, O>[], options: CheckOptions = {}): CheckResult<I, O> {
  const stepsMax = options.stepsMax ?? CHECK_DEFAULTS.stepsMax
  const operationsMax = options.operationsMax ?? CHECK_DEFAULTS.operationsMax
  if (ops.length > operationsMax) {
    throw new KvError(ErrorCode.INVALID, `linearizability: partition of ${ops.length} operations exceeds operationsMax ${operationsMax}`, { operationsMax })
  }
  const head = buildEventList(ops)
  const linearized = new Uint32Array(Math.ceil(ops.length / 32) + 1)
  const cache = new Set<string>()
  const stack: Array<{ call: Node<I, O>; state: S }> = []
  let state = model.init()
  let entry = head.next
  let steps = 0
  while (head.next !== undefined) {
    if (++steps > stepsMax) return { outcome: 'unknown', steps, partition: ops }
    if (entry!.isCall) {
      const result = model.step(state, entry!.op!.input, entry!.op!.output)
      if (result.ok) {
        linearized[entry!.id >>> 5]! |= 1 << (entry!.id & 31)
        const cacheKey = `${linearized.join(',')}|${model.key(result.state)}`
        if (!cache.has(cacheKey)) {
          cache.add(cacheKey)
          stack.push({ call: entry!, state })
          state = result.state
          lift(entry!)
          entry = head.next
          continue
        }
        linearized[entry!.id >>> 5]! &= ~(1 << (entry!.id & 31))
      }
      entry = entry!.next
    } else {
      // A return whose call is still in the list: that call must have been linearized by now. Backtrack.
      const top = stack.pop()
      if (top === undefined) return { outcome: 'violation', steps, partition: ops }
      state = top.state
      linearized[top.call.id >>> 5]! &= ~(1 << (top.call.id & 31))
      unlift(top.call)
      entry = top.call.next
    }
  }
  return { outcome: 'ok', steps }
}

/** check runs checkPartition over every partition and returns the first non-ok verdict (or ok). */
export function check<S, I, O>(model: Model<S, I, O>, partitions: Iterable<Operation<I, O>[]>, options: CheckOptions = {}): CheckResult<I, O> {
  let steps = 0
  for (const ops of partitions) {
    const result = checkPartition(model, ops, options)
    steps += result.steps
    if (result.outcome !== 'ok') return { ...result, steps }
  }
  return { outcome: 'ok', steps }
}

/** RegisterInput is a write of a value or a read. */
export type RegisterInput = { type: 'put'; value: string } | { type: 'get' }

/** registerModel is a single register holding a string, initially undefined; a get's output is the value read. */
export const registerModel: Model<string | undefined, RegisterInput, string | undefined> = {
  init: () => undefined,
  step: (state, input, output) => (input.type === 'put' ? { ok: true, state: input.value } : { ok: output === state, state }),
  key: (state) => (state === undefined ? '\u0000' : `=${state}`),
}

/** KvInput is a register operation on one key. */
export type KvInput = RegisterInput & { key: string }

/** KvOperation is an operation of a key-value history. */
export type KvOperation = Operation<KvInput, string | undefined>

/** checkKv checks a key-value history as one independent register per key (linearizability is local). */
export function checkKv(ops: readonly KvOperation[], options: CheckOptions = {}): CheckResult<RegisterInput, string | undefined> & { key?: string } {
  const byKey = new Map<string, Operation<RegisterInput, string | undefined>[]>()
  for (const op of ops) {
    const { key, ...rest } = op.input
    let list = byKey.get(key)
    if (list === undefined) byKey.set(key, (list = []))
    list.push({ ...op, input: rest as RegisterInput })
  }
  let steps = 0
  for (const key of [...byKey.keys()].sort()) {
    const result = checkPartition(registerModel, byKey.get(key)!, options)
    steps += result.steps
    if (result.outcome !== 'ok') return { ...result, steps, key }
  }
  return { outcome: 'ok', steps }
}
