/**
 * distkv: the package's main export. `open(dir)` for local mode, `connect(endpoint)` for a
 * server or cluster proxy; both return the same DistKV interface.
 */
export { KvError, ErrorCode, isKvError } from './errors.js'
export type { ErrorCodeName } from './errors.js'
export { Limits } from './limits.js'
