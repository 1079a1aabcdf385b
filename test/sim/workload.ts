/**
 * Simulated clients: each issues one operation at a time, a `put` (a proposal to a node that
 * believes it leads) or a linearizable `get` (a ReadIndex request, served once the node has
 * applied up to the read index). Every operation is recorded with its invocation and response
 * times for the linearizability checker. A put whose node crashes or that times out stays in the
 * history as "never returned" (it may still commit); a put whose index was taken by another
 * entry is known to have failed and is dropped; a get that never returned carries no
 * information and is dropped.
 */
import type { Entry, ReadState } from '../../src/raft/index.js'
import { SimViolation, entrySignature } from './checkers.js'
import type { Cluster } from './cluster.js'
import { checkKv, type KvOperation } from './linearizability.js'
import type { Random } from './random.js'
import { encodeCommand, type KvStateMachine } from './state-machine.js'

/** WorkloadOptions shape the client load. */
export interface WorkloadOptions {
  clients: number
  keys: number
  /** opProbability: chance per tick that an idle client starts an operation. */
  opProbability: number
  readFraction: number
  /** opTimeout: simulated time after which a client gives up on an operation. */
  opTimeout: number
  /** historyOpsMax bounds the recorded history (the checker is exponential in the worst case); later operations still run, unrecorded. */
  historyOpsMax: number
}

interface PendingPut {
  kind: 'put'
  node: number
  index: number
  term: number
  data: Uint8Array
  op: KvOperation
}

interface PendingGet {
  kind: 'get'
  node: number
  context: string
  key: string
  call: number
  commitAtCall: number
  readIndex: number | undefined
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false
  return true
}

/** Workload drives the simulated clients against a Cluster and keeps their history. */
export class Workload {
  readonly history: KvOperation[] = []
  /** putsCompleted counts puts that returned, with the invocation time of the latest one. */
  putsCompleted = 0
  lastCompletedPutCall = -1
  readsCompleted = 0
  private readonly pending = new Map<number, PendingPut | PendingGet>()
  private sequence = 0
  private recording = true
  private readonly abandonedPuts: PendingPut[] = []

  constructor(
    private readonly cluster: Cluster,
    private readonly random: Random,
    private readonly options: WorkloadOptions,
  ) {
    cluster.hooks = {
      onApply: (node, entry) => this.onApply(node, entry),
      onReadState: (node, rs) => this.onReadState(node, rs),
      onApplied: (node, sm) => this.onApplied(node, sm),
      onCrash: (node) => this.abandon((p) => p.node === node),
    }
  }

  /** step gives every idle client a chance to start an operation and times out stale ones. */
  step(): void {
    const now = this.cluster.now
    this.abandon((p) => now - (p.kind === 'put' ? p.op.call : p.call) > this.options.opTimeout)
    for (let client = 1; client <= this.options.clients; client++) {
      if (this.pending.has(client) || !this.random.chance(this.options.opProbability)) continue
      const key = `k${this.random.int(1, this.options.keys)}`
      if (this.random.chance(this.options.readFraction)) this.startGet(client, key)
      else this.startPut(client, key)
    }
  }

  private target(): number | undefined {
    const leaders = this.cluster.leaders()
    if (leaders.length > 0 && this.random.chance(0.9)) return this.random.pick(leaders)
    const up = this.cluster.up()
    return up.length > 0 ? this.random.pick(up) : undefined
  }

  private startPut(client: number, key: string): void {
    const node = this.target()
    if (node === undefined) return
    const value = `c${client}.${++this.sequence}`
    const data = encodeCommand({ key, value })
    const call = this.cluster.now
    let accepted: { index: number; term: number } | undefined
    this.cluster.input(node, `client ${client} put ${key}=${value}`, (r) => {
      const result = r.propose(data)
      if (result.ok) accepted = { index: result.index, term: result.term }
    })
    if (accepted === undefined) return
    const op: KvOperation = { call, ret: Infinity, input: { key, type: 'put', value }, output: undefined, client }
    this.record(op)
    this.pending.set(client, { kind: 'put', node, index: accepted.index, term: accepted.term, data, op })
  }

  private startGet(client: number, key: string): void {
    const node = this.target()
    if (node === undefined) return
    const context = `c${client}.${++this.sequence}`
    const get: PendingGet = { kind: 'get', node, context, key, call: this.cluster.now, commitAtCall: this.cluster.checker.maxCommit, readIndex: undefined }
    this.pending.set(client, get)
    this.cluster.input(node, `client ${client} read ${key} (${context})`, (r) => r.readIndex(encoder.encode(context)))
  }

  private onApply(node: number, entry: Entry): void {
    for (const [client, p] of this.pending) {
      if (p.kind !== 'put' || p.node !== node || p.index !== entry.index) continue
      this.pending.delete(client)
      if (entry.type === 'normal' && sameBytes(entry.data, p.data)) {
        p.op.ret = this.cluster.now
        this.putsCompleted++
        this.lastCompletedPutCall = Math.max(this.lastCompletedPutCall, p.op.call)
      } else {
        const at = this.history.indexOf(p.op)
        if (at >= 0) this.history.splice(at, 1) // another entry holds its index: it can never commit
      }
    }
  }

  private onReadState(node: number, rs: ReadState): void {
    const context = decoder.decode(rs.context)
    for (const p of this.pending.values()) {
      if (p.kind === 'get' && p.node === node && p.context === context) p.readIndex = rs.index
    }
  }

  private onApplied(node: number, sm: KvStateMachine): void {
    for (const [client, p] of this.pending) {
      if (p.kind !== 'get' || p.node !== node || p.readIndex === undefined || sm.applied < p.readIndex) continue
      this.pending.delete(client)
      const output = sm.registers.get(p.key)
      this.cluster.trace.add(this.cluster.now, `client ${client} read ${p.key} = ${output ?? '(none)'} at n${node} index ${sm.applied} (read index ${p.readIndex})`)
      this.cluster.checker.observeRead(node, p.commitAtCall, sm.applied)
      this.record({ call: p.call, ret: this.cluster.now, input: { key: p.key, type: 'get' }, output, client })
      this.readsCompleted++
    }
  }

  private record(op: KvOperation): void {
    // Once full, recording stops for good: a later read could otherwise see an unrecorded write.
    if (this.history.length >= this.options.historyOpsMax) this.recording = false
    if (this.recording) this.history.push(op)
  }

  private abandon(which: (p: PendingPut | PendingGet) => boolean): void {
    for (const [client, p] of this.pending) {
      if (!which(p)) continue
      this.pending.delete(client)
      if (p.kind === 'put') this.abandonedPuts.push(p)
    }
  }

  /**
   * settleAbandonedPuts drops from the history the abandoned puts that can never take effect
   * because another entry was committed at their index. Without this, every abandoned put stays
   * concurrent with the rest of the run and the linearizability search grows exponentially.
   */
  private settleAbandonedPuts(): void {
    for (const p of this.abandonedPuts.splice(0)) {
      const committed = this.cluster.checker.committedSignature(p.index)
      if (committed === undefined || committed === entrySignature({ index: p.index, term: p.term, type: 'normal', data: p.data })) continue
      const at = this.history.indexOf(p.op)
      if (at >= 0) this.history.splice(at, 1)
    }
  }

  /** checkLinearizable runs the Wing & Gong search over the whole history; a violation throws. */
  checkLinearizable(): number {
    this.settleAbandonedPuts()
    const result = checkKv(this.history)
    if (result.outcome === 'violation') {
      const ops = result.partition.map((o) => `[${o.call},${o.ret}] c${o.client} ${o.input.type === 'put' ? `put ${o.input.value}` : `get -> ${o.output ?? '(none)'}`}`)
      throw new SimViolation('linearizability', `history of key ${result.key} has no linearization:\n    ${ops.join('\n    ')}`, { key: result.key })
    }
    return result.steps
  }
}
