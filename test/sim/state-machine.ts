/**
 * The simulated application: a small key/value map of registers replicated by Raft. Commands
 * are `put key value` with values unique per run, so an applied value names the one write that
 * produced it. The state machine is volatile: after a crash it is rebuilt from the disk's
 * snapshot and the committed log, exactly as a real node would.
 */
import { ErrorCode, KvError } from '../../src/errors.js'
import type { ConfState, Snapshot } from '../../src/raft/index.js'

/** PutCommand is the only application command: set `key` to `value`. */
export interface PutCommand {
  key: string
  value: string
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** COMMAND_BYTES_MAX bounds one encoded command (keys and values are short in the simulator). */
export const COMMAND_BYTES_MAX = 1024

/** encodeCommand renders a put as the bytes of a normal entry. */
export function encodeCommand(command: PutCommand): Uint8Array {
  const bytes = encoder.encode(JSON.stringify([command.key, command.value]))
  if (bytes.length > COMMAND_BYTES_MAX) throw new KvError(ErrorCode.VALUE_TOO_LARGE, `command exceeds COMMAND_BYTES_MAX ${COMMAND_BYTES_MAX}`)
  return bytes
}

/** decodeCommand parses a normal entry's bytes; anything malformed is a bug, so it throws. */
export function decodeCommand(data: Uint8Array): PutCommand {
  const parsed: unknown = JSON.parse(decoder.decode(data))
  if (!Array.isArray(parsed) || parsed.length !== 2 || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw new KvError(ErrorCode.PROTOCOL, 'simulator: malformed command entry')
  }
  return { key: parsed[0], value: parsed[1] }
}

/** KvStateMachine is one node's applied state: the registers, the membership and the applied index. */
export class KvStateMachine {
  readonly registers = new Map<string, string>()
  // Invariant: applied only grows, except when a snapshot replaces the whole state.
  applied: number
  confState: ConfState

  private constructor(applied: number, confState: ConfState) {
    this.applied = applied
    this.confState = confState
  }

  /** KvStateMachine.fromSnapshot rebuilds the state a snapshot captured. */
  static fromSnapshot(snapshot: Snapshot): KvStateMachine {
    const sm = new KvStateMachine(snapshot.meta.index, cloneConf(snapshot.meta.confState))
    if (snapshot.data.length > 0) {
      const parsed: unknown = JSON.parse(decoder.decode(snapshot.data))
      if (!Array.isArray(parsed)) throw new KvError(ErrorCode.PROTOCOL, 'simulator: malformed snapshot data')
      for (const pair of parsed as [string, string][]) sm.registers.set(pair[0], pair[1])
    }
    return sm
  }

  /** applyCommand applies a normal entry's command (an empty entry is a leader's no-op). */
  applyCommand(index: number, data: Uint8Array): void {
    this.applied = index
    if (data.length === 0) return
    const command = decodeCommand(data)
    this.registers.set(command.key, command.value)
  }

  /** applyConfChange records the membership the core returned for a confChange entry. */
  applyConfChange(index: number, confState: ConfState): void {
    this.applied = index
    this.confState = cloneConf(confState)
  }

  /** snapshotData serializes the registers (sorted, so equal states give equal bytes). */
  snapshotData(): Uint8Array {
    return encoder.encode(JSON.stringify([...this.registers.entries()].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))))
  }
}

function cloneConf(cs: ConfState): ConfState {
  return { voters: [...cs.voters], learners: [...cs.learners], votersOutgoing: [...cs.votersOutgoing] }
}
