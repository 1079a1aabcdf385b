// Runs the engine conformance suite against the LevelDB engine, plus its option checks.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { LevelDbEngine } from '../../src/engine/leveldb.js'
import { runEngineConformance } from './conformance.js'

runEngineConformance('leveldb', (dir) => new LevelDbEngine({ dir, cacheBytes: 1024 * 1024, writeBufferBytes: 1024 * 1024 }))

test('leveldb: options are validated at construction, naming the field', () => {
  assert.throws(() => new LevelDbEngine({ dir: '' }), { code: 'KV_ERR_INVALID' })
  assert.throws(() => new LevelDbEngine({ dir: '/tmp/x', writeBufferBytes: 1 }), { code: 'KV_ERR_INVALID', message: /writeBufferBytes/ })
})
