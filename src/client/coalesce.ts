/**
 * Coalescer: the client half of `kv.multi` (src/local/multi.ts). Single-key calls made in one
 * event-loop turn wait in a queue until the turn ends (setImmediate), then travel as one multi
 * frame per `multiOpsMax` ops / `coalesceFrameBytesMax` bytes and are answered by one reply
 * frame. Each op keeps its own request id and gets its own result or error.
 *
 * Fault model: a frame that fails as a whole (connection lost, timeout) rejects every op in it
 * with that error; the caller (RemoteKV) decides per op whether to re-submit it, with the same
 * id, so a re-sent write is still applied at most once. The queue is bounded by
 * `coalesceQueueMax`; beyond it a call fails with KV_ERR_TOO_MANY_REQUESTS.
 */
import { randomFillSync } from 'node:crypto'
import { ErrorCode, KvError, kvErrorFrom } from '../errors.js'
import { multiOpsMax, type MultiOp } from '../local/multi.js'

/** coalesceQueueMax: most ops waiting for the end of the turn to be sent. */
export const coalesceQueueMax = 65_536

/** coalesceFrameBytesMax: most key+value bytes in one multi frame (one op may exceed it alone). */
export const coalesceFrameBytesMax = 4 * 1024 * 1024

/** SendMulti sends one multi frame and resolves with its raw result, bounded by `deadline` (epoch ms). */
export type SendMulti = (ops: MultiOp[], deadline: number) => Promise<unknown>

interface Queued {
  op: MultiOp
  bytes: number
  deadline: number
  resolve: (result: unknown) => void
  reject: (error: unknown) => void
}

const idPoolBytes = 16 * 1024
let idPool = Buffer.alloc(0)
let idAt = 0

/** newOpId returns 16 fresh random bytes; ids are cut from a pool because one randomFill per op costs more than the rest of the op. */
export function newOpId(): Buffer {
  if (idAt + 16 > idPool.length) {
    idPool = randomFillSync(Buffer.allocUnsafe(idPoolBytes))
    idAt = 0
  }
  idAt += 16
  return idPool.subarray(idAt - 16, idAt)
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !(value instanceof Uint8Array) && !Array.isArray(value)
}

/** Coalescer gathers the ops of one turn into multi frames. */
export class Coalescer {
  private queue: Queued[] = []
  private scheduled = false

  constructor(private readonly send: SendMulti) {}

  /** submit queues one op for the end of this turn and resolves with its own result. */
  submit(op: MultiOp, deadline: number): Promise<unknown> {
    return new Promise((resolve, reject) => this.enqueue(op, deadline, resolve, reject))
  }

  /**
   * enqueue is `submit` with callbacks, for callers that would otherwise wrap its promise in
   * more promises; exactly one of them is called, `reject` possibly before enqueue returns.
   */
  enqueue(op: MultiOp, deadline: number, resolve: (result: unknown) => void, reject: (error: unknown) => void): void {
    if (this.queue.length >= coalesceQueueMax) {
      return reject(new KvError(ErrorCode.TOO_MANY_REQUESTS, `too many calls waiting to be sent: coalesceQueueMax (${coalesceQueueMax})`, { coalesceQueueMax }))
    }
    this.queue.push({ op, bytes: op[2].length + (op[3]?.length ?? 0), deadline, resolve, reject })
    if (this.scheduled) return
    this.scheduled = true
    setImmediate(() => this.flush())
  }

  private flush(): void {
    this.scheduled = false
    const queue = this.queue
    this.queue = []
    let start = 0
    while (start < queue.length) {
      let end = start
      let bytes = 0
      while (end < queue.length && end - start < multiOpsMax && (end === start || bytes + queue[end]!.bytes <= coalesceFrameBytesMax)) {
        bytes += queue[end]!.bytes
        end++
      }
      this.sendFrame(queue.slice(start, end))
      start = end
    }
  }

  private sendFrame(frame: Queued[]): void {
    // The frame times out with its least patient op, so no op waits past its own deadline;
    // the others see KV_ERR_TIMEOUT before theirs and are re-sent by their caller's loop.
    let deadline = Infinity
    const ops = new Array<MultiOp>(frame.length)
    for (let i = 0; i < frame.length; i++) {
      ops[i] = frame[i]!.op
      if (frame[i]!.deadline < deadline) deadline = frame[i]!.deadline
    }
    this.send(ops, deadline).then(
      (results) => {
        if (!Array.isArray(results) || results.length !== frame.length) {
          const error = new KvError(ErrorCode.PROTOCOL, `server answered a kv.multi of ${frame.length} ops with a malformed result`)
          for (const queued of frame) queued.reject(error)
          return
        }
        for (let i = 0; i < frame.length; i++) {
          const result: unknown = results[i]
          if (isPlainObject(result)) frame[i]!.reject(kvErrorFrom(result))
          else frame[i]!.resolve(result)
        }
      },
      (error: unknown) => {
        for (const queued of frame) queued.reject(error)
      },
    )
  }
}
