// In-process tests of the CLI's text forms: scan's escaping (reversible, one line per entry),
// JSON lines, batch parsing with its bounds, and bounded reads of values.
import assert from 'node:assert/strict'
import { Readable } from 'node:stream'
import { test } from 'node:test'
import { Limits } from '../../src/limits.js'
import { decodeText } from '../../src/cli/args.js'
import { escapeText, formatEntry, readBounded } from '../../src/cli/io.js'
import { parseBatch } from '../../src/cli/scan.js'

/** unescape reverses escapeText, to show that the text form loses nothing. */
function unescape(text: string): Buffer {
  const parts: Buffer[] = []
  for (let i = 0; i < text.length; ) {
    if (text[i] !== '\\') {
      const next = text.indexOf('\\', i)
      const end = next === -1 ? text.length : next
      parts.push(Buffer.from(text.slice(i, end), 'utf8'))
      i = end
      continue
    }
    const code = text[i + 1]!
    if (code === 'x') {
      parts.push(Buffer.from([parseInt(text.slice(i + 2, i + 4), 16)]))
      i += 4
    } else {
      parts.push(Buffer.from({ '\\': '\\', t: '\t', n: '\n', r: '\r' }[code]!))
      i += 2
    }
  }
  return Buffer.concat(parts)
}

test('escapeText keeps valid UTF-8, escapes control and invalid bytes, and is reversible', () => {
  assert.equal(escapeText(Buffer.from('plain ünïcode ✓')), 'plain ünïcode ✓')
  assert.equal(escapeText(Buffer.from('a\tb\nc\rd\\e\x00\x7f')), 'a\\tb\\nc\\rd\\\\e\\x00\\x7f')
  assert.equal(escapeText(Buffer.from([0x61, 0xff, 0xc3, 0xa9, 0xc3])), 'a\\xffé\\xc3')
  for (let seed = 1; seed < 300; seed++) {
    const bytes = Buffer.from(Array.from({ length: seed % 17 }, (_, i) => (seed * 131 + i * 197) % 256))
    const text = escapeText(bytes)
    assert.ok(!/[\n\t\r]/.test(text), 'one line, tabs only as separators')
    assert.deepEqual(unescape(text), bytes, bytes.toString('hex'))
  }
})

test('formatEntry: text, hex and JSON forms', () => {
  assert.equal(formatEntry(Buffer.from('k'), Buffer.from('v\n'), 'text'), 'k\tv\\n')
  assert.equal(formatEntry(Buffer.from('k'), undefined, 'text'), 'k')
  assert.equal(formatEntry(Buffer.from('k'), Buffer.from([0, 255]), 'hex'), '6b\t00ff')
  assert.deepEqual(JSON.parse(formatEntry(Buffer.from([0xff]), Buffer.from('ok'), 'json')), { keyBase64: '/w==', value: 'ok' })
})

test('parseBatch accepts both shapes and base64 fields; refuses bad ops and too many ops', () => {
  const ops = parseBatch(Buffer.from(JSON.stringify({ ops: [{ type: 'put', key: 'a', valueBase64: 'AP8=' }, { type: 'del', keyBase64: 'Yg==' }] })))
  assert.deepEqual(ops, [{ type: 'put', key: Buffer.from('a'), value: Buffer.from([0, 255]) }, { type: 'del', key: Buffer.from('b') }])
  assert.throws(() => parseBatch(Buffer.from('[{"type":"put","key":"a","value":"x","valueBase64":"eA=="}]')), { code: 'KV_ERR_INVALID', message: /ops\[0\]/ })
  assert.throws(() => parseBatch(Buffer.from('[{"type":"merge","key":"a"}]')), { code: 'KV_ERR_INVALID' })
  assert.throws(() => parseBatch(Buffer.from('{"op":[]}')), { code: 'KV_ERR_INVALID' })
  assert.throws(() => parseBatch(Buffer.from('[{"type":"del","keyBase64":"!!"}]')), { code: 'KV_ERR_INVALID' })
  const many = JSON.stringify(Array.from({ length: Limits.batchOpsMax + 1 }, () => ({ type: 'del', key: 'k' })))
  assert.throws(() => parseBatch(Buffer.from(many)), { code: 'KV_ERR_BATCH_TOO_LARGE', message: /batchOpsMax/ })
})

test('readBounded stops at the bound and names it', async () => {
  const source = () => Readable.from([Buffer.alloc(600), Buffer.alloc(600)])
  assert.equal((await readBounded(source(), 1200, 'stdin', 'KV_ERR_VALUE_TOO_LARGE', 'valueBytesMax')).length, 1200)
  await assert.rejects(readBounded(source(), 1000, 'stdin', 'KV_ERR_VALUE_TOO_LARGE', 'valueBytesMax'), { code: 'KV_ERR_VALUE_TOO_LARGE', message: /valueBytesMax/ })
})

test('decodeText validates hex and base64 key arguments', () => {
  assert.deepEqual(decodeText('00ff', 'hex', 'KEY'), Buffer.from([0, 255]))
  assert.throws(() => decodeText('0g', 'hex', 'KEY'), { code: 'KV_ERR_INVALID' })
  assert.throws(() => decodeText('abc', 'hex', 'KEY'), { code: 'KV_ERR_INVALID' })
  assert.deepEqual(decodeText('AP8=', 'base64', 'KEY'), Buffer.from([0, 255]))
  assert.throws(() => decodeText('a b', 'base64', 'KEY'), { code: 'KV_ERR_INVALID' })
})
