/**
 * The simulated network between Raft nodes (tigerbeetle's packet simulator is the model).
 * Fault model: every packet may be delayed (which also reorders packets), lost or duplicated;
 * links may be cut both ways (symmetric partition) or one way only (asymmetric partition).
 * A partition is checked when a packet is due, so a cut also drops packets already in flight.
 * All choices come from the seeded Random and all times from the simulated clock, so a run
 * replays exactly. The in-flight queue is bounded by `packetsInFlightMax`: a full network
 * drops the packet, as a real one would.
 */
import { ErrorCode, KvError } from '../../src/errors.js'
import type { Message, NodeId } from '../../src/raft/index.js'
import type { Random } from './random.js'

/** NetworkOptions are the fault knobs; times are in simulator time units. */
export interface NetworkOptions {
  delayMin: number
  delayMax: number
  /** lossProbability: chance that a packet is silently dropped. */
  lossProbability: number
  /** duplicateProbability: chance that a packet is delivered twice (at independent times). */
  duplicateProbability: number
  /** packetsInFlightMax bounds the queue; a packet sent to a full network is dropped. */
  packetsInFlightMax: number
}

/** Packet is one message in flight with its delivery time; `seq` makes ordering total. */
export interface Packet {
  seq: number
  deliverAt: number
  message: Message
}

/** DropReason says why a packet never arrived, so the driver can report unreachable peers. */
export type DropReason = 'loss' | 'partition' | 'full'

/** NetworkStats counts what happened to packets, for the run summary and unit tests. */
export interface NetworkStats {
  sent: number
  delivered: number
  lost: number
  duplicated: number
  partitioned: number
  overflowed: number
}

/** cloneMessage copies a message deeply enough that a duplicate cannot alias what a node keeps. */
export function cloneMessage(message: Message): Message {
  const copy: Message = { ...message, entries: message.entries.map((e) => ({ ...e })) }
  if (message.snapshot !== undefined) copy.snapshot = { meta: { ...message.snapshot.meta }, data: message.snapshot.data }
  return copy
}

/** Network queues packets between nodes and delivers those that are due, applying its faults. */
export class Network {
  readonly stats: NetworkStats = { sent: 0, delivered: 0, lost: 0, duplicated: 0, partitioned: 0, overflowed: 0 }
  private options: NetworkOptions
  private readonly random: Random
  // Invariant: sorted by (deliverAt, seq).
  private queue: Packet[] = []
  private seq = 0
  private readonly cut = new Set<string>()

  constructor(random: Random, options: NetworkOptions) {
    this.random = random
    this.options = validateOptions(options)
  }

  /** setOptions changes the fault knobs (the liveness phase heals loss, for instance). */
  setOptions(options: NetworkOptions): void {
    this.options = validateOptions(options)
  }

  /** inFlight is the number of queued packets. */
  get inFlight(): number {
    return this.queue.length
  }

  /** send queues `message` at time `now`; it returns the drop reason if the packet was dropped at once. */
  send(message: Message, now: number): DropReason | undefined {
    this.stats.sent++
    if (this.random.chance(this.options.lossProbability)) {
      this.stats.lost++
      return 'loss'
    }
    const copies = this.random.chance(this.options.duplicateProbability) ? 2 : 1
    if (copies === 2) this.stats.duplicated++
    for (let i = 0; i < copies; i++) {
      if (this.queue.length >= this.options.packetsInFlightMax) {
        this.stats.overflowed++
        return i === 0 ? 'full' : undefined
      }
      const delay = this.random.int(this.options.delayMin, this.options.delayMax)
      this.insert({ seq: this.seq++, deliverAt: now + delay, message: cloneMessage(message) })
    }
    return undefined
  }

  /** nextDue removes and returns the first packet due at or before `now`, or undefined. */
  nextDue(now: number): { packet: Packet; dropped?: DropReason } | undefined {
    const packet = this.queue[0]
    if (packet === undefined || packet.deliverAt > now) return undefined
    this.queue.shift()
    if (!this.linkUp(packet.message.from, packet.message.to)) {
      this.stats.partitioned++
      return { packet, dropped: 'partition' }
    }
    this.stats.delivered++
    return { packet }
  }

  /** linkUp tells whether packets from `from` currently reach `to`. */
  linkUp(from: NodeId, to: NodeId): boolean {
    return !this.cut.has(`${from}>${to}`)
  }

  /** cutOneWay drops every packet from `from` to `to` until healed (an asymmetric partition). */
  cutOneWay(from: NodeId, to: NodeId): void {
    this.cut.add(`${from}>${to}`)
  }

  /** partition cuts every link between `side` and `rest`, both ways. */
  partition(side: readonly NodeId[], rest: readonly NodeId[]): void {
    for (const a of side) {
      for (const b of rest) {
        this.cutOneWay(a, b)
        this.cutOneWay(b, a)
      }
    }
  }

  /** heal restores every link. */
  heal(): void {
    this.cut.clear()
  }

  /** cutLinks lists the cut links as "from>to", sorted, for traces. */
  cutLinks(): string[] {
    return [...this.cut].sort()
  }

  /** dropAll empties the queue (used by tests); returns how many packets were discarded. */
  dropAll(): number {
    const n = this.queue.length
    this.queue = []
    return n
  }

  private insert(packet: Packet): void {
    let lo = 0
    let hi = this.queue.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const q = this.queue[mid]!
      if (q.deliverAt < packet.deliverAt || (q.deliverAt === packet.deliverAt && q.seq < packet.seq)) lo = mid + 1
      else hi = mid
    }
    this.queue.splice(lo, 0, packet)
  }
}

function validateOptions(options: NetworkOptions): NetworkOptions {
  const { delayMin, delayMax, lossProbability, duplicateProbability, packetsInFlightMax } = options
  if (!Number.isSafeInteger(delayMin) || !Number.isSafeInteger(delayMax) || delayMin < 0 || delayMax < delayMin) {
    throw new KvError(ErrorCode.INVALID, `NetworkOptions: delayMin/delayMax must be integers with 0 <= delayMin <= delayMax`, { delayMin, delayMax })
  }
  for (const [name, p] of [['lossProbability', lossProbability], ['duplicateProbability', duplicateProbability]] as const) {
    if (!(p >= 0 && p < 1)) throw new KvError(ErrorCode.INVALID, `NetworkOptions.${name} must be in [0, 1), got ${p}`, { [name]: p })
  }
  if (!Number.isSafeInteger(packetsInFlightMax) || packetsInFlightMax < 1) {
    throw new KvError(ErrorCode.INVALID, `NetworkOptions.packetsInFlightMax must be a positive integer`, { packetsInFlightMax })
  }
  return { ...options }
}
