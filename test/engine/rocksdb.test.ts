// Runs the engine conformance suite against the RocksDB engine, plus its option checks.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import { runEngineConformance } from './conformance.js'

runEngineConformance('rocksdb', (dir) => new RocksDbEngine({ dir, cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 }))
// The native WAL sync path stays supported (walSync: 'native'), so it passes the same suite.
runEngineConformance('rocksdb walSync native', (dir) => new RocksDbEngine({ dir, walSync: 'native', cacheBytes: 1024 * 1024, memtableBudgetBytes: 8 * 1024 * 1024, backgroundThreads: 1 }))

test('rocksdb: options are validated at construction, naming the field', () => {
  assert.throws(() => new RocksDbEngine({ dir: '' }), { code: 'KV_ERR_INVALID' })
  assert.throws(() => new RocksDbEngine({ dir: '/tmp/x', cacheBytes: -1 }), { code: 'KV_ERR_INVALID', message: /cacheBytes/ })
  assert.throws(() => new RocksDbEngine({ dir: '/tmp/x', backgroundThreads: 0 }), { code: 'KV_ERR_INVALID', message: /backgroundThreads/ })
})
