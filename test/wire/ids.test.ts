/**
 * Ids a WireClient makes: v4 UUIDs, distinct, one random prefix per client followed by a
 * counter, so replies are matched by number; a caller's own id still works beside them, and an
 * id already in flight is refused whichever way it was made.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode } from '../../src/errors.js'
import { connectClient, rejectsWith, startServer } from './helpers.js'

const uuidV4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/

test('generated ids: distinct v4 UUIDs, a random prefix per client and a counter after it; caller ids beside them', async () => {
  const s = await startServer()
  try {
    const first = await connectClient(s.tcp)
    const second = await connectClient(s.tcp)
    const ids = async (client: typeof first) => (await Promise.all(Array.from({ length: 300 }, () => client.request('ctx', null)))).map((ctx: any) => ctx.requestId as string)
    const a = await ids(first)
    const b = await ids(second)
    for (const id of [...a, ...b]) assert.match(id, uuidV4)
    assert.equal(new Set([...a, ...b]).size, 600)
    const prefix = (id: string) => id.replace(/-/g, '').slice(0, 20)
    assert.equal(new Set(a.map(prefix)).size, 1, 'one prefix per client')
    assert.notEqual(prefix(a[0]!), prefix(b[0]!), 'clients draw their own prefix')
    const counters = a.map((id) => Number.parseInt(id.replace(/-/g, '').slice(20), 16)).sort((x, y) => x - y)
    counters.forEach((counter, i) => i > 0 && assert.equal(counter, counters[i - 1]! + 1))
    // An id the caller chose, even one shaped like this client's own (its prefix, a counter it
    // has not reached), is matched to its reply; while it is in flight the same id is refused.
    const own = `${a[0]!.slice(0, 24)}00ffffffffff`
    const waiting = first.request('sleep', 50, { requestId: own })
    await rejectsWith(first.request('echo', 1, { requestId: own }), ErrorCode.INVALID)
    assert.equal(await waiting, 50)
    assert.deepEqual(await first.request('ctx', null, { requestId: own }).then((ctx: any) => ctx.requestId), own)
    await first.close()
    await second.close()
  } finally {
    await s.stop()
  }
})
