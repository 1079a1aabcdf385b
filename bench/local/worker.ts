/**
 * A benchmark worker process: opens one target (distkv local mode, rave-level, the raw RocksDB
 * engine, or a bare WireServer), then runs the phases its parent sends over IPC and reports each.
 */
import { randomUUID } from 'node:crypto'
import { open } from '../../src/client/index.js'
import { WireClient } from '../../src/wire/index.js'
import { openEngine } from '../../src/engine/index.js'
import { runPhase, valuePool, type Phase, type Target, type Workload } from './workload.js'

/** WorkerSpec is what the parent passes (as JSON in argv) to start a worker. */
export interface WorkerSpec {
  target: 'distkv' | 'rave' | 'raw' | 'wire'
  dir: string
  workload: Workload
}

async function openTarget(spec: WorkerSpec): Promise<Target> {
  if (spec.target === 'distkv') {
    const kv = await open(spec.dir, { name: 'bench-worker' })
    return { put: (k, v, sync) => kv.put(k, v, sync ? undefined : { sync: false }), get: (k) => kv.get(k), close: () => kv.close() }
  }
  if (spec.target === 'wire') {
    // The wire alone: same request shapes as local mode, answered without storage (dir is the socket).
    const client = await WireClient.connect({ path: spec.dir }, { clientId: randomUUID(), name: 'bench-worker', pid: process.pid })
    return {
      put: async (k, v, sync) => void (await client.request('kv.put', { key: k, value: v, sync }, { requestId: randomUUID() })),
      get: (k) => client.request('kv.get', { key: k }, { requestId: randomUUID() }),
      close: () => client.close(),
    }
  }
  if (spec.target === 'rave') {
    const { RaveLevel } = await import('rave-level')
    const db = new RaveLevel<string, Buffer>(spec.dir, { valueEncoding: 'buffer' })
    await db.open()
    return { put: async (k, v, sync) => void (await db.put(k, v, { sync } as never)), get: (k) => db.get(k), close: () => db.close() }
  }
  const engine = await openEngine({ kind: 'rocksdb', dir: spec.dir })
  return {
    put: (k, v, sync) => engine.put(Buffer.from(k), v, { sync }),
    get: (k) => engine.get(Buffer.from(k)),
    close: () => engine.close(),
  }
}

/** runWorker serves phases until the parent says stop. */
export async function runWorker(spec: WorkerSpec): Promise<void> {
  const target = await openTarget(spec)
  const values = valuePool(spec.workload.valueBytes)
  process.on('message', (message: Phase | { kind: 'stop' }) => {
    if (message.kind === 'stop') {
      void target.close().then(() => process.exit(0))
      return
    }
    const started = performance.now()
    const cpu = process.cpuUsage()
    runPhase(target, message, spec.workload, values).then(
      (ops) => {
        const used = process.cpuUsage(cpu)
        process.send!({ ok: true, ops, ms: performance.now() - started, cpuMs: (used.user + used.system) / 1000 })
      },
      (error: Error) => process.send!({ ok: false, error: `${error.message}` }),
    )
  })
  process.send!({ ready: true })
}
