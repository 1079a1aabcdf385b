/**
 * Membership changes, one server at a time (Ongaro's dissertation §4.1). A confChange entry
 * takes effect on a node as soon as it is in that node's log, committed or not; if the entry is
 * truncated the node falls back to the previous configuration. ConfHistory keeps the
 * configurations of the log suffix that may still be truncated or is not yet applied, so both
 * "the configuration now" (for quorums) and "the configuration at the applied index" (for the
 * driver's snapshots) are known. The safety argument is in docs/raft.md.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { ConfChange, ConfChangeType, ConfState, Entry } from './types.js'
import { cloneConfState } from './util.js'

const CONF_CHANGE_VERSION = 1
const TYPE_CODES: readonly ConfChangeType[] = ['addVoter', 'addLearner', 'removeNode']
const HEADER_BYTES = 10

/** encodeConfChange is the payload format of a confChange entry: version, type, nodeId (f64 BE), context. */
export function encodeConfChange(change: ConfChange): Uint8Array {
  const context = change.context ?? new Uint8Array(0)
  const out = new Uint8Array(HEADER_BYTES + context.byteLength)
  const view = new DataView(out.buffer)
  view.setUint8(0, CONF_CHANGE_VERSION)
  view.setUint8(1, TYPE_CODES.indexOf(change.type))
  view.setFloat64(2, change.nodeId)
  out.set(context, HEADER_BYTES)
  return out
}

/** decodeConfChange parses a confChange entry's payload; malformed bytes are a KV_ERR_PROTOCOL error. */
export function decodeConfChange(data: Uint8Array): ConfChange {
  if (data.byteLength < HEADER_BYTES) throw new KvError(ErrorCode.PROTOCOL, `confChange payload of ${data.byteLength} bytes is shorter than its ${HEADER_BYTES}-byte header`)
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength)
  const version = view.getUint8(0)
  if (version !== CONF_CHANGE_VERSION) throw new KvError(ErrorCode.PROTOCOL, `confChange payload version ${version} is not ${CONF_CHANGE_VERSION}`)
  const type = TYPE_CODES[view.getUint8(1)]
  if (type === undefined) throw new KvError(ErrorCode.PROTOCOL, `confChange type code ${view.getUint8(1)} is unknown`)
  const nodeId = view.getFloat64(2)
  const change: ConfChange = { type, nodeId }
  if (data.byteLength > HEADER_BYTES) change.context = data.slice(HEADER_BYTES)
  return change
}

/** validateConfChange checks a proposed change against the configuration it will apply to; it returns why it is refused, or undefined. */
export function validateConfChange(cs: ConfState, change: ConfChange): string | undefined {
  if (!TYPE_CODES.includes(change.type)) return `confChange type ${String(change.type)} is not one of ${TYPE_CODES.join(', ')}`
  if (!Number.isSafeInteger(change.nodeId) || change.nodeId <= 0) return `confChange nodeId must be a positive integer, got ${String(change.nodeId)}`
  if (cs.votersOutgoing.length > 0) return 'a joint configuration must be left before another change'
  const isVoter = cs.voters.includes(change.nodeId)
  const isLearner = cs.learners.includes(change.nodeId)
  if (change.type === 'addVoter' && isVoter) return `node ${change.nodeId} is already a voter`
  if (change.type === 'addLearner' && isLearner) return `node ${change.nodeId} is already a learner`
  if (change.type === 'removeNode' && !isVoter && !isLearner) return `node ${change.nodeId} is not a member`
  const votersAfter = change.type === 'addVoter' ? cs.voters.length + 1 : cs.voters.length - (isVoter ? 1 : 0)
  if (votersAfter === 0) return 'the change would remove the last voter'
  return undefined
}

/**
 * applyConfChangeTo returns `cs` with `change` applied. Every node applies the same entries in
 * the same order, so an invalid change (which a leader never proposes) is a deterministic no-op.
 */
export function applyConfChangeTo(cs: ConfState, change: ConfChange): ConfState {
  const id = change.nodeId
  const voters = cs.voters.filter((v) => v !== id)
  const learners = cs.learners.filter((l) => l !== id)
  if (change.type === 'addVoter') voters.push(id)
  else if (change.type === 'addLearner') learners.push(id)
  else if (change.type !== 'removeNode') return cloneConfState(cs)
  if (voters.length === 0) return cloneConfState(cs)
  return { voters: voters.sort((a, b) => a - b), learners: learners.sort((a, b) => a - b), votersOutgoing: [...cs.votersOutgoing] }
}

interface ConfPoint {
  index: number
  confState: ConfState
  change: ConfChange | undefined
}

/** ConfHistory tracks the configurations introduced by the confChange entries of the log suffix. */
export class ConfHistory {
  // Invariant: base.index <= points[0].index < points[1].index < ...; base is applied (never truncated).
  private base: ConfPoint
  private points: ConfPoint[] = []
  /** appliedCursor is the index of the last confChange entry handed to the driver's applyConfChange. */
  private appliedCursor: number

  constructor(index: number, confState: ConfState) {
    this.base = { index, confState: cloneConfState(confState), change: undefined }
    this.appliedCursor = index
  }

  /** current is the configuration in force: the latest one in the log. */
  current(): ConfState {
    return (this.points.at(-1) ?? this.base).confState
  }

  /** lastChangeIndex is the index of the latest confChange entry in the log (0 if none is tracked). */
  lastChangeIndex(): number {
    return this.points.at(-1)?.index ?? 0
  }

  /** onAppend records the configurations introduced by newly appended entries (after truncating from their first index). */
  onAppend(entries: readonly Entry[]): boolean {
    if (entries.length === 0) return false
    let changed = this.truncateFrom(entries[0]!.index)
    for (const entry of entries) {
      if (entry.type !== 'confChange') continue
      const change = decodeConfChange(entry.data)
      this.points.push({ index: entry.index, confState: applyConfChangeTo(this.current(), change), change })
      changed = true
    }
    return changed
  }

  /** truncateFrom forgets configurations from entries at or after `index` (they were overwritten). */
  truncateFrom(index: number): boolean {
    const before = this.points.length
    this.points = this.points.filter((p) => p.index < index)
    return this.points.length !== before
  }

  /** restore resets the history to a snapshot's configuration. */
  restore(index: number, confState: ConfState): void {
    this.base = { index, confState: cloneConfState(confState), change: undefined }
    this.points = []
    this.appliedCursor = index
  }

  /** nextApplied is the driver's applyConfChange: it returns the configuration after the next confChange entry. */
  nextApplied(change: ConfChange): ConfState {
    const point = this.points.find((p) => p.index > this.appliedCursor)
    if (point === undefined || point.change === undefined) {
      throw new KvError(ErrorCode.INVALID, 'applyConfChange called with no confChange entry left to apply', { change: change.type, nodeId: change.nodeId })
    }
    if (point.change.type !== change.type || point.change.nodeId !== change.nodeId) {
      throw new KvError(ErrorCode.INVALID, `applyConfChange(${change.type} ${change.nodeId}) does not match the next confChange entry (${point.change.type} ${point.change.nodeId} at index ${point.index})`)
    }
    this.appliedCursor = point.index
    return cloneConfState(point.confState)
  }

  /** compactTo folds configurations at or below the applied index into the base, bounding the history. */
  compactTo(applied: number): void {
    while (this.points.length > 0 && this.points[0]!.index <= applied) {
      this.base = this.points.shift()!
      this.appliedCursor = Math.max(this.appliedCursor, this.base.index)
    }
  }

  /** size is how many configurations are tracked beyond the base. */
  size(): number {
    return this.points.length
  }
}
