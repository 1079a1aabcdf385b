/**
 * The storage engine interface: the one narrow surface every layer above stores through.
 * Implementations: rocksdb (default), leveldb, memory (tests and the simulator).
 * Keys and values are Buffers compared bytewise; validation of sizes happens above this layer.
 */

/** EngineOp is one operation of an atomic write batch. */
export type EngineOp = { type: 'put'; key: Buffer; value: Buffer } | { type: 'del'; key: Buffer }

/** WriteOptions: `sync` true means the write is on stable storage when the promise resolves. */
export interface WriteOptions {
  sync?: boolean
}

/** RangeOptions selects a bytewise key range; bounds may be combined, `limit` < 0 means none. */
export interface RangeOptions {
  gt?: Buffer
  gte?: Buffer
  lt?: Buffer
  lte?: Buffer
  reverse?: boolean
  limit?: number
  keys?: boolean
  values?: boolean
}

/** EngineIterator walks a consistent snapshot taken when it was created. */
export interface EngineIterator {
  /** next returns up to `count` entries, or an empty array at the end. */
  nextBatch(count: number): Promise<Array<[Buffer, Buffer]>>
  close(): Promise<void>
}

/** Engine is an ordered, durable key/value store. */
export interface Engine {
  readonly kind: 'rocksdb' | 'leveldb' | 'memory'
  open(): Promise<void>
  close(): Promise<void>
  get(key: Buffer): Promise<Buffer | undefined>
  getMany(keys: Buffer[]): Promise<Array<Buffer | undefined>>
  put(key: Buffer, value: Buffer, options?: WriteOptions): Promise<void>
  del(key: Buffer, options?: WriteOptions): Promise<void>
  /** batch applies all ops atomically: all or none. */
  batch(ops: EngineOp[], options?: WriteOptions): Promise<void>
  iterator(range?: RangeOptions): EngineIterator
  /** sync makes every write acknowledged so far durable. */
  sync(): Promise<void>
}
