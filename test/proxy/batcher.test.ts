// WriteBatcher's waves: writes arriving in separate turns while the last flush's groups are in
// flight wait for them and go out together; once they land, the next wave waits for the writers
// they answered to come back (at most waveFillMsMax); a slow group delays them by at most
// waveHoldMsMax, and a large group (a file chunk) is not waited for. The router is a stand-in that records each
// group it is asked to send and answers when the test says.
import assert from 'node:assert/strict'
import { test } from 'node:test'
import type { Routing } from '../../src/meta/routing.js'
import { WriteBatcher, waveFillMsMax, waveGroupBytesMax, waveHoldMsMax } from '../../src/proxy/batcher.js'
import type { Router } from '../../src/proxy/router.js'
import { PreEncoded } from '../../src/store/client.js'
import { decodeEach } from '../../src/store/each-codec.js'

interface Sent {
  shard: number
  keys: string[]
  answer(): void
}

/** fakeRouter routes every key to shard 1 and records the groups sent, answered by `answer()`. */
function fakeRouter(): { router: Router; sent: Sent[] } {
  const sent: Sent[] = []
  const routing = { clusterId: 'c', version: 1, nodes: [], shards: [], slots: new Array<number>(4096).fill(1), metaVoters: [], moves: [], replacing: [] } satisfies Routing
  const router = {
    requestTimeoutMs: 10_000,
    current: async () => routing,
    refresh: async () => routing,
    run: (pick: (r: Routing) => number, _method: string, params: (shard: number) => unknown) => {
      const shard = pick(routing)
      const { each } = (params(shard) as PreEncoded).params() as { each: Buffer }
      const keys = decodeEach(each).map((unit) => unit.ops[0]![1].toString())
      return new Promise((resolve) => sent.push({ shard, keys, answer: () => resolve(null) }))
    },
  }
  return { router: router as unknown as Router, sent }
}

const turn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
const put = (key: string, bytes = 8) => [{ type: 'put' as const, key: Buffer.from(key), value: Buffer.alloc(bytes) }]
const id = (n: number): Buffer => Buffer.alloc(16, n)

test('writes arriving while a group is in flight wait for it and go out as one group', async () => {
  const { router, sent } = fakeRouter()
  const batcher = new WriteBatcher(router)
  const first = batcher.submit(id(1), put('a'))
  await turn()
  await turn()
  assert.equal(sent.length, 1)
  // Three writes in three separate turns, as three HTTP requests would come.
  const later = [batcher.submit(id(2), put('b'))]
  await turn()
  later.push(batcher.submit(id(3), put('c')))
  await turn()
  later.push(batcher.submit(id(4), put('d')))
  await turn()
  assert.equal(sent.length, 1, 'nothing more is sent while the first group is in flight')
  sent[0]!.answer()
  await first
  // The first wave's writer did not come back: the held writes go after waveFillMsMax.
  await sleep(waveFillMsMax * 10)
  assert.equal(sent.length, 2)
  assert.deepEqual(sent[1]!.keys, ['b', 'c', 'd'])
  sent[1]!.answer()
  await Promise.all(later)
  assert.equal(batcher.stats.held, 3)
})

test('after a wave lands, the next goes as soon as its writers are back', async () => {
  const { router, sent } = fakeRouter()
  const batcher = new WriteBatcher(router)
  const wave = [batcher.submit(id(1), put('a')), batcher.submit(id(2), put('b'))]
  await turn()
  await turn()
  assert.equal(sent.length, 1)
  const held = batcher.submit(id(3), put('c'))
  await turn()
  sent[0]!.answer()
  await Promise.all(wave)
  // Both writers of the first wave write again, in separate turns: the second one completes the wave.
  const again = [batcher.submit(id(4), put('a'))]
  await turn()
  await turn()
  assert.equal(sent.length, 1, 'one writer back of two: still filling')
  again.push(batcher.submit(id(5), put('b')))
  await turn()
  await turn()
  assert.equal(sent.length, 2, 'all writers back: sent without waiting for waveFillMsMax')
  assert.deepEqual(sent[1]!.keys.sort(), ['a', 'b', 'c'])
  sent[1]!.answer()
  await Promise.all([held, ...again])
})

test('a group that does not land holds the next writes for at most waveHoldMsMax', async () => {
  const { router, sent } = fakeRouter()
  const batcher = new WriteBatcher(router)
  void batcher.submit(id(1), put('slow'))
  await turn()
  await turn()
  assert.equal(sent.length, 1)
  const next = batcher.submit(id(2), put('next'))
  await sleep(waveHoldMsMax * 5)
  assert.equal(sent.length, 2, 'the held write went without waiting for the slow group')
  assert.deepEqual(sent[1]!.keys, ['next'])
  sent[1]!.answer()
  await next
  sent[0]!.answer()
})

test('a large group in flight does not hold small writes', async () => {
  const { router, sent } = fakeRouter()
  const batcher = new WriteBatcher(router)
  void batcher.submit(id(1), put('chunk', waveGroupBytesMax + 1))
  await turn()
  await turn()
  assert.equal(sent.length, 1)
  const small = batcher.submit(id(2), put('small'))
  await turn()
  await turn()
  assert.equal(sent.length, 2, 'the small write went at the end of its turn')
  assert.equal(batcher.stats.held, 0)
  sent[1]!.answer()
  await small
  sent[0]!.answer()
})
