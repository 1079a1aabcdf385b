/**
 * Checkers over a recorded history (see workload.ts for the outcomes):
 *
 * - linearizability, per key (linearizability is local, so a key-value store is linearizable iff
 *   each key is a linearizable register): the Wing & Gong / Lowe search of
 *   test/sim/linearizability.ts over a register whose value may be absent. Each operation is
 *   projected onto the keys it touches: a put or del is a write of a value or of "absent"; a
 *   batch is one write per key it touches (its last step for that key), all with the batch's
 *   call and return times; a get is a read, and a getMany one read per key it names. Failed
 *   operations are left out (they did not take effect); unknown writes get ret = Infinity (they
 *   may take effect at any point after their call, or never); unknown and failed reads are left
 *   out (they observed nothing).
 * - fractured reads: what the per-key projection cannot see, a batch's atomicity across keys. A
 *   getMany that saw batch B's value of one key, and of another key B also wrote a value whose
 *   writer returned before B was called (or "absent" when every delete of that key did), saw
 *   half of B: B took effect at one instant, after that writer, and the read saw both sides of it.
 * - lost writes: an acknowledged write whose value the final read of its key does not show,
 *   although the final value was written by an operation that returned before the lost one was
 *   called (or the key is absent and no delete could have come after it).
 * - phantom reads: a get returning a value that no put or batch wrote with outcome ok or unknown.
 * For a violation, `minimize` shrinks the key's sub-history to a small one that still fails.
 */
import { ErrorCode } from '../../src/errors.js'
import { checkPartition, type Model, type Operation } from '../sim/linearizability.js'
import { isRead, readOf, type HistoryOp } from './workload.js'

type RegInput = { write: true; value: string | undefined } | { write: false }
type RegOp = Operation<RegInput, string | undefined> & { source: HistoryOp }

/** maybeRegister is a register that may be absent (undefined), initially absent. */
export const maybeRegister: Model<string | undefined, RegInput, string | undefined> = {
  init: () => undefined,
  step: (state, input, output) => (input.write ? { ok: true, state: input.value } : { ok: output === state, state }),
  key: (state) => (state === undefined ? '\u0000' : `=${state}`),
}

/** Violation is one finding, with the smallest failing sub-history found. */
export interface Violation {
  kind: 'linearizability' | 'fractured-read' | 'lost-write' | 'phantom-read' | 'search-budget' | 'replica-divergence' | 'unavailable' | 'corruption'
  key?: string
  message: string
  ops: HistoryOp[]
  /** leftOut: failed writes of the key overlapping the sub-history, which the check assumed had no effect. */
  leftOut?: HistoryOp[]
}

/** searchStepsMax bounds the search per key; a key past it is reported as 'search-budget' (not a pass). */
export const searchStepsMax = 20_000_000
/** partitionOpsMax bounds one key's operations. */
export const partitionOpsMax = 120_000
/** minimizeChecksMax bounds the shrinking of one violation. */
export const minimizeChecksMax = 3_000

/** projectKey returns the register operations of `key`. */
export function projectKey(history: readonly HistoryOp[], key: string): RegOp[] {
  const out: RegOp[] = []
  for (const op of history) {
    if (op.outcome === 'fail') continue
    const mine = op.steps.filter((s) => s.key === key)
    if (mine.length === 0) continue
    if (isRead(op)) {
      if (op.outcome === 'ok') out.push({ call: op.call, ret: op.ret, input: { write: false }, output: readOf(op, key), client: op.client, source: op })
      continue
    }
    const last = mine[mine.length - 1]!
    out.push({ call: op.call, ret: op.outcome === 'ok' ? op.ret : Infinity, input: { write: true, value: last.value }, output: undefined, client: op.client, source: op })
  }
  return out
}

function violates(ops: RegOp[], written: ReadonlySet<string>): boolean {
  return closed(ops, written) && checkPartition(maybeRegister, ops, { stepsMax: searchStepsMax / 10, operationsMax: partitionOpsMax }).outcome === 'violation'
}

/** closed: every value a read returns is written by an op of `ops` (or by none of the whole partition: a phantom), so a shrunk history never fails merely because a read lost its writer. */
function closed(ops: RegOp[], written: ReadonlySet<string>): boolean {
  const here = new Set<string>()
  for (const o of ops) if (o.input.write && o.input.value !== undefined) here.add(o.input.value)
  return ops.every((o) => o.input.write || o.output === undefined || here.has(o.output) || !written.has(o.output))
}

/** minimize shrinks a failing partition: the shortest failing prefix by call time, then chunks and single operations dropped while it still fails and stays closed. */
export function minimize(ops: RegOp[]): RegOp[] {
  const written = new Set(ops.flatMap((o) => (o.input.write && o.input.value !== undefined ? [o.input.value] : [])))
  const sorted = [...ops].sort((a, b) => a.call - b.call)
  let budget = minimizeChecksMax
  let lo = 1
  let hi = sorted.length
  while (lo < hi && budget-- > 0) {
    const mid = (lo + hi) >>> 1
    if (violates(sorted.slice(0, mid), written)) hi = mid
    else lo = mid + 1
  }
  let current = sorted.slice(0, hi)
  // Drop chunks, halving the chunk size (delta debugging), then single ops until a pass removes nothing.
  for (let chunk = Math.max(1, current.length >> 1); budget > 0; chunk = Math.max(1, chunk >> 1)) {
    let removed = false
    for (let start = current.length - chunk; start > -chunk && budget-- > 0; start -= chunk) {
      const from = Math.max(0, start)
      const without = [...current.slice(0, from), ...current.slice(start + chunk)]
      if (without.length > 0 && violates(without, written)) {
        current = without
        removed = true
      }
    }
    if (chunk === 1 && !removed) break
  }
  return current
}

/** checkLinearizable checks every key; returns its violations (at most one per key). */
export function checkLinearizable(history: readonly HistoryOp[], keys: readonly string[]): { violations: Violation[]; steps: number } {
  const violations: Violation[] = []
  let steps = 0
  for (const key of keys) {
    const ops = projectKey(history, key)
    const result = checkPartition(maybeRegister, ops, { stepsMax: searchStepsMax, operationsMax: partitionOpsMax })
    steps += result.steps
    if (result.outcome === 'violation') {
      const small = minimize(ops)
      const from = Math.min(...small.map((o) => o.call))
      const to = Math.max(...small.map((o) => (Number.isFinite(o.ret) ? o.ret : o.call)))
      const leftOut = history.filter((o) => o.outcome === 'fail' && !isRead(o) && o.steps.some((s) => s.key === key) && o.call <= to && o.ret >= from)
      violations.push({ kind: 'linearizability', key, message: `key ${key}: no linearization of ${ops.length} operations; smallest failing sub-history has ${small.length}`, ops: small.map((o) => o.source), leftOut })
    } else if (result.outcome === 'unknown') {
      violations.push({ kind: 'search-budget', key, message: `key ${key}: search budget of ${searchStepsMax} steps spent on ${ops.length} operations; not proven linearizable`, ops: [] })
    }
  }
  return { violations, steps }
}

/** checkLostWrites compares acknowledged writes with the final reads (`finals`: key -> op of the final get). */
export function checkLostWrites(history: readonly HistoryOp[], finals: ReadonlyMap<string, HistoryOp>): Violation[] {
  const out: Violation[] = []
  for (const [key, final] of finals) {
    const writes = history.filter((op) => !isRead(op) && op.outcome !== 'fail' && op.steps.some((s) => s.key === key))
    const valueOf = (op: HistoryOp) => op.steps.filter((s) => s.key === key).at(-1)!.value
    const writer = final.read === undefined ? undefined : writes.find((w) => valueOf(w) === final.read)
    // A final value no ok or unknown write wrote is a phantom read (reported as such); nothing to compare with.
    if (final.read !== undefined && writer === undefined) continue
    for (const w of writes) {
      if (w.outcome !== 'ok' || w === writer) continue
      const overwritten = final.read === undefined
        ? writes.some((d) => valueOf(d) === undefined && d.ret >= w.call && d !== w) || valueOf(w) === undefined
        : writer !== undefined && writer.ret >= w.call
      if (!overwritten) out.push({ kind: 'lost-write', key, message: `key ${key}: acknowledged write of ${JSON.stringify(valueOf(w))} (op ${w.id}) lost: final read ${JSON.stringify(final.read)} was written before it`, ops: [w, ...(writer ? [writer] : []), final] })
    }
  }
  return out
}

/**
 * checkCorruption finds operations answered KV_ERR_CORRUPTION: stored data that fails its own
 * checks (e.g. a blob pointer whose bytes a power cut took) is never a legitimate answer under
 * these faults, yet the workload would record such a read as unknown and the register check
 * would skip it; and a key written again soon after hides it from every later read.
 */
export function checkCorruption(history: readonly HistoryOp[]): Violation[] {
  return history
    .filter((op) => op.error?.startsWith(`${ErrorCode.CORRUPTION}:`) === true)
    .map((op) => ({ kind: 'corruption' as const, key: op.steps[0]?.key, message: `${op.type} (op ${op.id}) at ${op.call.toFixed(0)} ms answered ${op.error}`, ops: [op] }))
}

/** checkPhantomReads finds reads of values nobody wrote (ok or unknown). */
export function checkPhantomReads(history: readonly HistoryOp[]): Violation[] {
  const written = new Set<string>()
  for (const op of history) if (!isRead(op) && op.outcome !== 'fail') for (const s of op.steps) if (s.value !== undefined) written.add(s.value)
  const out: Violation[] = []
  for (const op of history) {
    if (!isRead(op) || op.outcome !== 'ok') continue
    for (const { key } of op.steps) {
      const read = readOf(op, key)
      if (read === undefined || written.has(read)) continue
      const origin = history.filter((w) => !isRead(w) && w.steps.some((s) => s.value === read))
      out.push({ kind: 'phantom-read', key, message: `key ${key}: read ${JSON.stringify(read)}, which no ok or unknown write wrote${origin.length > 0 ? ` (a write reported as failed did)` : ''}`, ops: [...origin, op] })
    }
  }
  return out
}

/** checkFracturedReads finds getMany results that saw part of an atomic batch (see the module comment). */
export function checkFracturedReads(history: readonly HistoryOp[]): Violation[] {
  const writers = new Map<string, HistoryOp>()
  const deletes = new Map<string, HistoryOp[]>()
  for (const op of history) {
    if (isRead(op) || op.outcome === 'fail') continue
    for (const s of op.steps) {
      if (s.value !== undefined) writers.set(s.value, op)
      else deletes.set(s.key, [...(deletes.get(s.key) ?? []), op])
    }
  }
  const lastValue = (op: HistoryOp, key: string) => op.steps.filter((s) => s.key === key).at(-1)!.value
  const out: Violation[] = []
  for (const read of history) {
    if (read.type !== 'getMany' || read.outcome !== 'ok') continue
    for (const { key } of read.steps) {
      const seen = readOf(read, key)
      const batch = seen === undefined ? undefined : writers.get(seen)
      if (batch === undefined || batch.type !== 'batch') continue
      for (const { key: other } of read.steps) {
        if (other === key || !batch.steps.some((s) => s.key === other)) continue
        const otherSeen = readOf(read, other)
        if (otherSeen === lastValue(batch, other)) continue
        const writer = otherSeen === undefined ? undefined : writers.get(otherSeen)
        const older = otherSeen === undefined
          ? (deletes.get(other) ?? []).every((d) => d.ret < batch.call)
          : writer !== undefined && writer.ret < batch.call
        if (!older) continue
        out.push({ kind: 'fractured-read', key: other, message: `getMany (op ${read.id}) saw ${key}=${JSON.stringify(seen)} of batch op ${batch.id} but ${other}=${JSON.stringify(otherSeen ?? null)}, which that batch overwrote`, ops: [...(writer ? [writer] : []), batch, read] })
      }
    }
  }
  return out
}
