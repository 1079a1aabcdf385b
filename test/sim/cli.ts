/**
 * The simulator's command line: `npm run sim -- --seeds N --from S [--verbose] [--ticks T]`
 * runs seeds S..S+N-1, prints each failure (seed, invariant, trace tail, replay command) and a
 * summary, and exits non-zero on any violation.
 */
import { ErrorCode, KvError } from '../../src/errors.js'
import { RUN_DEFAULTS, formatFailure, runSeed, type RunOptions } from './simulator.js'

/** SEEDS_MAX bounds one invocation (a typo should not start a week-long run). */
const SEEDS_MAX = 10_000_000

interface CliArgs {
  seeds: number
  from: number
  verbose: boolean
  ticks: number
}

function parseArgs(argv: string[]): CliArgs {
  const args: CliArgs = { seeds: 100, from: 1, verbose: false, ticks: RUN_DEFAULTS.safetyTicks }
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]
    if (flag === '--verbose') {
      args.verbose = true
      continue
    }
    const value = Number(argv[++i])
    if (!Number.isSafeInteger(value) || value < 0) throw new KvError(ErrorCode.INVALID, `${flag} needs a non-negative integer, got ${argv[i]}`)
    if (flag === '--seeds') args.seeds = value
    else if (flag === '--from') args.from = value
    else if (flag === '--ticks') args.ticks = value
    else throw new KvError(ErrorCode.INVALID, `unknown flag ${flag} (usage: --seeds N --from S [--ticks T] [--verbose])`)
  }
  if (args.seeds < 1 || args.seeds > SEEDS_MAX) throw new KvError(ErrorCode.INVALID, `--seeds must be in [1, SEEDS_MAX ${SEEDS_MAX}]`)
  return args
}

function main(): number {
  const args = parseArgs(process.argv.slice(2))
  const options: RunOptions = { ...RUN_DEFAULTS, safetyTicks: args.ticks, verbose: args.verbose, sink: (line) => console.log(line) }
  const started = process.hrtime.bigint()
  let events = 0
  let ticks = 0
  const failed: number[] = []
  for (let seed = args.from; seed < args.from + args.seeds; seed++) {
    const result = runSeed(seed, options)
    events += result.events
    ticks += result.ticks
    if (result.violation !== undefined) {
      failed.push(seed)
      console.log(formatFailure(result))
    } else if (args.verbose || args.seeds === 1) {
      console.log(`seed ${seed} ok: ${result.events} events, ${result.ticks} ticks, ${result.putsCompleted} puts, ${result.readsCompleted} reads, trace ${result.traceDigest}`)
    }
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9
  console.log(`sim: ${args.seeds} seeds (${args.from}..${args.from + args.seeds - 1}), ${events} events, ${ticks} ticks, ${seconds.toFixed(1)} s, ${failed.length} violations${failed.length > 0 ? ` (seeds ${failed.slice(0, 20).join(', ')}${failed.length > 20 ? ', ...' : ''})` : ''}`)
  return failed.length === 0 ? 0 : 1
}

try {
  process.exitCode = main()
} catch (error) {
  console.error(error instanceof KvError ? `sim: ${error.message}` : error)
  process.exitCode = 2
}
