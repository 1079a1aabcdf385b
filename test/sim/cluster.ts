/**
 * The simulated cluster: Raft nodes, each a RaftNode over a MemoryRaftStorage that plays the
 * node's disk, driven exactly as the Ready contract says (persist, then send, then apply, then
 * advance), and joined by the simulated network.
 *
 * Fault model (the disk): a node may crash between any two steps of processing a Ready, or in
 * the middle of persisting one (its snapshot, which is one record with its commit index, and a
 * prefix of its entries reach the disk, its hard state does not) or of sending one (a prefix of
 * its messages leaves). A hard state written without `mustSync` sits in the page cache and is
 * lost by a crash until a later synced write (or a snapshot, which is always synced) covers it. Whatever is on the disk survives; the Raft node
 * and the state machine are volatile and are rebuilt from the disk on restart.
 */
import { ErrorCode, KvError, assert } from '../../src/errors.js'
import { MemoryRaftStorage, RaftNode, decodeConfChange, type ConfState, type Entry, type HardState, type Message, type Ready, type ReadState, type Status } from '../../src/raft/index.js'
import { entrySignature, type Checker } from './checkers.js'
import type { Network, Packet } from './network.js'
import type { Random } from './random.js'
import { KvStateMachine } from './state-machine.js'
import type { Trace } from './trace.js'

/** CrashPoint names where, inside the processing of one Ready, a crash strikes. */
export type CrashPoint = 'beforePersist' | 'midPersist' | 'afterPersist' | 'midSend' | 'afterSend' | 'afterApply'

/** CRASH_POINTS lists every CrashPoint, for the fault injector to pick from. */
export const CRASH_POINTS: readonly CrashPoint[] = ['beforePersist', 'midPersist', 'afterPersist', 'midSend', 'afterSend', 'afterApply']

/** ClusterOptions configure every node of the simulated group. */
export interface ClusterOptions {
  electionTimeoutTicks: number
  heartbeatIntervalTicks: number
  preVote: boolean
  checkQuorum: boolean
  /** snapshotEveryEntries: a node snapshots once it has applied this many entries past its last snapshot. */
  snapshotEveryEntries: number
  /** compactKeepEntries: entries kept behind a snapshot, so slightly lagging followers still get appends. */
  compactKeepEntries: number
  /** entryBytesMaxPerMessage and inflightMessagesMax are handed to the core (small values stress flow control). */
  entryBytesMaxPerMessage: number
  inflightMessagesMax: number
  /** readyLoopsMax bounds how many Readys one input may produce before the core is declared stuck. */
  readyLoopsMax: number
}

/** ClusterHooks let the workload observe nodes (client responses, crashes). */
export interface ClusterHooks {
  onApply?(node: number, entry: Entry, sm: KvStateMachine): void
  onReadState?(node: number, readState: ReadState): void
  onApplied?(node: number, sm: KvStateMachine): void
  onCrash?(node: number): void
}

/** SimNode is one node: its disk always exists; `raft` and `sm` exist only while it is up. */
export interface SimNode {
  id: number
  disk: MemoryRaftStorage
  /** durableHardState: the last hard state that was synced; a crash reverts the disk to it. */
  durableHardState: HardState
  raft: RaftNode | undefined
  sm: KvStateMachine | undefined
  /** restarts counts incarnations, so each one draws from its own random stream. */
  restarts: number
}

/** Cluster owns the nodes, their drivers and the network between them. */
export class Cluster {
  readonly nodes = new Map<number, SimNode>()
  readonly network: Network
  readonly checker: Checker
  readonly trace: Trace
  readonly options: ClusterOptions
  hooks: ClusterHooks = {}
  /**
   * crashPlan is asked once per Ready whether (and where) the node crashes while processing it;
   * `critical` marks the Readys where a crash hurts most: a node's first Ready as leader, and a
   * leader's Ready that advances its commit index.
   */
  crashPlan: (node: number, critical: boolean) => CrashPoint | undefined = () => undefined
  /** onCriticalReady lets the fault injector act (isolate the node, say) just before a critical Ready is processed. */
  onCriticalReady: (node: number) => void = () => undefined
  /** latestConf is the membership applied at the highest index by any node: the committed configuration. */
  latestConf: { index: number; confState: ConfState }
  now = 0
  private readonly random: Random

  constructor(init: { random: Random; network: Network; checker: Checker; trace: Trace; options: ClusterOptions; voters: number[] }) {
    this.random = init.random
    this.network = init.network
    this.checker = init.checker
    this.trace = init.trace
    this.options = init.options
    this.latestConf = { index: 0, confState: { voters: [...init.voters], learners: [], votersOutgoing: [] } }
    // Founding members: membership in a snapshot at index 1, so added nodes need a snapshot (FINDINGS.md #1).
    for (const id of init.voters) this.spawn(id, MemoryRaftStorage.withPeers(init.voters))
  }

  /** spawn starts a brand-new node over `disk` (empty for a node about to be added). */
  spawn(id: number, disk: MemoryRaftStorage = new MemoryRaftStorage()): SimNode {
    assert(!this.nodes.has(id), `spawn: node ${id} exists`)
    const node: SimNode = { id, disk, durableHardState: disk.hardState, raft: undefined, sm: undefined, restarts: -1 }
    this.nodes.set(id, node)
    this.restart(id)
    return node
  }

  /** restart rebuilds a crashed node from its disk: state machine from the snapshot, Raft from the log. */
  restart(id: number): void {
    const node = this.nodes.get(id)
    assert(node !== undefined && node.raft === undefined, `restart: node ${id} is not down`)
    node.restarts++
    const snapshot = node.disk.snapshot()
    node.sm = KvStateMachine.fromSnapshot(snapshot)
    this.checker.observeRestore(id, snapshot.meta.index)
    node.raft = new RaftNode({
      id,
      storage: node.disk,
      random: this.random.fork(`node ${id} incarnation ${node.restarts}`).source(),
      electionTimeoutTicks: this.options.electionTimeoutTicks,
      heartbeatIntervalTicks: this.options.heartbeatIntervalTicks,
      applied: snapshot.meta.index,
      preVote: this.options.preVote,
      checkQuorum: this.options.checkQuorum,
      entryBytesMaxPerMessage: this.options.entryBytesMaxPerMessage,
      inflightMessagesMax: this.options.inflightMessagesMax,
    })
    const hs = node.disk.hardState
    this.trace.add(this.now, `n${id} start (incarnation ${node.restarts}, term ${hs.term}, vote ${hs.vote}, commit ${hs.commit}, snapshot ${snapshot.meta.index}, last ${node.disk.lastIndex()})`)
    this.drain(node)
  }

  /** crash stops a node: unsynced writes are lost, and so are its Raft and state machine. */
  crash(id: number, point = 'idle'): void {
    const node = this.nodes.get(id)
    assert(node !== undefined && node.raft !== undefined, `crash: node ${id} is not up`)
    node.raft = undefined
    node.sm = undefined
    node.disk.setHardState(node.durableHardState)
    this.trace.add(this.now, `n${id} CRASH at ${point} (durable term ${node.durableHardState.term}, vote ${node.durableHardState.vote}, last ${node.disk.lastIndex()})`)
    this.hooks.onCrash?.(id)
  }

  /** shutdown stops a node for good (it was removed from the group). */
  shutdown(id: number): void {
    const node = this.nodes.get(id)
    if (node === undefined) return
    if (node.raft !== undefined) this.crash(id, 'shutdown')
    this.nodes.delete(id)
    this.trace.add(this.now, `n${id} shut down (removed from the group)`)
  }

  /** up lists the ids of running nodes, sorted. */
  up(): number[] {
    return [...this.nodes.values()].filter((n) => n.raft !== undefined).map((n) => n.id).sort((a, b) => a - b)
  }

  /** status of a running node, or undefined when it is down. */
  status(id: number): Status | undefined {
    return this.nodes.get(id)?.raft?.status()
  }

  /** leaders lists running nodes that believe they lead, highest term first. */
  leaders(): number[] {
    const out: Array<{ id: number; term: number }> = []
    for (const id of this.up()) {
      const s = this.status(id)!
      if (s.role === 'leader') out.push({ id, term: s.term })
    }
    return out.sort((a, b) => b.term - a.term || a.id - b.id).map((x) => x.id)
  }

  /** input runs `action` against a running node's Raft, then drains its Readys and checks the invariants. */
  input(id: number, label: string | undefined, action: (node: RaftNode) => void): boolean {
    const node = this.nodes.get(id)
    if (node?.raft === undefined) return false
    if (label !== undefined) this.trace.add(this.now, `n${id} ${label}`)
    action(node.raft)
    this.drain(node)
    this.checkAfterStep()
    return true
  }

  /** deliver hands a due packet to its destination (or drops it), reporting snapshot outcomes to the sender. */
  deliver(packet: Packet, dropped: string | undefined): void {
    const m = packet.message
    const dest = this.nodes.get(m.to)
    const reason = dropped ?? (dest?.raft === undefined ? 'down' : undefined)
    if (reason !== undefined) {
      this.trace.add(this.now, `drop ${describe(m)} (${reason})`)
      if (m.type === 'snap') this.input(m.from, undefined, (r) => r.reportSnapshot(m.to, false))
      else if (reason === 'partition') this.input(m.from, undefined, (r) => r.reportUnreachable(m.to))
      return
    }
    this.input(m.to, `recv ${describe(m)}`, (r) => r.step(m))
    if (m.type === 'snap') this.input(m.from, undefined, (r) => r.reportSnapshot(m.to, true))
  }

  /** drain processes every pending Ready of a running node, possibly crashing it part-way. */
  drain(node: SimNode): void {
    for (let loops = 0; node.raft !== undefined && node.raft.hasReady(); loops++) {
      if (loops >= this.options.readyLoopsMax) {
        throw new KvError(ErrorCode.INTERNAL, `node ${node.id} produced more than readyLoopsMax ${this.options.readyLoopsMax} Readys for one input`)
      }
      const rd = node.raft.ready()
      const critical = isCritical(node, node.raft, rd)
      if (critical) this.onCriticalReady(node.id)
      this.handleReady(node, node.raft, rd, this.crashPlan(node.id, critical))
    }
  }

  private handleReady(node: SimNode, r: RaftNode, rd: Ready, crashAt: CrashPoint | undefined): void {
    if (rd.softState !== undefined) this.trace.add(this.now, `n${node.id} is ${rd.softState.role} (leader ${rd.softState.leader})`)
    if (crashAt === 'beforePersist') return this.crash(node.id, crashAt)
    this.persist(node, rd, crashAt === 'midPersist')
    if (crashAt === 'midPersist') return this.crash(node.id, crashAt)
    if (crashAt === 'afterPersist') return this.crash(node.id, crashAt)
    const sendCount = crashAt === 'midSend' ? this.random.int(0, Math.max(0, rd.messages.length - 1)) : rd.messages.length
    for (const m of rd.messages.slice(0, sendCount)) this.send(m)
    if (crashAt === 'midSend' || crashAt === 'afterSend') return this.crash(node.id, crashAt)
    // The entries this Ready commits are on this node's disk now: record them before they are applied.
    if (rd.committedEntries.length > 0) this.checker.observeCommit(node.id, r.status().commit, node.disk)
    this.apply(node, r, rd)
    if (crashAt === 'afterApply') return this.crash(node.id, crashAt)
    for (const rs of rd.readStates) this.hooks.onReadState?.(node.id, rs)
    r.advance(rd)
    this.hooks.onApplied?.(node.id, node.sm!)
    this.maybeSnapshot(node)
  }

  private persist(node: SimNode, rd: Ready, torn: boolean): void {
    const disk = node.disk
    if (rd.snapshot !== undefined) {
      // A snapshot install is one synced record that also carries its commit index (a snapshot is
      // committed by definition); the core rejects a disk whose hard state commits less than its
      // snapshot (FINDINGS.md #2).
      disk.applySnapshot(rd.snapshot)
      const hs = disk.hardState
      disk.setHardState({ ...hs, commit: Math.max(hs.commit, rd.snapshot.meta.index) })
      node.durableHardState = disk.hardState
    }
    const entries = torn ? rd.entries.slice(0, this.random.int(0, Math.max(0, rd.entries.length - 1))) : rd.entries
    if (entries.length > 0) {
      const replaced = this.committedHeld(disk, entries)
      disk.append(entries)
      this.checker.observeWrite(node.id, entries, disk, replaced)
      this.trace.add(this.now, `n${node.id} wrote ${entries[0]!.index}..${entries[entries.length - 1]!.index}${torn ? ` (torn, of ${rd.entries.length})` : ''}`)
    }
    if (torn) return
    if (rd.hardState !== undefined) disk.setHardState(rd.hardState)
    // An fsync makes everything written before it durable, including earlier unsynced hard states.
    if (rd.mustSync || rd.snapshot !== undefined || entries.length > 0) node.durableHardState = disk.hardState
  }

  /** committedHeld maps each index `entries` will overwrite to the committed entry the disk holds there. */
  private committedHeld(disk: MemoryRaftStorage, entries: readonly Entry[]): Map<number, string> {
    const held = new Map<number, string>()
    const from = Math.max(entries[0]!.index, disk.firstIndex())
    const to = Math.min(disk.lastIndex(), this.checker.maxCommit)
    if (from > to) return held
    for (const old of disk.entries(from, to + 1, Number.MAX_SAFE_INTEGER)) {
      const signature = entrySignature(old)
      if (signature === this.checker.committedSignature(old.index)) held.set(old.index, signature)
    }
    return held
  }

  private send(m: Message): void {
    const dropped = this.network.send(m, this.now)
    this.trace.add(this.now, `send ${describe(m)}${dropped ? ` (${dropped})` : ''}`)
  }

  private apply(node: SimNode, r: RaftNode, rd: Ready): void {
    const sm = node.sm!
    if (rd.snapshot !== undefined) {
      node.sm = KvStateMachine.fromSnapshot(rd.snapshot)
      this.checker.observeRestore(node.id, rd.snapshot.meta.index)
      this.trace.add(this.now, `n${node.id} restored snapshot ${rd.snapshot.meta.index}`)
      this.noteConf(rd.snapshot.meta.index, rd.snapshot.meta.confState)
    }
    for (const entry of rd.committedEntries) {
      const target = node.sm ?? sm
      if (entry.type === 'confChange') {
        const change = decodeConfChange(entry.data)
        const confState = r.applyConfChange(change)
        target.applyConfChange(entry.index, confState)
        this.noteConf(entry.index, confState)
        this.trace.add(this.now, `n${node.id} applied ${entry.index} ${change.type} ${change.nodeId} -> voters ${confState.voters.join(',')} learners ${confState.learners.join(',')}`)
      } else {
        target.applyCommand(entry.index, entry.data)
      }
      this.checker.observeApply(node.id, entry)
      this.hooks.onApply?.(node.id, entry, target)
    }
  }

  private noteConf(index: number, confState: ConfState): void {
    if (index > this.latestConf.index) this.latestConf = { index, confState: { voters: [...confState.voters], learners: [...confState.learners], votersOutgoing: [...confState.votersOutgoing] } }
  }

  private maybeSnapshot(node: SimNode): void {
    const sm = node.sm!
    const disk = node.disk
    if (sm.applied - disk.snapshot().meta.index < this.options.snapshotEveryEntries) return
    disk.createSnapshot(sm.applied, sm.confState, sm.snapshotData())
    const compactTo = sm.applied - this.options.compactKeepEntries
    if (compactTo >= disk.firstIndex()) disk.compact(compactTo)
    node.durableHardState = disk.hardState
    this.trace.add(this.now, `n${node.id} snapshot at ${sm.applied}, log now ${disk.firstIndex()}..${disk.lastIndex()}`)
  }

  /** checkAfterStep runs the per-step invariants over every running node and every disk. */
  checkAfterStep(): void {
    const disks = new Map<number, MemoryRaftStorage>()
    for (const node of this.nodes.values()) {
      disks.set(node.id, node.disk)
      if (node.raft === undefined) continue
      const s = node.raft.status()
      this.checker.observeRole(node.id, s.term, s.role, node.disk)
      this.checker.observeCommit(node.id, s.commit, node.disk)
    }
    this.checker.checkDurability(this.latestConf.confState.voters, disks)
  }
}

function isCritical(node: SimNode, r: RaftNode, rd: Ready): boolean {
  if (rd.softState?.role === 'leader') return true
  return rd.hardState !== undefined && rd.hardState.commit > node.disk.hardState.commit && r.status().role === 'leader'
}

/** describe renders a message in one short trace line. */
export function describe(m: Message): string {
  let text = `${m.type} ${m.from}->${m.to} t${m.term}`
  if (m.type === 'app' || m.type === 'appResp' || m.type === 'vote' || m.type === 'preVote') text += ` i${m.index} lt${m.logTerm}`
  if (m.entries.length > 0) text += ` +${m.entries.length}`
  if (m.commit > 0) text += ` c${m.commit}`
  if (m.reject) text += ` REJECT(hint ${m.rejectHint})`
  if (m.snapshot !== undefined) text += ` snap@${m.snapshot.meta.index}`
  return text
}
