// The on-disk checksums must not depend on which CRC-32 implementation loaded: the native one,
// node:zlib's, and the table loop give the same value, whole and continued piece by piece.
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { randomBytes } from 'node:crypto'
import { crc32, crc32Implementation, crc32Native, crc32Table, crc32Zlib } from '../src/crc32.js'

test('crc32: the check value of "123456789" is 0xcbf43926 in every implementation', () => {
  const check = Buffer.from('123456789')
  for (const f of [crc32, crc32Table, crc32Native, crc32Zlib]) if (f !== undefined) assert.equal(f(check), 0xcbf43926)
  assert.equal(crc32(Buffer.alloc(0)), 0)
})

test('crc32: the native implementation is in use on this platform (linux x64 has a prebuilt binary)', { skip: process.platform !== 'linux' || process.arch !== 'x64' }, () => {
  assert.equal(crc32Implementation, 'native')
})

test('crc32: implementations agree on random data of many sizes, whole and continued', () => {
  for (const size of [1, 3, 15, 16, 17, 63, 64, 65, 255, 4096, 65_537, 1 << 20]) {
    const data = randomBytes(size)
    const expected = crc32Table(data)
    for (const f of [crc32, crc32Native, crc32Zlib]) {
      if (f === undefined) continue
      assert.equal(f(data), expected, `size ${size}`)
      const cut = Math.floor(size / 3)
      assert.equal(f(data.subarray(cut), f(data.subarray(0, cut))), expected, `size ${size} continued at ${cut}`)
    }
    assert.equal(crc32Table(data.subarray(1), crc32Table(data.subarray(0, 1))), expected)
  }
})
