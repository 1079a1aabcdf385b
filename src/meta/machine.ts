/**
 * MetaMachine: the meta group's StateMachine. The placement is small (a few KiB plus the slot
 * table), so it is kept whole in memory and written whole, as one record under the group's
 * prefix, with every applied run of entries; the driver writes that record in the same batch as
 * the applied index, so the durable state always matches the durable applied index.
 */
import { pack, unpack } from 'msgpackr'
import { ErrorCode, KvError } from '../errors.js'
import type { Engine, EngineOp } from '../engine/engine.js'
import type { Entry, Snapshot } from '../raft/types.js'
import type { ApplyOutput, StateMachine } from '../raftstore/driver.js'
import { groupPrefix } from '../raftstore/records.js'
import { applyCommand, emptyState, META_GROUP_ID, type CommandResult, type MetaCommand, type MetaState } from './state.js'

const STATE_SUFFIX = 0x6d

/** metaStateKey is where the meta group's state record lives in the node's engine. */
export function metaStateKey(): Buffer {
  return Buffer.concat([groupPrefix(META_GROUP_ID), Buffer.from([STATE_SUFFIX])])
}

/** encodeMetaCommand is the log encoding of a meta command. */
export function encodeMetaCommand(command: MetaCommand): Uint8Array {
  return pack(command)
}

function decodeState(bytes: Uint8Array): MetaState {
  const state = unpack(bytes) as MetaState
  if (state === null || typeof state !== 'object' || typeof state.version !== 'number' || !Array.isArray(state.slots)) {
    throw new KvError(ErrorCode.CORRUPTION, 'meta state record is malformed')
  }
  return { ...emptyState(), ...state }
}

/** MetaMachine applies meta commands; `state` is the latest applied placement. */
export class MetaMachine implements StateMachine {
  state: MetaState = emptyState()
  private listeners = new Set<() => void>()

  constructor(private readonly engine: Engine) {}

  /** load reads the durable state; call once before the group starts. */
  async load(): Promise<void> {
    const bytes = await this.engine.get(metaStateKey())
    this.state = bytes === undefined ? emptyState() : decodeState(bytes)
  }

  /** onChange registers a listener called after every applied run (routing may have changed). */
  onChange(listener: () => void): void {
    this.listeners.add(listener)
  }

  async apply(entries: Entry[]): Promise<ApplyOutput> {
    const results: CommandResult[] = []
    for (const entry of entries) {
      let command: MetaCommand
      try {
        command = unpack(entry.data) as MetaCommand
      } catch {
        results.push({ ok: false, reason: 'undecodable command' })
        continue
      }
      results.push(applyCommand(this.state, command))
    }
    for (const listener of this.listeners) listener()
    return { ops: [{ type: 'put', key: metaStateKey(), value: pack(this.state) }], results }
  }

  async snapshot(): Promise<Uint8Array> {
    return (await this.engine.get(metaStateKey())) ?? pack(emptyState())
  }

  async restore(snapshot: Snapshot): Promise<EngineOp[]> {
    this.state = snapshot.data.byteLength === 0 ? emptyState() : decodeState(snapshot.data)
    for (const listener of this.listeners) listener()
    return [{ type: 'put', key: metaStateKey(), value: Buffer.from(pack(this.state)) }]
  }
}
