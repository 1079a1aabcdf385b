/**
 * distkv: the package's main export. `open(dir)` for local mode, `connect(endpoint)` for a
 * server or cluster proxy; both return the same DistKV interface.
 */
export { KvError, ErrorCode, isKvError } from './errors.js'
export type { ErrorCodeName } from './errors.js'
export { Limits } from './limits.js'
export { open, connect } from './client/index.js'
export { files, FileStore } from './files/index.js'
export type { FileStoreOptions, FileInfo, FileRead, FileList, ListFilesOptions, PutFileOptions } from './files/index.js'
export type {
  DistKV,
  KeyLike,
  ValueLike,
  WriteOptions,
  BatchOptions,
  BatchOp,
  QueryRange,
  OpenOptions,
  ConnectOptions,
} from './client/types.js'
