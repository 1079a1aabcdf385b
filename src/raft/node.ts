/**
 * RaftNode: the public RaftCore (skeleton; the step functions land next).
 */
import type { ConfChange, ConfState, Message, ProposeResult, RaftConfig, RaftCore, Ready, Status } from './types.js'
import { resolveRaftConfig, type ResolvedRaftConfig } from './config.js'

/** RaftNode is one replica of one Raft group: pure, synchronous, driven by tick/step and drained by ready/advance. */
export class RaftNode implements RaftCore {
  private readonly config: ResolvedRaftConfig

  constructor(config: RaftConfig) {
    this.config = resolveRaftConfig(config)
  }

  tick(): void { throw new Error('RaftNode: not implemented yet') }
  step(_message: Message): void { throw new Error('RaftNode: not implemented yet') }
  propose(_data: Uint8Array): ProposeResult { throw new Error('RaftNode: not implemented yet') }
  proposeConfChange(_change: ConfChange): ProposeResult { throw new Error('RaftNode: not implemented yet') }
  applyConfChange(_change: ConfChange): ConfState { throw new Error('RaftNode: not implemented yet') }
  readIndex(_context: Uint8Array): void { throw new Error('RaftNode: not implemented yet') }
  transferLeadership(_to: number): void { throw new Error('RaftNode: not implemented yet') }
  campaign(): void { throw new Error('RaftNode: not implemented yet') }
  reportUnreachable(_peer: number): void { throw new Error('RaftNode: not implemented yet') }
  reportSnapshot(_peer: number, _ok: boolean): void { throw new Error('RaftNode: not implemented yet') }
  hasReady(): boolean { return false }
  ready(): Ready { throw new Error('RaftNode: not implemented yet') }
  advance(_ready: Ready): void { throw new Error('RaftNode: not implemented yet') }
  status(): Status { throw new Error(`RaftNode ${this.config.id}: not implemented yet`) }
}
