// End to end: a short fault-injection run over three real node processes (a node killed and a
// node cut off by its link proxies while six clients write and read), checked for
// linearizability, lost writes, phantom reads and replica digests. The long runs are
// `npm run jepsen` (CI runs three minutes of mixed faults).
import assert from 'node:assert/strict'
import { test } from 'node:test'
import { runJepsen } from './run.js'
import { formatReport } from './report.js'

test('a short run with a kill and a partition finds no violation, and every replica agrees', { timeout: 120_000 }, async () => {
  const lines: string[] = []
  const result = await runJepsen({ timeSeconds: 12, nemeses: ['kill-one', 'partition-one'], seed: 7, clients: 4, clientTimeoutMs: 15_000, log: (line) => lines.push(line) })
  const report = formatReport(result)
  assert.deepEqual(result.violations, [], report)
  assert.ok(result.faults.length >= 1, report)
  assert.ok(result.history.some((o) => o.type !== 'get' && o.outcome === 'ok'), report)
  assert.ok(result.digests.length >= 2 && result.digests.every((d) => d.replicas.length === 3), report)
  assert.equal(result.kept, false)
})
