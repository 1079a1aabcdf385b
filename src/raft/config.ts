/**
 * Validation of RaftConfig: done once, at construction, so the step functions can trust every
 * field. Errors are KvErrors (KV_ERR_INVALID) naming the field and the allowed range.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { RaftConfig, RaftStorage, RandomSource } from './types.js'

/** RAFT_DEFAULTS are the values used for optional RaftConfig fields. */
export const RAFT_DEFAULTS = {
  entryBytesMaxPerMessage: 1024 * 1024,
  inflightMessagesMax: 256,
  uncommittedBytesMax: 64 * 1024 * 1024,
  preVote: true,
  checkQuorum: true,
  proposalForwarding: false,
} as const

/** ResolvedRaftConfig is a RaftConfig with every optional field filled in and frozen. */
export interface ResolvedRaftConfig {
  readonly id: number
  readonly storage: RaftStorage
  readonly random: RandomSource
  readonly electionTimeoutTicks: number
  readonly heartbeatIntervalTicks: number
  readonly applied: number
  readonly entryBytesMaxPerMessage: number
  readonly inflightMessagesMax: number
  readonly uncommittedBytesMax: number
  readonly preVote: boolean
  readonly checkQuorum: boolean
  readonly proposalForwarding: boolean
}

const TICKS_MAX = 1_000_000

function invalid(field: string, message: string, value: unknown): KvError {
  return new KvError(ErrorCode.INVALID, `RaftConfig.${field} ${message}`, { field, value })
}

function integerIn(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw invalid(field, `must be an integer in [${min}, ${max}], got ${String(value)}`, value)
  }
  return value
}

function optionalBoolean(field: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback
  if (typeof value !== 'boolean') throw invalid(field, `must be a boolean, got ${typeof value}`, value)
  return value
}

/** resolveRaftConfig validates `config` and returns a frozen copy with defaults applied. */
export function resolveRaftConfig(config: RaftConfig): ResolvedRaftConfig {
  if (config === null || typeof config !== 'object') throw invalid('', 'must be an object', config)
  const id = integerIn('id', config.id, 1, Number.MAX_SAFE_INTEGER)
  const storage = config.storage
  if (storage === null || typeof storage !== 'object' || typeof storage.initialState !== 'function') {
    throw invalid('storage', 'must implement RaftStorage', undefined)
  }
  if (typeof config.random !== 'function') throw invalid('random', 'must be a function returning a float in [0, 1)', undefined)
  const heartbeatIntervalTicks = integerIn('heartbeatIntervalTicks', config.heartbeatIntervalTicks, 1, TICKS_MAX)
  const electionTimeoutTicks = integerIn('electionTimeoutTicks', config.electionTimeoutTicks, heartbeatIntervalTicks + 1, TICKS_MAX)
  const applied = integerIn('applied', config.applied ?? 0, 0, Number.MAX_SAFE_INTEGER)
  const entryBytesMaxPerMessage = integerIn('entryBytesMaxPerMessage', config.entryBytesMaxPerMessage ?? RAFT_DEFAULTS.entryBytesMaxPerMessage, 1, 2 ** 40)
  const inflightMessagesMax = integerIn('inflightMessagesMax', config.inflightMessagesMax ?? RAFT_DEFAULTS.inflightMessagesMax, 1, 65_536)
  const uncommittedBytesMax = integerIn('uncommittedBytesMax', config.uncommittedBytesMax ?? RAFT_DEFAULTS.uncommittedBytesMax, 1, 2 ** 40)
  return Object.freeze({
    id,
    storage,
    random: config.random,
    electionTimeoutTicks,
    heartbeatIntervalTicks,
    applied,
    entryBytesMaxPerMessage,
    inflightMessagesMax,
    uncommittedBytesMax,
    preVote: optionalBoolean('preVote', config.preVote, RAFT_DEFAULTS.preVote),
    checkQuorum: optionalBoolean('checkQuorum', config.checkQuorum, RAFT_DEFAULTS.checkQuorum),
    proposalForwarding: optionalBoolean('proposalForwarding', config.proposalForwarding, RAFT_DEFAULTS.proposalForwarding),
  })
}
