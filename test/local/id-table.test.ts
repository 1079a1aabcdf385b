/**
 * IdTable against a Set model: random adds, lookups and deletes (fast-check), including ids
 * that share their first bytes, growth past the initial size, and backward-shift deletion.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import fc from 'fast-check'
import { IdTable, idTableSlotsMax } from '../../src/local/id-table.js'
import { RecentRequests } from '../../src/local/recent-requests.js'

const idOf = (n: number, salt = 0): Buffer => {
  const id = Buffer.alloc(16)
  id.writeUInt32LE(salt, 0) // shared prefix: only the last word differs
  id.writeUInt32LE(n >>> 0, 12)
  return id
}

test('IdTable agrees with a Set under random adds, deletes and lookups', () => {
  fc.assert(
    fc.property(fc.array(fc.tuple(fc.constantFrom('add', 'delete', 'has'), fc.integer({ min: 0, max: 3000 })), { maxLength: 4000 }), (steps) => {
      const table = new IdTable()
      const model = new Set<number>()
      for (const [action, n] of steps) {
        const id = idOf(n, 7)
        if (action === 'add') {
          table.add(id)
          model.add(n)
        } else if (action === 'delete') {
          assert.equal(table.delete(id), model.delete(n))
        } else {
          assert.equal(table.has(id), model.has(n))
        }
        assert.equal(table.size, model.size)
      }
      for (let n = 0; n <= 3000; n++) assert.equal(table.has(idOf(n, 7)), model.has(n), `id ${n}`)
    }),
    { numRuns: 40 },
  )
})

test('IdTable reads ids at an offset, grows, and empties back to nothing', () => {
  const table = new IdTable()
  const packed = Buffer.concat(Array.from({ length: 5000 }, (_, n) => idOf(n)))
  for (let at = 0; at < packed.length; at += 16) table.add(packed, at)
  table.add(packed, 16) // again: no change
  assert.equal(table.size, 5000)
  assert.ok(table.has(idOf(4999)))
  assert.equal(table.has(idOf(5000)), false)
  for (let at = 0; at < packed.length; at += 32) assert.ok(table.delete(packed, at))
  assert.equal(table.size, 2500)
  for (let n = 0; n < 5000; n++) assert.equal(table.has(idOf(n)), n % 2 === 1, `id ${n}`)
  for (let at = 16; at < packed.length; at += 32) table.delete(packed, at)
  assert.equal(table.size, 0)
  assert.equal(table.delete(idOf(1)), false)
})

test('RecentRequests refuses an idsMax its table could not hold, naming the bound', () => {
  assert.throws(() => new RecentRequests({ retentionMs: 1000, idsMax: idTableSlotsMax, evictionsPerBatchMax: 10 }), {
    code: 'KV_ERR_INVALID',
    message: /idTableSlotsMax/,
  })
  assert.throws(() => new RecentRequests({ retentionMs: 1000, idsMax: 0, evictionsPerBatchMax: 10 }), { code: 'KV_ERR_INVALID' })
})
