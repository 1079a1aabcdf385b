/**
 * `npm run jepsen -- --time SECONDS --nemesis NAMES [--seed S] [--runs N] [--clients C] [--client-timeout-ms MS] [--election-ticks T] [--blob-threshold-bytes N] [--raft-log-file-bytes N]`: runs the
 * fault-injection suite against a fresh 3-node cluster and prints the report of each run. Exits
 * 1 when any run found a violation (or could not run), 0 otherwise. The seed is printed first, so
 * a run's fault schedule and workload choices can be replayed with --seed.
 */
import { parseArgs } from 'node:util'
import { blobThresholdBytesMax } from '../../src/engine/blob-engine.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import { logFileBytesMaxLimit, logFileBytesMaxMin } from '../../src/raftstore/log-files.js'
import { MIXED, NEMESES, parseNemeses } from './nemesis.js'
import { formatReport, nodeDownAvailability, recoveries, workloadOps } from './report.js'
import { runJepsen } from './run.js'

const USAGE = `usage: npm run jepsen -- --time SECONDS --nemesis NAMES [--seed S] [--runs N] [--clients C] [--client-timeout-ms MS] [--election-ticks T] [--blob-threshold-bytes N] [--raft-log-file-bytes N] [--log-values true|false]
  --client-timeout-ms  clients' request timeout, after which an op's outcome is unknown (default 15000)
  --election-ticks     the nodes' Raft election timeout in 50 ms ticks (default 10)
  --blob-threshold-bytes  the nodes' blobThresholdBytes (default: the node's, 64 KiB, which keeps the workload's
                       few-byte values in RocksDB); 1 sends every value to blob files, 0 turns separation off
  --raft-log-file-bytes  the nodes' raftLogFileBytes (default: the node's, 64 MiB, which a run never fills); small
                       values (65536) make the Raft log files rotate, preallocate and collect under the faults
  --log-values         the nodes' logValues (default: the node's, true): values of blobThresholdBytes or more
                       point into the Raft log files (with --blob-threshold-bytes 1, every workload value
                       does); false sends them to blob files
  --nemesis  comma-separated: mixed (= ${MIXED.join(',')}), none, or any of ${NEMESES.join(', ')}`

function integer(name: string, text: string | undefined, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback
  const n = Number(text)
  if (!Number.isSafeInteger(n) || n < min || n > max) throw new KvError(ErrorCode.INVALID, `--${name} must be an integer in [${min}, ${max}], got ${text}`)
  return n
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { time: { type: 'string' }, nemesis: { type: 'string' }, seed: { type: 'string' }, runs: { type: 'string' }, clients: { type: 'string' }, 'client-timeout-ms': { type: 'string' }, 'election-ticks': { type: 'string' }, 'blob-threshold-bytes': { type: 'string' }, 'raft-log-file-bytes': { type: 'string' }, 'log-values': { type: 'string' }, help: { type: 'boolean' } } })
  if (values.help === true || values.time === undefined || values.nemesis === undefined) {
    process.stdout.write(`${USAGE}\n`)
    return values.help === true ? 0 : 2
  }
  const timeSeconds = integer('time', values.time, 60, 5, 86_400)
  const nemeses = parseNemeses(values.nemesis)
  const runs = integer('runs', values.runs, 1, 1, 1_000)
  const clients = integer('clients', values.clients, 6, 1, 64)
  const clientTimeoutMs = integer('client-timeout-ms', values['client-timeout-ms'], 15_000, 100, 300_000)
  const electionTicks = integer('election-ticks', values['election-ticks'], 10, 3, 400)
  const blobThresholdBytes = values['blob-threshold-bytes'] === undefined ? undefined : integer('blob-threshold-bytes', values['blob-threshold-bytes'], 0, 0, blobThresholdBytesMax)
  const raftLogFileBytes = values['raft-log-file-bytes'] === undefined ? undefined : integer('raft-log-file-bytes', values['raft-log-file-bytes'], 0, logFileBytesMaxMin, logFileBytesMaxLimit)
  if (values['log-values'] !== undefined && values['log-values'] !== 'true' && values['log-values'] !== 'false') throw new KvError(ErrorCode.INVALID, `--log-values must be true or false, got ${values['log-values']}`)
  const logValues = values['log-values'] === undefined ? undefined : values['log-values'] === 'true'
  let seed = integer('seed', values.seed, Math.floor(Math.random() * 2 ** 31), 0, Number.MAX_SAFE_INTEGER)
  const log = (line: string) => process.stderr.write(`${line}\n`)
  const totals = { runs: 0, failed: 0, ops: 0, faults: 0, violations: 0, downOk: 0, downTotal: 0, recoveryMaxMs: 0 }
  for (let run = 0; run < runs; run++, seed++) {
    process.stdout.write(`=== run ${run + 1}/${runs}: --seed ${seed} --time ${timeSeconds} --nemesis ${nemeses.join(',') || 'none'}${blobThresholdBytes === undefined ? '' : ` --blob-threshold-bytes ${blobThresholdBytes}`}${raftLogFileBytes === undefined ? '' : ` --raft-log-file-bytes ${raftLogFileBytes}`}${logValues === undefined ? '' : ` --log-values ${logValues}`}\n`)
    try {
      const result = await runJepsen({ timeSeconds, nemeses, seed, clients, clientTimeoutMs, electionTicks, blobThresholdBytes, raftLogFileBytes, logValues, log })
      process.stdout.write(`${formatReport(result)}\n`)
      totals.ops += workloadOps(result).length
      totals.faults += result.faults.length
      totals.violations += result.violations.length
      const down = nodeDownAvailability(result)
      totals.downOk += down.ok
      totals.downTotal += down.total
      totals.recoveryMaxMs = Math.max(totals.recoveryMaxMs, ...recoveries(result), result.healToServeMs)
      if (result.violations.length > 0) totals.failed++
    } catch (error) {
      process.stdout.write(`run could not complete: ${(error as Error).message}\n`)
      totals.failed++
    }
    totals.runs++
  }
  if (runs > 1) {
    process.stdout.write(`=== totals: ${totals.runs} runs, ${totals.failed} failed, ${totals.ops} operations, ${totals.faults} faults, ${totals.violations} violations; one node down: ${totals.downTotal === 0 ? 'n/a' : `${((100 * totals.downOk) / totals.downTotal).toFixed(2)}% of ${totals.downTotal}`}; worst recovery ${totals.recoveryMaxMs.toFixed(0)} ms\n`)
  }
  return totals.failed > 0 ? 1 : 0
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(`jepsen: ${(error as Error).message}\n${USAGE}\n`)
    process.exit(2)
  },
)
