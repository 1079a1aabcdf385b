/**
 * The storage engines and the factory that picks one by name: `createEngine({ kind, dir })`.
 * Nothing above this folder should construct an engine class directly except tests that need
 * the memory engine's crash model.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine } from './engine.js'
import { LevelDbEngine, type LevelDbEngineOptions } from './leveldb.js'
import { MemoryEngine, type MemoryEngineOptions } from './memory.js'
import { RocksDbEngine, type RocksDbEngineOptions } from './rocksdb.js'

export type { Engine, EngineIterator, EngineOp, RangeOptions, WriteOptions } from './engine.js'
export { BaseEngine, iteratorBatchEntriesMax } from './base.js'
export { LevelDbEngine, type LevelDbEngineOptions } from './leveldb.js'
export { MemoryEngine, unsyncedBatchesMax, type CrashOptions, type MemoryEngineOptions } from './memory.js'
export { RocksDbEngine, iteratorBatchBytesMax, walSyncModeEnv, type RocksDbEngineOptions, type WalSyncMode } from './rocksdb.js'

/** EngineKind names an engine implementation. */
export type EngineKind = Engine['kind']

/** EngineConfig selects an engine: disk engines need `dir`; extra fields tune the chosen one. */
export type EngineConfig =
  | ({ kind?: 'rocksdb' } & RocksDbEngineOptions)
  | ({ kind: 'leveldb' } & LevelDbEngineOptions)
  | ({ kind: 'memory'; dir?: string } & MemoryEngineOptions)

/** createEngine constructs (but does not open) the engine `config.kind`, rocksdb by default. */
export function createEngine(config: EngineConfig): Engine {
  const kind = config?.kind ?? 'rocksdb'
  switch (kind) {
    case 'rocksdb':
      return new RocksDbEngine(config as RocksDbEngineOptions)
    case 'leveldb':
      return new LevelDbEngine(config as LevelDbEngineOptions)
    case 'memory':
      return new MemoryEngine(config as MemoryEngineOptions)
    default:
      throw new KvError(ErrorCode.INVALID, "engine kind must be 'rocksdb', 'leveldb' or 'memory'", { kind })
  }
}

/** openEngine creates and opens an engine in one step. */
export async function openEngine(config: EngineConfig): Promise<Engine> {
  const engine = createEngine(config)
  await engine.open()
  return engine
}
