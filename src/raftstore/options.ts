/**
 * Validation and defaults of the driver's options, done once at construction (fields named in
 * every error), and the log compaction policy as a pure function of a group's log.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine } from '../engine/engine.js'
import * as raft from '../raft/index.js'
import type { ConfChange, NodeId, RaftConfig, RaftCore, RandomSource } from '../raft/types.js'
import type { DriverOptions } from './driver.js'
import type { DriverLimits } from './group.js'
import type { RaftLogFiles } from './log-files.js'
import type { Ticker } from './ticker.js'
import type { Transport } from './transport.js'

/** CompactionPolicy decides when a group's log is cut behind a fresh snapshot. */
export interface CompactionPolicy {
  /** compactLogEntriesMax: compact once more than this many applied entries are in the log. */
  compactLogEntriesMax: number
  /**
   * compactLogEntriesSoft: compact earlier, once more than this many applied entries are in the
   * log, but only what every replica already has (on a leader: up to its slowest peer's match;
   * elsewhere up to the applied index), still keeping logRetainEntries. A short log costs less
   * memory, less GC (its entries die young) and less engine work (runs deleted while still in
   * the memtable), and a lagging but live follower still gets entries, not a snapshot.
   * Ignored when not below compactLogEntriesMax.
   */
  compactLogEntriesSoft: number
  /** compactLogBytesMax: compact once the in-memory log exceeds this many bytes (and something is applied). */
  compactLogBytesMax: number
  /** logRetainEntries: applied entries kept behind the applied index so slightly slow followers need no snapshot. */
  logRetainEntries: number
  /**
   * logRetainBytes caps the memory of those retained entries: a log of large entries (file
   * chunks of 1-4 MiB) keeps fewer of them, or 1,000 retained chunks would pin gigabytes.
   */
  logRetainBytes: number
  /** snapshotBytesMax: largest snapshot kept in memory for lagging followers; past it the log is not compacted. */
  snapshotBytesMax: number
}

/** DRIVER_DEFAULTS are the limits and policy used for omitted options. */
export const DRIVER_DEFAULTS: Readonly<{ limits: DriverLimits; compaction: CompactionPolicy; raft: { electionTimeoutTicks: number; heartbeatIntervalTicks: number } }> = Object.freeze({
  limits: Object.freeze({ pendingProposalsMax: 4096, pendingReadsMax: 4096, inboxMessagesMax: 16_384, proposalBytesMax: 8 * 1024 * 1024, requestTimeoutTicks: 100 }),
  compaction: Object.freeze({ compactLogEntriesMax: 10_000, compactLogEntriesSoft: 2_000, compactLogBytesMax: 64 * 1024 * 1024, logRetainEntries: 1_000, logRetainBytes: 8 * 1024 * 1024, snapshotBytesMax: 256 * 1024 * 1024 }),
  raft: Object.freeze({ electionTimeoutTicks: 10, heartbeatIntervalTicks: 1 }),
})

/** ResolvedDriverOptions is DriverOptions with every default filled in, frozen. */
export interface ResolvedDriverOptions {
  readonly nodeId: NodeId
  readonly engine: Engine
  readonly logFiles: RaftLogFiles
  readonly transport: Transport
  readonly ticker: Ticker
  readonly random: RandomSource
  readonly raft: Omit<RaftConfig, 'id' | 'storage' | 'random' | 'applied'>
  readonly limits: Readonly<DriverLimits>
  readonly compaction: Readonly<CompactionPolicy>
  readonly createCore: (config: RaftConfig) => RaftCore
  readonly decodeConfChange: (data: Uint8Array) => ConfChange
  readonly logger: NonNullable<DriverOptions['logger']>
  readonly leaderSendsBeforePersist: boolean
  readonly deferCommitAppends: boolean
}

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new KvError(ErrorCode.INVALID, `DriverOptions.${field} must be an integer in [${min}, ${max}], got ${String(value)}`, { field, value })
  }
  return value
}

function resolveRecord<T extends object>(prefix: string, given: Partial<T> | undefined, defaults: T, max: number): T {
  const out: Record<string, number> = {}
  for (const [field, fallback] of Object.entries(defaults)) {
    out[field] = integerIn(`${prefix}.${field}`, (given as Record<string, unknown> | undefined)?.[field] ?? fallback, field === 'logRetainEntries' || field === 'logRetainBytes' ? 0 : 1, max)
  }
  return Object.freeze(out) as T
}

function requireObject(field: string, value: unknown, method: string): void {
  if (value === null || typeof value !== 'object' || typeof (value as Record<string, unknown>)[method] !== 'function') {
    throw new KvError(ErrorCode.INVALID, `DriverOptions.${field} is required`, { field })
  }
}

/** resolveDriverOptions validates `options` and fills in defaults. */
export function resolveDriverOptions(options: DriverOptions): ResolvedDriverOptions {
  integerIn('nodeId', options.nodeId, 1, Number.MAX_SAFE_INTEGER)
  requireObject('engine', options.engine, 'batch')
  requireObject('logFiles', options.logFiles, 'write')
  requireObject('transport', options.transport, 'send')
  requireObject('ticker', options.ticker, 'start')
  if (options.leaderSendsBeforePersist !== undefined && typeof options.leaderSendsBeforePersist !== 'boolean') {
    throw new KvError(ErrorCode.INVALID, 'DriverOptions.leaderSendsBeforePersist must be a boolean', { field: 'leaderSendsBeforePersist' })
  }
  if (options.deferCommitAppends !== undefined && typeof options.deferCommitAppends !== 'boolean') {
    throw new KvError(ErrorCode.INVALID, 'DriverOptions.deferCommitAppends must be a boolean', { field: 'deferCommitAppends' })
  }
  return Object.freeze({
    nodeId: options.nodeId,
    engine: options.engine,
    logFiles: options.logFiles,
    transport: options.transport,
    ticker: options.ticker,
    random: options.random ?? Math.random,
    raft: Object.freeze({ ...DRIVER_DEFAULTS.raft, ...options.raft }),
    limits: resolveRecord('limits', options.limits, DRIVER_DEFAULTS.limits, 2 ** 40),
    compaction: resolveRecord('compaction', options.compaction, DRIVER_DEFAULTS.compaction, 2 ** 40),
    createCore: options.createCore ?? ((config: RaftConfig) => new raft.RaftNode(config)),
    decodeConfChange: options.decodeConfChange ?? raft.decodeConfChange,
    logger: options.logger ?? (() => {}),
    leaderSendsBeforePersist: options.leaderSendsBeforePersist ?? true,
    deferCommitAppends: options.deferCommitAppends ?? true,
  })
}

/**
 * compactionIndex is the index to compact the log up to, or undefined when the policy says not
 * yet. The log is compacted once it holds more than compactLogEntriesMax applied entries or more
 * than compactLogBytesMax bytes; it then keeps logRetainEntries applied entries, fewer when their
 * average size (the log's bytes over its entries) would exceed logRetainBytes. Bytes alone
 * trigger compaction even when fewer than logRetainEntries entries are applied, so memory stays
 * bounded by compactLogBytesMax plus the unapplied tail whatever the entry size.
 * Past compactLogEntriesSoft applied entries it compacts only up to `replicatedTo` (a leader's
 * slowest peer match; omitted elsewhere) with the same retention, so no live peer needs a snapshot.
 */
export function compactionIndex(policy: CompactionPolicy, log: { firstIndex: number; lastIndex: number; applied: number; logBytes: number }, replicatedTo = Infinity): number | undefined {
  const appliedInLog = log.applied - log.firstIndex + 1
  if (appliedInLog <= 0) return undefined
  const overBytes = log.logBytes > policy.compactLogBytesMax
  const hard = appliedInLog > policy.compactLogEntriesMax || overBytes
  if (!hard && appliedInLog <= policy.compactLogEntriesSoft) return undefined
  const entriesInLog = Math.max(1, log.lastIndex - log.firstIndex + 1)
  const averageBytes = log.logBytes / entriesInLog
  const retain = Math.min(policy.logRetainEntries, Math.floor(policy.logRetainBytes / Math.max(1, averageBytes)))
  const upTo = (hard ? log.applied : Math.min(log.applied, replicatedTo)) - retain
  return upTo >= log.firstIndex ? upTo : undefined
}

/** softCompactionWanted tells whether compactionIndex needs the leader's slowest peer match (`replicatedTo`) to decide. */
export function softCompactionWanted(policy: CompactionPolicy, log: { firstIndex: number; applied: number }): boolean {
  const appliedInLog = log.applied - log.firstIndex + 1
  return appliedInLog > policy.compactLogEntriesSoft && appliedInLog <= policy.compactLogEntriesMax
}
