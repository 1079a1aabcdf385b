/**
 * The public client API (CONTRACT.md, "Library"): one DistKV interface for local mode,
 * a local server over TCP, and a cluster proxy.
 */

/** KeyLike: keys and values are UTF-8 strings or bytes; results are always Buffers. */
export type KeyLike = string | Uint8Array
export type ValueLike = string | Uint8Array

/** WriteOptions: writes are durable on resolve unless `sync: false`. */
export interface WriteOptions {
  sync?: boolean
}

/** BatchOptions: `atomic: false` lets a cluster split a batch across shards (non-atomically). */
export interface BatchOptions extends WriteOptions {
  atomic?: boolean
}

export type BatchOp = { type: 'put'; key: KeyLike; value: ValueLike } | { type: 'del'; key: KeyLike }

/** QueryRange selects keys in bytewise order; `prefix` combines with the other bounds. */
export interface QueryRange {
  gt?: KeyLike
  gte?: KeyLike
  lt?: KeyLike
  lte?: KeyLike
  prefix?: KeyLike
  limit?: number
  reverse?: boolean
  /** keys/values: false leaves that half of each pair as an empty Buffer (not sent). */
  keys?: boolean
  values?: boolean
}

/** DistKV is the one client interface of every mode. */
export interface DistKV {
  readonly clientId: string
  get(key: KeyLike): Promise<Buffer | undefined>
  getMany(keys: KeyLike[]): Promise<Array<Buffer | undefined>>
  put(key: KeyLike, value: ValueLike, options?: WriteOptions): Promise<void>
  del(key: KeyLike, options?: WriteOptions): Promise<void>
  batch(ops: BatchOp[], options?: BatchOptions): Promise<void>
  has(key: KeyLike): Promise<boolean>
  getSize(key: KeyLike): Promise<number | undefined>
  query(range?: QueryRange): AsyncIterable<[Buffer, Buffer]>
  sync(): Promise<void>
  close(): Promise<void>
}

/** OpenOptions for `open(dir)` (local mode). */
export interface OpenOptions {
  /** name registered with the server (shown by `distkv clients`); defaults to the process title. */
  name?: string
  /** engine used when this call starts the server: 'rocksdb' (default) or 'leveldb'. */
  engine?: 'rocksdb' | 'leveldb'
  /** idleTimeoutSeconds for a server this call starts; 0 = never exit. Default 30. */
  idleTimeoutSeconds?: number
  /** requestTimeoutMs: how long one request may take, across reconnects, before KV_ERR_TIMEOUT. */
  requestTimeoutMs?: number
}

/** ConnectOptions for `connect(endpoint)`. */
export interface ConnectOptions {
  token?: string
  name?: string
  requestTimeoutMs?: number
}
