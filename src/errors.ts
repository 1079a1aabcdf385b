/**
 * Operating errors: expected failures with a stable `KV_ERR_*` code that callers branch on.
 * Programmer errors (broken invariants) are not KvErrors: they go through `assert` and crash.
 */

/** ErrorCode lists every stable code; add to it, never rename (see CONTRACT.md). */
export const ErrorCode = {
  INVALID: 'KV_ERR_INVALID',
  KEY_TOO_LARGE: 'KV_ERR_KEY_TOO_LARGE',
  VALUE_TOO_LARGE: 'KV_ERR_VALUE_TOO_LARGE',
  BATCH_TOO_LARGE: 'KV_ERR_BATCH_TOO_LARGE',
  FRAME_TOO_LARGE: 'KV_ERR_FRAME_TOO_LARGE',
  PROTOCOL: 'KV_ERR_PROTOCOL',
  UNAVAILABLE: 'KV_ERR_UNAVAILABLE',
  TIMEOUT: 'KV_ERR_TIMEOUT',
  AUTH: 'KV_ERR_AUTH',
  CLOSED: 'KV_ERR_CLOSED',
  TOO_MANY_CONNECTIONS: 'KV_ERR_TOO_MANY_CONNECTIONS',
  TOO_MANY_REQUESTS: 'KV_ERR_TOO_MANY_REQUESTS',
  CROSS_SHARD_BATCH: 'KV_ERR_CROSS_SHARD_BATCH',
  NOT_LEADER: 'KV_ERR_NOT_LEADER',
  WRONG_SHARD: 'KV_ERR_WRONG_SHARD',
  STALE_EPOCH: 'KV_ERR_STALE_EPOCH',
  NOT_FOUND: 'KV_ERR_NOT_FOUND',
  FILE_TOO_LARGE: 'KV_ERR_FILE_TOO_LARGE',
  DISK_FULL: 'KV_ERR_DISK_FULL',
  UNKNOWN_METHOD: 'KV_ERR_UNKNOWN_METHOD',
  INTERNAL: 'KV_ERR_INTERNAL',
  /** CORRUPTION: durable data failed its checksum or an invariant where it cannot be repaired. */
  CORRUPTION: 'KV_ERR_CORRUPTION',
} as const

export type ErrorCodeName = (typeof ErrorCode)[keyof typeof ErrorCode]

/** KvError is every operating error distkv reports; `code` is stable, `details` is metadata. */
export class KvError extends Error {
  readonly code: ErrorCodeName
  readonly details: Record<string, unknown> | undefined

  constructor(code: ErrorCodeName, message: string, details?: Record<string, unknown>) {
    super(message)
    this.name = 'KvError'
    this.code = code
    this.details = details
  }

  /** toJSON is the shape errors take on the wire and in HTTP bodies. */
  toJSON(): { code: ErrorCodeName; message: string; details?: Record<string, unknown> } {
    return this.details === undefined
      ? { code: this.code, message: this.message }
      : { code: this.code, message: this.message, details: this.details }
  }
}

/** isKvError tells operating errors from bugs. */
export function isKvError(error: unknown): error is KvError {
  return error instanceof KvError
}

const knownCodes = new Set<string>(Object.values(ErrorCode))

/** kvErrorFrom rebuilds a KvError received from a peer; an unknown code becomes INTERNAL. */
export function kvErrorFrom(wire: { code?: unknown; message?: unknown; details?: unknown }): KvError {
  const code = typeof wire.code === 'string' && knownCodes.has(wire.code) ? (wire.code as ErrorCodeName) : ErrorCode.INTERNAL
  const message = typeof wire.message === 'string' ? wire.message : 'error from peer'
  const details = wire.details !== null && typeof wire.details === 'object' ? (wire.details as Record<string, unknown>) : undefined
  return new KvError(code, message, details)
}

/** assert guards invariants: a failure is a bug, so it throws a plain Error and is never caught as a KvError. */
export function assert(condition: unknown, message: string): asserts condition {
  if (!condition) throw new Error(`assertion failed: ${message}`)
}
