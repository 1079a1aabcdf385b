/**
 * The run report: operations by type and outcome, the faults injected, availability during and
 * outside faults (ops invoked in a fault window that succeeded), availability with one node of
 * three down outside the election window, recovery after each heal, replica digests, and each
 * violation with its smallest failing sub-history.
 */
import type { FaultEvent } from './nemesis.js'
import type { RunResult } from './run.js'
import { isReaderClient, readOf, type HistoryOp } from './workload.js'

/** violationsShownMax: violations printed per kind (all are counted). */
export const violationsShownMax = 5

/** electionWindowMs: ops invoked this soon after a fault begins or heals are left out of the "one node down" figure. */
export const electionWindowMs = 3_000

/** Availability is ok / total over some ops. */
export interface Availability {
  ok: number
  total: number
}

function ratio(a: Availability): string {
  return a.total === 0 ? 'n/a' : `${((100 * a.ok) / a.total).toFixed(2)}% of ${a.total}`
}

function count(ops: readonly HistoryOp[]): Availability {
  return { ok: ops.filter((o) => o.outcome === 'ok').length, total: ops.length }
}

/** workloadOps are the clients' ops (not the final reads). */
export function workloadOps(result: RunResult): HistoryOp[] {
  return result.history.filter((o) => o.client >= 0)
}

/** failoverOps are the ops of clients that fail over between nodes: availability is measured on them, not on the pinned readers. */
function failoverOps(result: RunResult): HistoryOp[] {
  return workloadOps(result).filter((o) => !isReaderClient(o.client))
}

function during(ops: readonly HistoryOp[], f: FaultEvent): HistoryOp[] {
  return ops.filter((o) => o.call >= f.start && o.call < f.end)
}

/** nodeDownAvailability: ops during kill-one faults, outside the election window after the kill and after the heal. */
export function nodeDownAvailability(result: RunResult): Availability {
  const ops = failoverOps(result)
  const windows = result.faults.filter((f) => f.name === 'kill-one')
  return count(windows.flatMap((f) => ops.filter((o) => o.call >= f.start + electionWindowMs && o.call < f.end - 100)))
}

/** recoveries: per fault, ms from its heal until every key group had an op invoked after the heal succeed. */
export function recoveries(result: RunResult): number[] {
  const ops = failoverOps(result).filter((o) => o.outcome === 'ok')
  const group = (o: HistoryOp) => o.steps[0]!.key.slice(0, o.steps[0]!.key.indexOf('}') + 1)
  const groups = new Set(failoverOps(result).map(group))
  return result.faults.map((f) => {
    let worst = 0
    for (const g of groups) {
      const first = ops.filter((o) => group(o) === g && o.call >= f.end).reduce((m, o) => Math.min(m, o.ret), Infinity)
      worst = Math.max(worst, first - f.end)
    }
    return worst
  }).filter((ms) => Number.isFinite(ms))
}

function formatOp(o: HistoryOp): string {
  const what = o.type === 'get' ? `get ${o.steps[0]!.key} -> ${JSON.stringify(o.read ?? null)}`
    : o.type === 'getMany' ? `getMany ${o.steps.map((s) => `${s.key} -> ${JSON.stringify(readOf(o, s.key) ?? null)}`).join(', ')}`
      : `${o.type} ${o.steps.map((s) => `${s.key}=${JSON.stringify(s.value ?? null)}`).join(' ')}`
  return `    [${o.call.toFixed(0)} .. ${Number.isFinite(o.ret) ? o.ret.toFixed(0) : '?'}] client ${o.client} ${what} ${o.outcome}${o.error ? ` (${o.error.slice(0, 120)})` : ''}`
}

/** formatReport renders a run's result. */
export function formatReport(result: RunResult): string {
  const ops = workloadOps(result)
  const lines: string[] = [`distkv jepsen: seed ${result.seed}, cluster up in ${(result.startMs / 1000).toFixed(1)} s, disk fault: ${result.diskFault}`]
  lines.push(`operations: ${ops.length} (${result.history.length - ops.length} final reads)`)
  for (const type of ['put', 'get', 'getMany', 'del', 'batch'] as const) {
    const of = ops.filter((o) => o.type === type)
    lines.push(`  ${type.padEnd(6)} ok ${of.filter((o) => o.outcome === 'ok').length}  fail ${of.filter((o) => o.outcome === 'fail').length}  unknown ${of.filter((o) => o.outcome === 'unknown').length}`)
  }
  const served = failoverOps(result)
  lines.push(`  of which pinned readers (one node each, no failover): ${ops.length - served.length}, ok ${ops.filter((o) => isReaderClient(o.client) && o.outcome === 'ok').length}`)
  lines.push(`faults injected: ${result.faults.length}`)
  const kinds = [...new Set(result.faults.map((f) => f.name))]
  for (const kind of kinds) {
    const faults = result.faults.filter((f) => f.name === kind)
    lines.push(`  ${kind.padEnd(19)} x${faults.length}  availability during: ${ratio(count(faults.flatMap((f) => during(served, f))))}`)
  }
  for (const f of result.faults) lines.push(`    +${(f.start / 1000).toFixed(1)}s..+${(f.end / 1000).toFixed(1)}s ${f.name} ${f.detail}`)
  const inFault = (o: HistoryOp) => result.faults.some((f) => o.call >= f.start && o.call < f.end)
  lines.push(`availability (failing-over clients) outside faults: ${ratio(count(served.filter((o) => !inFault(o))))}; during faults: ${ratio(count(served.filter(inFault)))}`)
  lines.push(`one node of three down (kill-one), outside the ${electionWindowMs} ms election window: ${ratio(nodeDownAvailability(result))}`)
  const rec = recoveries(result).sort((a, b) => a - b)
  lines.push(`recovery after heal (every key group served again): ${rec.length === 0 ? 'n/a' : `median ${rec[rec.length >> 1]!.toFixed(0)} ms, max ${rec[rec.length - 1]!.toFixed(0)} ms`}; after the last heal: ${result.healToServeMs.toFixed(0)} ms`)
  if (result.stoppedDrivers.length > 0) lines.push(`raft driver stopped on the full disk (node kept running, refusing; restarted by the nemesis at heal): ${result.stoppedDrivers.map((s) => `node ${s.node} at +${(s.atMs / 1000).toFixed(1)}s`).join('; ')}`)
  if (result.crashes.length > 0) lines.push(`node exits not caused by the nemesis: ${result.crashes.map((c) => `node ${c.node} at +${(c.atMs / 1000).toFixed(1)}s (code ${c.code}, ${c.signal})`).join('; ')}`)
  lines.push(`replicas: ${result.digests.map((d) => `shard ${d.shard} @${d.index} ${d.replicas.every((r) => r.hash === d.replicas[0]!.hash && r.index === d.index) ? 'equal' : 'DIFFER'} (${d.replicas[0]?.keys ?? 0} keys)`).join(', ')}`)
  lines.push(`check: ${result.searchSteps} search steps, ${(result.checkMs / 1000).toFixed(1)} s`)
  lines.push(`violations: ${result.violations.length}${result.violations.length > 0 ? ` (${[...new Set(result.violations.map((v) => v.kind))].map((k) => `${k} ${result.violations.filter((v) => v.kind === k).length}`).join(', ')})` : ''}`)
  const evidence = result.violations.filter((v) => v.ops.length > 0).map((v) => Math.max(...v.ops.map((o) => (Number.isFinite(o.ret) ? o.ret : o.call))))
  if (evidence.length > 0) lines.push(`first complete evidence at +${(Math.min(...evidence) / 1000).toFixed(1)} s into the run`)
  for (const kind of new Set(result.violations.map((v) => v.kind))) {
    const all = result.violations.filter((v) => v.kind === kind)
    for (const v of all.slice(0, violationsShownMax)) {
      lines.push(`  ${v.kind}: ${v.message}`)
      for (const o of [...v.ops].sort((a, b) => a.call - b.call)) lines.push(formatOp(o))
      for (const o of v.leftOut ?? []) lines.push(`${formatOp(o)}   <- reported failed, so left out`)
    }
    if (all.length > violationsShownMax) lines.push(`  ... and ${all.length - violationsShownMax} more ${kind} violations (history.json in the kept directory)`)
  }
  lines.push(result.kept ? `data directories kept: ${result.dir}` : 'data directories removed (no violation)')
  return lines.join('\n')
}
