/**
 * The reference model the conformance suite checks engines against: a plain Map filtered and
 * sorted with Buffer.compare, with the range semantics of engine.ts spelled out directly.
 */
import assert from 'node:assert/strict'
import type { Engine, RangeOptions } from '../../src/engine/engine.js'

/** readAll drains an iterator over `range` in pages of 7 (odd, to cross page edges). */
export async function readAll(engine: Engine, range: RangeOptions = {}): Promise<Array<[Buffer, Buffer]>> {
  const iterator = engine.iterator(range)
  const rows: Array<[Buffer, Buffer]> = []
  try {
    for (let page = await iterator.nextBatch(7); page.length > 0; page = await iterator.nextBatch(7)) rows.push(...page)
  } finally {
    await iterator.close()
  }
  return rows
}

/** modelRange is what `range` must yield from `model` (hex key -> value): every bound applies. */
export function modelRange(model: Map<string, Buffer>, range: RangeOptions): Array<[Buffer, Buffer]> {
  const inRange = (key: Buffer) =>
    (range.gt === undefined || Buffer.compare(key, range.gt) > 0) &&
    (range.gte === undefined || Buffer.compare(key, range.gte) >= 0) &&
    (range.lt === undefined || Buffer.compare(key, range.lt) < 0) &&
    (range.lte === undefined || Buffer.compare(key, range.lte) <= 0)
  let rows = [...model].map(([hex, value]): [Buffer, Buffer] => [Buffer.from(hex, 'hex'), value])
  rows = rows.filter(([key]) => inRange(key)).sort(([a], [b]) => Buffer.compare(a, b))
  if (range.reverse === true) rows.reverse()
  if (range.limit !== undefined && range.limit >= 0) rows = rows.slice(0, range.limit)
  return rows
}

/** checkAgainstModel asserts that the engine yields exactly the model's range. */
export async function checkAgainstModel(engine: Engine, model: Map<string, Buffer>, range: RangeOptions): Promise<void> {
  const actual = await readAll(engine, range)
  const expected = modelRange(model, range)
  const show = (rows: Array<[Buffer, Buffer]>) => rows.map(([key]) => key.toString('hex')).join(',')
  assert.equal(show(actual), show(expected), `range ${describeRange(range)}`)
  assert.deepEqual(actual, expected, `range ${describeRange(range)}`)
}

function describeRange(range: RangeOptions): string {
  return JSON.stringify(range, (_, value) => (value?.type === 'Buffer' ? Buffer.from(value.data).toString('hex') : value))
}
