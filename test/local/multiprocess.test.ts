/**
 * Local mode across real processes: concurrent auto-start ends with one server, and writers
 * survive repeated kill -9 of the server with every acknowledged write present.
 */
import { test } from 'node:test'
import assert from 'node:assert/strict'
import { writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { open } from '../../src/index.js'
import { cleanup, makeTempDir, pointerPid, serverPids, sleep, startWorker, waitFor, alive, type Worker } from './helpers.js'

test('six processes opening one new directory at the same moment share one server', async () => {
  const dir = join(makeTempDir(), 'db') // does not exist yet: open() creates it
  const workers: Worker[] = []
  try {
    const startAt = Date.now() + 1500
    for (let id = 0; id < 6; id++) workers.push(startWorker(['open-write', dir, String(id), '50', String(startAt)]))
    const codes = await Promise.all(workers.map((worker) => worker.exited))
    assert.deepEqual(codes, [0, 0, 0, 0, 0, 0])
    const reported = workers.map((worker) => JSON.parse(worker.lines.at(-1)!).serverPid as number)
    assert.equal(new Set(reported).size, 1, `clients saw servers ${reported}`)
    assert.deepEqual(serverPids(dir), [reported[0]], 'exactly one server process ever started')
    const db = await open(dir)
    try {
      let count = 0
      for await (const [key, value] of db.query({ prefix: 'p' })) {
        const [id, n] = key.toString().slice(1).split('/')
        assert.equal(value.toString(), `${id}:${n}`)
        count++
      }
      assert.equal(count, 6 * 50)
    } finally {
      await db.close()
    }
  } finally {
    await cleanup(join(dir, '..'), workers, [dir])
  }
})

test('writers carry on through three kill -9 of the server; every acknowledged write is there once', async () => {
  const root = makeTempDir()
  const dir = join(root, 'db')
  const stopFile = join(root, 'stop')
  const workers: Worker[] = []
  try {
    for (let id = 0; id < 4; id++) workers.push(startWorker(['writer', dir, String(id), stopFile]))
    const acks = (): number[] => workers.map((worker) => worker.lines.filter((line) => line.startsWith('ack ')).length)
    for (let kill = 0; kill < 3; kill++) {
      const before = acks()
      // Kill only once every writer has made progress against the current server.
      await waitFor(() => acks().every((count, i) => count >= before[i]! + 2), 30_000, 'writers to make progress')
      const pid = pointerPid(dir)!
      process.kill(pid, 'SIGKILL')
      await waitFor(() => !alive(pid), 5_000, 'server to die')
      await sleep(50)
    }
    const before = acks()
    await waitFor(() => acks().every((count, i) => count >= before[i]! + 2), 30_000, 'writers to make progress after the last kill')
    writeFileSync(stopFile, '')
    assert.deepEqual(await Promise.all(workers.map((worker) => worker.exited)), [0, 0, 0, 0])
    assert.equal(serverPids(dir).length, 4, 'one server per kill plus the first')
    const db = await open(dir)
    try {
      for (let id = 0; id < 4; id++) {
        const { acked, failed } = JSON.parse(workers[id]!.lines.at(-1)!) as { acked: number[]; failed: unknown[] }
        assert.deepEqual(failed, [], `writer ${id} saw failures`)
        // Lanes stop after the stop file appears, so the writer's sequence numbers are 0..n-1 with no gaps.
        const sorted = [...acked].sort((a, b) => a - b)
        assert.deepEqual(sorted, sorted.map((_, i) => i), `writer ${id} acknowledged a gapless sequence`)
        const stored: number[] = []
        for await (const [key, value] of db.query({ prefix: `w${id}/0` })) {
          assert.equal(Number(key.toString().slice(`w${id}/`.length)), Number(value.toString()))
          stored.push(Number(value.toString()))
        }
        assert.deepEqual(stored, sorted, `writer ${id}: stored writes equal acknowledged writes`)
      }
    } finally {
      await db.close()
    }
  } finally {
    await cleanup(root, workers, [dir])
  }
})
