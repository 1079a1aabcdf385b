// Test helpers for raftstore transports: a TransportHandler that records every event, and a
// Raft message with defaults for the fields a test does not care about.
import type { Message } from '../../src/raft/types.js'
import type { RaftEnvelope } from '../../src/raftstore/message-codec.js'
import type { TransportHandler } from '../../src/raftstore/transport.js'

/** message builds an append from 1 to 2 with `fields` overriding the defaults. */
export function message(fields: Partial<Message>): Message {
  return { type: 'app', from: 1, to: 2, term: 3, logTerm: 2, index: 10, entries: [], commit: 9, reject: false, rejectHint: 0, ...fields }
}

/** Recorder is a TransportHandler that remembers every event and lets a test wait for one. */
export class Recorder implements TransportHandler {
  readonly received: Array<{ from: number; envelopes: RaftEnvelope[] }> = []
  readonly unreachables: Array<[number, number]> = []
  readonly snapshotStatuses: Array<[number, number, boolean]> = []
  private waiters: Array<() => void> = []

  receive(from: number, envelopes: RaftEnvelope[]): void {
    this.received.push({ from, envelopes })
    this.wake()
  }
  unreachable(groupId: number, to: number): void {
    this.unreachables.push([groupId, to])
    this.wake()
  }
  snapshotStatus(groupId: number, to: number, ok: boolean): void {
    this.snapshotStatuses.push([groupId, to, ok])
    this.wake()
  }
  async until(condition: () => boolean): Promise<void> {
    while (!condition()) await new Promise<void>((resolve) => this.waiters.push(resolve))
  }
  private wake(): void {
    const waiters = this.waiters
    this.waiters = []
    for (const wake of waiters) wake()
  }
}
