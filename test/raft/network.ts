/**
 * A tiny synchronous test network for the Raft core: each node is a RaftNode over a
 * MemoryRaftStorage, driven by the Ready contract (persist, then send, then apply, then
 * advance). Messages go through one FIFO queue; links can be cut per direction, nodes isolated,
 * and a filter can drop or capture any message. The state machine is a list of applied payloads.
 */
import assert from 'node:assert/strict'
import {
  MemoryRaftStorage,
  RaftNode,
  decodeConfChange,
  type ConfState,
  type Entry,
  type Message,
  type NodeId,
  type RaftConfig,
  type ReadState,
  type Status,
} from '../../src/raft/index.js'

/** seededRandom is a small deterministic generator (mulberry32) for election timeouts. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** TestPeer is one node of the test network with its storage and applied state. */
export interface TestPeer {
  id: NodeId
  node: RaftNode
  storage: MemoryRaftStorage
  /** applied lists the payloads of applied normal entries (the state machine). */
  applied: string[]
  appliedIndex: number
  /** confState is the configuration at appliedIndex, as returned by applyConfChange. */
  confState: ConfState
  readStates: ReadState[]
  options: Partial<RaftConfig>
}

/** MessageFilter returns false to drop a message in flight. */
export type MessageFilter = (m: Message) => boolean

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** bytes encodes a string payload. */
export function bytes(text: string): Uint8Array {
  return encoder.encode(text)
}

/** Network wires RaftNodes together in one process, synchronously. */
export class Network {
  readonly peers = new Map<NodeId, TestPeer>()
  /** sent records every message delivered or dropped, for assertions on traffic. */
  readonly sent: Message[] = []
  private queue: Message[] = []
  private readonly cut = new Set<string>()
  private readonly down = new Set<NodeId>()
  filter: MessageFilter = () => true
  /** shuffle, when set, reorders each batch of messages in flight (its draws are the test's seed). */
  shuffle: (() => number) | undefined = undefined
  /** reportSnapshots: call reportSnapshot after each snap message, as a transport would. */
  reportSnapshots = true

  constructor(voters: NodeId[], readonly options: Partial<RaftConfig> = {}, learners: NodeId[] = []) {
    for (const id of [...voters, ...learners]) this.addPeer(id, MemoryRaftStorage.withPeers(voters, learners), options)
  }

  /** addPeer starts a node over `storage`; a brand-new node joining a group starts with empty storage. */
  addPeer(id: NodeId, storage: MemoryRaftStorage = new MemoryRaftStorage(), options: Partial<RaftConfig> = this.options): TestPeer {
    const snap = storage.snapshot()
    const applied = snap.data.byteLength > 0 ? (JSON.parse(decoder.decode(snap.data)) as string[]) : []
    const config: RaftConfig = {
      id,
      storage,
      random: seededRandom(id * 7919),
      electionTimeoutTicks: 10,
      heartbeatIntervalTicks: 1,
      applied: snap.meta.index,
      ...options,
    }
    const peer: TestPeer = { id, node: new RaftNode(config), storage, applied, appliedIndex: snap.meta.index, confState: storage.confState, readStates: [], options }
    this.peers.set(id, peer)
    return peer
  }

  /** peer returns the node with `id`. */
  peer(id: NodeId): TestPeer {
    const p = this.peers.get(id)
    assert.ok(p, `no peer ${id}`)
    return p
  }

  /** status of node `id`. */
  status(id: NodeId): Status {
    return this.peer(id).node.status()
  }

  /** leaders lists the nodes that believe they lead, with their terms. */
  leaders(): NodeId[] {
    return [...this.peers.values()].filter((p) => !this.down.has(p.id) && p.node.status().role === 'leader').map((p) => p.id)
  }

  /** leader is the single live leader with the highest term (asserted to exist). */
  leader(): NodeId {
    const leaders = this.leaders().sort((a, b) => this.status(b).term - this.status(a).term)
    assert.ok(leaders.length > 0, 'no leader')
    return leaders[0]!
  }

  /** cutLink drops messages from `a` to `b` (and back, unless `oneWay`). */
  cutLink(a: NodeId, b: NodeId, oneWay = false): void {
    this.cut.add(`${a}->${b}`)
    if (!oneWay) this.cut.add(`${b}->${a}`)
  }

  /** isolate cuts every link of `id`. */
  isolate(id: NodeId): void {
    for (const other of this.peers.keys()) if (other !== id) this.cutLink(id, other)
  }

  /** heal restores every link and the default filter. */
  heal(): void {
    this.cut.clear()
    this.filter = () => true
  }

  /** crash stops a node: it neither ticks nor receives; its storage survives. */
  crash(id: NodeId): void {
    this.down.add(id)
  }

  /** restart brings a crashed node back from its storage, as a fresh process would. */
  restart(id: NodeId): void {
    const old = this.peer(id)
    this.down.delete(id)
    // The state machine is rebuilt from the snapshot and re-applies the committed log.
    this.addPeer(id, old.storage, old.options)
  }

  /** tick advances `ids` (default: every live node) by `count` ticks, delivering messages after each. */
  tick(count = 1, ids?: NodeId[]): void {
    for (let i = 0; i < count; i++) {
      for (const p of this.peers.values()) {
        if (this.down.has(p.id) || (ids !== undefined && !ids.includes(p.id))) continue
        p.node.tick()
      }
      this.stabilize()
    }
  }

  /** electLeader makes `id` campaign and delivers until quiet; asserts it won. */
  electLeader(id: NodeId): void {
    this.peer(id).node.campaign()
    this.stabilize()
    assert.equal(this.status(id).role, 'leader', `node ${id} failed to become leader`)
  }

  /** propose submits `text` at `id` and delivers until quiet. */
  propose(id: NodeId, text: string): ReturnType<RaftNode['propose']> {
    const result = this.peer(id).node.propose(bytes(text))
    this.stabilize()
    return result
  }

  /** stabilize processes Readys and delivers messages until nothing moves (bounded). */
  stabilize(roundsMax = 1000): void {
    for (let round = 0; round < roundsMax; round++) {
      let moved = false
      for (const p of this.peers.values()) {
        if (this.down.has(p.id)) continue
        while (p.node.hasReady()) {
          this.processReady(p)
          moved = true
        }
      }
      const batch = this.queue
      this.queue = []
      if (this.shuffle !== undefined) shuffleInPlace(batch, this.shuffle)
      for (const m of batch) {
        moved = true
        this.deliver(m)
      }
      if (!moved) return
    }
    assert.fail(`network did not stabilize within ${roundsMax} rounds`)
  }

  /** collect processes Readys but only queues messages (the test inspects and delivers them). */
  collect(): Message[] {
    for (const p of this.peers.values()) {
      if (this.down.has(p.id)) continue
      while (p.node.hasReady()) this.processReady(p)
    }
    const batch = this.queue
    this.queue = []
    return batch
  }

  /** deliver hands one message to its destination unless it is dropped. */
  deliver(m: Message): void {
    this.sent.push(m)
    const target = this.peers.get(m.to)
    const dropped = this.cut.has(`${m.from}->${m.to}`) || this.down.has(m.to) || this.down.has(m.from) || !this.filter(m) || target === undefined
    if (!dropped) target.node.step(m)
    // Like a real transport, report how a snapshot transfer ended so the leader can retry.
    if (m.type === 'snap' && this.reportSnapshots && !this.down.has(m.from)) this.peers.get(m.from)?.node.reportSnapshot(m.to, !dropped)
  }

  private processReady(p: TestPeer): void {
    const rd = p.node.ready()
    // 1. persist
    if (rd.snapshot !== undefined) p.storage.applySnapshot(rd.snapshot)
    p.storage.append(rd.entries)
    if (rd.hardState !== undefined) p.storage.setHardState(rd.hardState)
    // 2. send
    this.queue.push(...rd.messages)
    // 3. apply
    if (rd.snapshot !== undefined) {
      p.applied = rd.snapshot.data.byteLength > 0 ? (JSON.parse(decoder.decode(rd.snapshot.data)) as string[]) : []
      p.appliedIndex = rd.snapshot.meta.index
      p.confState = rd.snapshot.meta.confState
    }
    for (const entry of rd.committedEntries) this.apply(p, entry)
    p.readStates.push(...rd.readStates)
    // 4. advance
    p.node.advance(rd)
  }

  private apply(p: TestPeer, entry: Entry): void {
    assert.equal(entry.index, p.appliedIndex + 1, `node ${p.id} applies ${entry.index} after ${p.appliedIndex}`)
    p.appliedIndex = entry.index
    if (entry.type === 'confChange') p.confState = p.node.applyConfChange(decodeConfChange(entry.data))
    else if (entry.data.byteLength > 0) p.applied.push(decoder.decode(entry.data))
  }

  /** compact has node `id` snapshot its state machine at its applied index and drop the log up to `index`. */
  compact(id: NodeId, index?: number): void {
    const p = this.peer(id)
    const at = index ?? p.appliedIndex
    assert.ok(at <= p.appliedIndex, 'compact beyond applied')
    p.storage.createSnapshot(p.appliedIndex, p.confState, encoder.encode(JSON.stringify(p.applied)))
    p.storage.compact(at)
  }
}

function shuffleInPlace<T>(items: T[], random: () => number): void {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1))
    const tmp = items[i]!
    items[i] = items[j]!
    items[j] = tmp
  }
}
