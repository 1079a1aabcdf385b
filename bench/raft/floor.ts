// bench/raft/floor: the least a 3-replica, fsync-per-batch replication pipeline costs on this
// machine in Node.js, as a yardstick for bench/raft/run.ts. No Raft (no terms, votes or
// conflict handling), no wire protocol, no state machine beyond what --storage asks for:
//   proposers process --(u32 id + 1 KiB)--> leader --(batch)--> 2 followers
// Every process gathers what arrives in one event-loop turn into one batch (group commit), the
// leader sends it to both followers and appends it itself at the same time, a follower
// acknowledges once its append is durable, and the leader answers a batch's proposals once 2
// of 3 appends are durable. --storage file appends each batch to a file with write + fdatasync
// on libuv's pool; --storage rocksdb writes it as the project's engine would (one log key for
// the batch and one applied key per entry, one synced RocksDbEngine batch per round), which is
// the floor for a Raft log and a KV state machine both kept in RocksDB.
// It prints commits/s, p50/p99 and CPU µs per commit of every process (/proc, all threads),
// the figure to hold bench/raft/run.ts's against: what is left above the floor is Raft, the
// wire protocol, the driver and the state machine.
// Usage: npm run build && node dist/bench/raft/floor.js [--storage file|rocksdb] [--proposers 64] [--seconds 6] [--dir DIR]
import { fork, type ChildProcess } from 'node:child_process'
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writev, fdatasync } from 'node:fs'
import { connect, createServer, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { RocksDbEngine } from '../../src/engine/rocksdb.js'
import type { EngineOp } from '../../src/engine/engine.js'
import { freeBlock } from '../../test/cluster/fixture.js'
import { argument, percentile } from '../lib/common.js'

const VALUE_BYTES = 1024
const WARMUP_SECONDS = 2
const CLOCK_TICKS_PER_SECOND = 100

/** onFrames splits a byte stream into u32-LE-length-prefixed frames. */
function onFrames(socket: Socket, handle: (body: Buffer) => void): void {
  let pending: Buffer = Buffer.alloc(0)
  socket.on('data', (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk])
    let at = 0
    while (pending.length - at >= 4) {
      const length = pending.readUInt32LE(at)
      if (pending.length - at - 4 < length) break
      handle(pending.subarray(at + 4, at + 4 + length))
      at += 4 + length
    }
    pending = pending.subarray(at)
  })
}

/** sendFrames writes frames in one corked burst (one syscall). */
function sendFrames(socket: Socket, bodies: Buffer[]): void {
  socket.cork()
  for (const body of bodies) {
    const header = Buffer.allocUnsafe(4)
    header.writeUInt32LE(body.length, 0)
    socket.write(header)
    socket.write(body)
  }
  socket.uncork()
}

/** A DurableAppender appends batches; appends arriving while one round is in flight go in the next. */
type DurableAppender = (batch: Buffer, done: () => void) => void

function groupCommit(round: (batches: Buffer[]) => Promise<void>): DurableAppender {
  let queue: Array<{ batch: Buffer; done: () => void }> = []
  let busy = false
  const next = (): void => {
    if (busy || queue.length === 0) return
    busy = true
    const items = queue
    queue = []
    round(items.map((item) => item.batch)).then(() => {
      busy = false
      for (const item of items) item.done()
      next()
    }, (error) => { throw error })
  }
  return (batch, done) => {
    queue.push({ batch, done })
    next()
  }
}

function fileAppender(path: string): DurableAppender {
  const fd = openSync(path, 'a')
  process.on('exit', () => closeSync(fd))
  return groupCommit((batches) => new Promise((resolve, reject) => {
    writev(fd, batches, (error) => error ? reject(error) : fdatasync(fd, (error2) => error2 ? reject(error2) : resolve()))
  }))
}

async function rocksAppender(dir: string, split: boolean): Promise<DurableAppender> {
  const engine = new RocksDbEngine({ dir, cacheBytes: 8 * 1024 * 1024, backgroundThreads: 1 })
  await engine.open()
  // split: the log goes to a file of its own (write + fdatasync), RocksDB gets only the applied keys, unsynced.
  const fd = split ? openSync(join(dir, 'log'), 'a') : -1
  let logIndex = 0
  return groupCommit(async (batches) => {
    const ops: EngineOp[] = []
    for (const batch of batches) {
      const logKey = Buffer.allocUnsafe(9)
      logKey[0] = 0x4c
      logKey.writeBigUInt64BE(BigInt(++logIndex), 1)
      if (!split) ops.push({ type: 'put', key: logKey, value: batch })
      // The applied data: each entry under its own key, as a KV state machine would store it.
      for (let at = 4; at + 4 <= batch.length;) {
        const length = batch.readUInt32LE(at)
        const key = Buffer.allocUnsafe(13)
        key[0] = 0x64
        key.writeBigUInt64BE(BigInt(logIndex), 1)
        key.writeUInt32BE(at, 9)
        ops.push({ type: 'put', key, value: batch.subarray(at + 4, at + 4 + length) })
        at += 4 + length
      }
    }
    if (!split) return engine.batch(ops, { sync: true })
    await Promise.all([
      new Promise<void>((resolve, reject) => writev(fd, batches, (error) => error ? reject(error) : fdatasync(fd, (error2) => error2 ? reject(error2) : resolve()))),
      engine.batch(ops, { sync: false }),
    ])
  })
}

const appender = (storage: string, path: string): Promise<DurableAppender> =>
  storage === 'file' ? Promise.resolve(fileAppender(path)) : rocksAppender(path, storage === 'split')

function listen(port: number, onSocket: (socket: Socket) => void): void {
  createServer((socket) => {
    socket.setNoDelay(true)
    onSocket(socket)
  }).listen(port, '127.0.0.1', () => process.send!('ready'))
}

async function follower(dir: string, port: number, storage: string): Promise<void> {
  const append = await appender(storage, join(dir, `follower-${port}`))
  listen(port, (socket) => {
    let highest = 0
    let ackScheduled = false
    onFrames(socket, (batch) => {
      const seq = batch.readUInt32LE(0)
      append(Buffer.from(batch), () => {
        highest = Math.max(highest, seq)
        if (ackScheduled) return
        ackScheduled = true
        setImmediate(() => {
          ackScheduled = false
          const ack = Buffer.allocUnsafe(4)
          ack.writeUInt32LE(highest, 0)
          sendFrames(socket, [ack])
        })
      })
    })
  })
}

async function leader(dir: string, port: number, followerPorts: number[], storage: string): Promise<void> {
  const append = await appender(storage, join(dir, 'leader'))
  const followers = followerPorts.map((p) => connect(p, '127.0.0.1').setNoDelay(true))
  const durable = [0, 0, 0] // highest durable batch: leader, follower 1, follower 2
  const waiting = new Map<number, Array<{ socket: Socket; id: number }>>()
  const commit = (): void => {
    const committed = [...durable].sort((a, b) => b - a)[1]!
    const replies = new Map<Socket, number[]>()
    for (const [seq, proposals] of waiting) {
      if (seq > committed) break
      waiting.delete(seq)
      for (const { socket, id } of proposals) {
        let ids = replies.get(socket)
        if (ids === undefined) replies.set(socket, (ids = []))
        ids.push(id)
      }
    }
    for (const [socket, ids] of replies) {
      const body = Buffer.allocUnsafe(4 * ids.length)
      ids.forEach((id, i) => body.writeUInt32LE(id, 4 * i))
      sendFrames(socket, [body])
    }
  }
  followers.forEach((socket, i) => onFrames(socket, (ack) => {
    durable[i + 1] = Math.max(durable[i + 1]!, ack.readUInt32LE(0))
    commit()
  }))
  let seq = 0
  let pending: Array<{ socket: Socket; body: Buffer }> = []
  const flush = (): void => {
    const proposals = pending
    pending = []
    const batchSeq = ++seq
    let bytes = 4
    for (const { body } of proposals) bytes += body.length
    const batch = Buffer.allocUnsafe(bytes)
    batch.writeUInt32LE(batchSeq, 0)
    let at = 4
    for (const { body } of proposals) {
      // A proposal is id u32 | value; in the batch each entry is length u32 | value.
      batch.writeUInt32LE(body.length - 4, at)
      body.copy(batch, at + 4, 4)
      at += body.length
    }
    waiting.set(batchSeq, proposals.map(({ socket, body }) => ({ socket, id: body.readUInt32LE(0) })))
    for (const f of followers) sendFrames(f, [batch])
    append(batch, () => {
      durable[0] = Math.max(durable[0]!, batchSeq)
      commit()
    })
  }
  listen(port, (socket) => onFrames(socket, (body) => {
    if (pending.length === 0) setImmediate(flush)
    pending.push({ socket, body })
  }))
}

function processCpuMs(child: ChildProcess): number {
  const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_SECOND
}

async function main(): Promise<void> {
  const storage = argument('storage', 'file')
  if (storage !== 'file' && storage !== 'rocksdb' && storage !== 'split') throw new Error('--storage must be file, rocksdb or split')
  const proposers = Number(argument('proposers', '64'))
  const seconds = Number(argument('seconds', '6'))
  const dir = mkdtempSync(join(argument('dir', tmpdir()), 'distkv-bench-raft-floor-'))
  // Three probed free ports below the ephemeral range (an outgoing connection may hold one above it).
  const base = await freeBlock(1)
  const script = fileURLToPath(import.meta.url)
  const children: ChildProcess[] = []
  const start = (args: string[]) => new Promise<ChildProcess>((resolve, reject) => {
    const child = fork(script, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    children.push(child)
    child.once('message', () => resolve(child))
    child.once('exit', (code) => reject(new Error(`${args[0]} exited with ${code}`)))
  })
  try {
    const nodes = [
      await start(['--role', 'follower', '--dir', dir, '--port', String(base + 1), '--storage', storage]),
      await start(['--role', 'follower', '--dir', dir, '--port', String(base + 2), '--storage', storage]),
    ]
    nodes.unshift(await start(['--role', 'leader', '--dir', dir, '--port', String(base), '--storage', storage]))
    const socket = connect(base, '127.0.0.1').setNoDelay(true)
    await new Promise((resolve) => socket.once('connect', resolve))
    const answers = new Map<number, () => void>()
    onFrames(socket, (ids) => {
      for (let i = 0; i < ids.length; i += 4) {
        const id = ids.readUInt32LE(i)
        answers.get(id)!()
        answers.delete(id)
      }
    })
    const value = Buffer.alloc(VALUE_BYTES, 0x61)
    let nextId = 0
    let outgoing: Buffer[] = []
    const propose = () => new Promise<void>((resolve) => {
      const body = Buffer.allocUnsafe(4 + VALUE_BYTES)
      body.writeUInt32LE(++nextId, 0)
      value.copy(body, 4)
      answers.set(nextId, resolve)
      if (outgoing.length === 0) setImmediate(() => { sendFrames(socket, outgoing); outgoing = [] })
      outgoing.push(body)
    })
    const run = async (forSeconds: number): Promise<number[]> => {
      const latencies: number[] = []
      const end = performance.now() + forSeconds * 1000
      await Promise.all(Array.from({ length: proposers }, async () => {
        while (performance.now() < end) {
          const t = performance.now()
          await propose()
          latencies.push(performance.now() - t)
        }
      }))
      return latencies.sort((a, b) => a - b)
    }
    await run(WARMUP_SECONDS)
    const before = nodes.map(processCpuMs)
    const selfBefore = process.cpuUsage()
    const latencies = await run(seconds)
    const self = process.cpuUsage(selfBefore)
    const after = nodes.map(processCpuMs)
    const commits = latencies.length
    const us = (ms: number) => ((ms * 1000) / commits).toFixed(1)
    const nodeUs = after.map((a, i) => a - before[i]!)
    const selfMs = (self.user + self.system) / 1000
    console.log(
      `floor (${storage}), ${proposers} proposers: ${(commits / seconds).toFixed(0)} commits/s, p50 ${percentile(latencies, 50).toFixed(2)} ms, ` +
        `p99 ${percentile(latencies, 99).toFixed(2)} ms; CPU us/commit leader / followers ${nodeUs.map(us).join(' / ')}; proposers' process ${us(selfMs)}; ` +
        `all 4 processes ${us(nodeUs.reduce((a, b) => a + b, 0) + selfMs)}`,
    )
    socket.destroy()
  } finally {
    for (const child of children) child.kill()
    rmSync(dir, { recursive: true, force: true })
  }
}

const role = argument('role', 'bench')
const run = role === 'follower'
  ? follower(argument('dir', ''), Number(argument('port', '0')), argument('storage', 'file'))
  : role === 'leader'
    ? leader(argument('dir', ''), Number(argument('port', '0')), [Number(argument('port', '0')) + 1, Number(argument('port', '0')) + 2], argument('storage', 'file'))
    : main()
run.catch((error) => {
  console.error(error)
  process.exit(1)
})
