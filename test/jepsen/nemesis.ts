/**
 * The nemesis: injects one fault at a time into a JepsenCluster, every few seconds, each lasting
 * one to ten seconds, every choice drawn from the run's seeded Random so a seed names a schedule
 * (the cluster's own timing still varies between runs). A fault is applied, held, then healed;
 * leadership transfers and slot moves are instantaneous admin actions issued under traffic.
 *
 * Faults (names for --nemesis): kill-one, kill-minority, kill-all (SIGKILL, restart at heal),
 * pause (SIGSTOP a node, SIGCONT at heal), partition-one, partition-minority, partition-ring
 * (majorities that overlap: every node sees a majority, no two see the same one), partition-oneway
 * (a node's messages to one peer are lost, the replies are not), delay (every node link slowed a
 * little, or one node's links by more than the election timeout),
 * drop (node links lose chunks, which resets their connections), transfer-leader, move-slots,
 * disk-full (the disk node's filesystem filled to the last byte, freed at heal), power-loss
 * (SIGKILL of one node, a minority or every node at once while the nodes run with the power-loss
 * engine, DISTKV_FAULT_POWER_LOSS=1, so each loses every write it had not synced; restart at
 * heal), partition-leader (a shard leader cut off from both peers while clients, and the pinned
 * readers on its proxy, still reach it; held past the time it takes to be deposed).
 */
import { closeSync, openSync, rmSync, writeSync } from 'node:fs'
import { join } from 'node:path'
import type { Random } from '../sim/random.js'
import type { RemoteKV } from '../../src/client/remote.js'
import { ErrorCode, KvError } from '../../src/errors.js'
import type { JepsenCluster } from './cluster.js'

/** NEMESES lists every fault name. */
export const NEMESES = ['kill-one', 'kill-minority', 'kill-all', 'power-loss', 'pause', 'partition-one', 'partition-leader', 'partition-minority', 'partition-ring', 'partition-oneway', 'delay', 'drop', 'transfer-leader', 'move-slots', 'disk-full'] as const
/** NemesisName is one fault kind. */
export type NemesisName = (typeof NEMESES)[number]
/** MIXED is what `--nemesis mixed` (and CI) runs. */
export const MIXED: readonly NemesisName[] = ['kill-one', 'kill-minority', 'kill-all', 'power-loss', 'pause', 'partition-one', 'partition-leader', 'partition-minority', 'partition-ring', 'partition-oneway', 'delay', 'drop', 'transfer-leader', 'move-slots', 'disk-full']

/** FaultEvent is one injected fault as recorded in the report. */
export interface FaultEvent {
  name: NemesisName
  detail: string
  /** start and end are ms since the run began; end is when the heal finished. */
  start: number
  end: number
  /** nodes the fault made unreachable or dead (for availability accounting). */
  nodes: number[]
}

/** parseNemeses validates a comma-separated list ('mixed' and 'none' allowed). */
export function parseNemeses(text: string): NemesisName[] {
  const names = text.split(',').map((s) => s.trim()).filter((s) => s !== '')
  const out = new Set<NemesisName>()
  for (const name of names) {
    if (name === 'mixed') MIXED.forEach((n) => out.add(n))
    else if (name === 'none') continue
    else if ((NEMESES as readonly string[]).includes(name)) out.add(name as NemesisName)
    else throw new KvError(ErrorCode.INVALID, `--nemesis: unknown fault '${name}' (one of mixed, none, ${NEMESES.join(', ')})`)
  }
  return [...out]
}

/** viewTimeoutMs bounds the wait for the cluster view when a fault looks for a leader. */
const viewTimeoutMs = 3_000

/** fillBytesMax bounds the filler file of disk-full (larger than the tmpfs, so it always fills it). */
const fillBytesMax = 512 * 1024 * 1024

function fillDisk(dir: string): string {
  const file = join(dir, 'jepsen-filler')
  const fd = openSync(file, 'w')
  const chunk = Buffer.alloc(1024 * 1024, 0x5a)
  let written = 0
  try {
    while (written < fillBytesMax) {
      try {
        written += writeSync(fd, chunk)
      } catch {
        break // ENOSPC: full
      }
    }
    // Fill the tail too: 4 KiB pieces until nothing fits.
    const small = chunk.subarray(0, 4096)
    for (;;) {
      try {
        if (writeSync(fd, small) === 0) break
      } catch {
        break
      }
    }
  } finally {
    closeSync(fd)
  }
  return file
}

/** Nemesis schedules and applies faults. */
export class Nemesis {
  readonly events: FaultEvent[] = []
  /** stoppedDrivers: nodes whose Raft driver stopped on the full disk (the nemesis restarted them at heal). */
  readonly stoppedDrivers: Array<{ node: number; atMs: number }> = []
  private stopped = false

  constructor(
    private readonly cluster: JepsenCluster,
    private readonly names: readonly NemesisName[],
    private readonly random: Random,
    private readonly now: () => number,
    private readonly admin: RemoteKV,
    private readonly log: (line: string) => void,
    /** hotSlots: the slots the workload's keys live in; move-slots moves one of them half the time. */
    private readonly hotSlots: readonly number[] = [],
  ) {}

  /** run injects faults until `endAt` (ms since the run began); always leaves the cluster healed. */
  async run(endAt: number): Promise<void> {
    const usable = this.names.filter((n) => n !== 'disk-full' || 'mount' in this.cluster.diskFault)
    while (!this.stopped && usable.length > 0) {
      await this.sleepUntil(Math.min(endAt, this.now() + this.random.int(2_000, 5_000)))
      if (this.now() >= endAt - 1_000) break
      const name = this.random.pick(usable)
      const holdMs = Math.max(this.holdMinMs(name), Math.min(this.random.int(1_000, 10_000), Math.max(1_000, endAt - this.now())))
      const start = this.now()
      try {
        const { detail, nodes, heal } = await this.apply(name)
        this.log(`nemesis +${(start / 1000).toFixed(1)}s ${name} ${detail} for ${Math.round(holdMs)} ms`)
        await this.sleepUntil(start + holdMs)
        await heal()
        this.events.push({ name, detail, start, end: this.now(), nodes })
      } catch (error) {
        this.log(`nemesis ${name} failed: ${(error as Error).message}`)
        await this.cluster.healAll()
      }
    }
    await this.cluster.healAll()
  }

  /**
   * holdMinMs: a cut-off leader keeps believing it leads until check-quorum deposes it, one to two
   * election timeouts after the cut, and its peers elect another within about as long; the fault
   * is held past both (three election timeouts) so that the overlap, when there is one, is whole.
   */
  private holdMinMs(name: NemesisName): number {
    const { tickMs, electionTicks } = this.cluster.options
    return name === 'partition-leader' ? 3 * tickMs * electionTicks + 500 : 0
  }

  /** stop ends the schedule at the next step. */
  stop(): void {
    this.stopped = true
  }

  private async sleepUntil(at: number): Promise<void> {
    while (!this.stopped && this.now() < at) await new Promise((resolve) => setTimeout(resolve, Math.min(250, at - this.now())))
  }

  private ids(): number[] {
    return this.cluster.nodes.map((n) => n.id)
  }

  /** target picks the node a one-node fault hits: a shard leader half the time (stale-leader bugs need one) or when `leader`, else any node. */
  private async target(leader = false): Promise<number> {
    const ids = this.ids()
    const any = this.random.pick(ids)
    if (!leader && !this.random.chance(0.5)) return any
    const view = (await Promise.race([
      this.admin.call('admin.cluster', {}).catch(() => undefined),
      new Promise((resolve) => setTimeout(resolve, viewTimeoutMs)),
    ])) as { shards?: Array<{ leader: number | null }> } | undefined
    const leaders = (view?.shards ?? []).map((s) => s.leader).filter((l): l is number => l !== null && ids.includes(l))
    return leaders.length === 0 ? any : this.random.pick(leaders)
  }

  private minority(): number[] {
    const ids = this.random.shuffle([...this.ids()])
    return ids.slice(0, Math.max(1, Math.floor((ids.length - 1) / 2)))
  }

  private async apply(name: NemesisName): Promise<{ detail: string; nodes: number[]; heal: () => Promise<void> }> {
    const ids = this.ids()
    const restart = (nodes: number[]) => async () => {
      await Promise.all(nodes.map((id) => this.cluster.startNode(id).catch((error) => this.log(`restart of node ${id}: ${(error as Error).message}`))))
    }
    switch (name) {
      case 'kill-one':
      case 'kill-minority':
      case 'kill-all': {
        const nodes = name === 'kill-all' ? ids : name === 'kill-one' ? [await this.target()] : this.minority()
        for (const id of nodes) this.cluster.kill(id)
        return { detail: `nodes ${nodes.join(',')}`, nodes, heal: restart(nodes) }
      }
      case 'power-loss': {
        // Correlated power loss (every node at once) is the case where unsynced data is gone everywhere.
        const roll = this.random.float()
        const nodes = roll < 0.5 ? ids : roll < 0.75 ? this.minority() : [await this.target()]
        for (const id of nodes) this.cluster.kill(id)
        return { detail: `power cut on nodes ${nodes.join(',')} (unsynced writes lost)`, nodes, heal: restart(nodes) }
      }
      case 'pause': {
        const id = await this.target()
        this.cluster.pause(id)
        return { detail: `node ${id}`, nodes: [id], heal: async () => this.cluster.resume(id) }
      }
      case 'partition-leader':
        return this.isolateLeader(ids)
      case 'partition-one':
      case 'partition-minority': {
        const side = name === 'partition-one' ? [await this.target()] : this.minority()
        const cut = ids.flatMap((a) => ids.filter((b) => a !== b && side.includes(a) !== side.includes(b)).map((b) => [a, b] as const))
        return this.cutLinks(cut, `{${side.join(',')}} | {${ids.filter((i) => !side.includes(i)).join(',')}}`, side)
      }
      case 'partition-ring':
        return this.ring(ids)
      case 'partition-oneway': {
        const a = await this.target()
        const b = this.random.pick(ids.filter((i) => i !== a))
        // Lost from a to b: requests a dials to b and replies a sends on connections b dialed.
        this.cluster.link(a!, b!).set('forward', { blocked: true })
        this.cluster.link(b!, a!).set('backward', { blocked: true })
        return { detail: `${a} -> ${b} lost`, nodes: [], heal: async () => [this.cluster.link(a!, b!), this.cluster.link(b!, a!)].forEach((l) => l.heal()) }
      }
      case 'delay':
        return this.random.chance(0.5) ? this.slowNode(ids) : this.slowLinks(name, ids)
      case 'drop':
        return this.slowLinks(name, ids)
      case 'transfer-leader':
        return this.transfer()
      case 'move-slots':
        return this.moveSlots()
      case 'disk-full': {
        const mount = (this.cluster.diskFault as { mount: string }).mount
        const node = this.cluster.options.diskNode
        const mark = this.cluster.logSize(node)
        const file = fillDisk(mount)
        const heal = async () => {
          rmSync(file, { force: true })
          // A node whose Raft driver stopped on a failed write stays up refusing everything; an operator restarts it.
          if (this.cluster.logSince(node, mark).includes('raft driver stopped')) {
            this.stoppedDrivers.push({ node, atMs: this.now() })
            this.cluster.kill(node)
            await this.cluster.startNode(node).catch((error) => this.log(`restart of node ${node}: ${(error as Error).message}`))
          }
        }
        return { detail: `node ${node} filesystem full`, nodes: [node], heal }
      }
    }
  }

  /** slowLinks delays (20-300 ms) or drops (0.5-5 % of chunks) on every node-to-node link. */
  private slowLinks(name: 'delay' | 'drop', ids: number[]): { detail: string; nodes: number[]; heal: () => Promise<void> } {
    const links = ids.flatMap((a) => ids.filter((b) => a !== b).map((b) => this.cluster.link(a, b)))
    const delayMs = this.random.int(20, 300)
    const dropRate = this.random.int(1, 10) / 200
    for (const link of links) for (const d of ['forward', 'backward'] as const) link.set(d, name === 'delay' ? { delayMs } : { dropRate })
    return { detail: name === 'delay' ? `${delayMs} ms on every node link` : `${dropRate} chunk loss on every node link`, nodes: [], heal: async () => links.forEach((l) => l.heal()) }
  }

  /**
   * slowNode delays every link to and from one node (often a leader) by 0.6-2 s, longer than the
   * election timeout: its peers elect another leader while it still hears them, late, and so
   * believes it leads until the new leader's messages reach it. Reads it serves meanwhile are
   * stale unless it confirms leadership (ReadIndex) first.
   */
  private async slowNode(ids: number[]): Promise<{ detail: string; nodes: number[]; heal: () => Promise<void> }> {
    const id = await this.target()
    const links = ids.filter((b) => b !== id).flatMap((b) => [this.cluster.link(id, b), this.cluster.link(b, id)])
    const delayMs = this.random.int(600, 2_000)
    for (const link of links) for (const d of ['forward', 'backward'] as const) link.set(d, { delayMs })
    return { detail: `${delayMs} ms on every link of node ${id}`, nodes: [], heal: async () => links.forEach((l) => l.heal()) }
  }

  /**
   * isolateLeader cuts a shard leader from both peers with refused connections (RST), leaving the
   * client links alone. Refusal, not silence, is the point: the proxies on the majority side fail
   * their attempts at the old leader at once and reroute to the new one as soon as it is elected,
   * so writes commit there while the old leader, until check-quorum deposes it, still believes it
   * leads and is asked to read (by the pinned readers on its proxy) the same keys.
   */
  private async isolateLeader(ids: number[]): Promise<{ detail: string; nodes: number[]; heal: () => Promise<void> }> {
    const id = await this.target(true)
    const links = ids.filter((b) => b !== id).flatMap((b) => [this.cluster.link(id, b), this.cluster.link(b, id)])
    for (const link of links) link.refuse()
    return { detail: `node ${id} (a shard leader) refused by ${ids.filter((b) => b !== id).join(',')}`, nodes: [id], heal: async () => links.forEach((l) => l.heal()) }
  }

  private cutLinks(pairs: ReadonlyArray<readonly [number, number]>, detail: string, nodes: number[]): { detail: string; nodes: number[]; heal: () => Promise<void> } {
    const links = pairs.map(([a, b]) => this.cluster.link(a, b))
    for (const link of links) for (const d of ['forward', 'backward'] as const) link.set(d, { blocked: true })
    return { detail, nodes, heal: async () => links.forEach((l) => l.heal()) }
  }

  private ring(ids: number[]): { detail: string; nodes: number[]; heal: () => Promise<void> } {
    const order = this.random.shuffle([...ids])
    const n = order.length
    const reach = Math.floor(n / 2)
    // Three nodes: a bridge (the middle one sees both ends, the ends not each other). More: a ring where each sees its reach neighbours.
    const connected = (a: number, b: number) => {
      const d = Math.abs(order.indexOf(a) - order.indexOf(b))
      return n === 3 ? d === 1 : Math.min(d, n - d) <= Math.max(1, reach - 1)
    }
    const pairs = ids.flatMap((a) => ids.filter((b) => a !== b && !connected(a, b)).map((b) => [a, b] as const))
    return this.cutLinks(pairs, `ring ${order.join('-')}`, [])
  }

  private async transfer(): Promise<{ detail: string; nodes: number[]; heal: () => Promise<void> }> {
    const view = (await this.admin.call('admin.cluster', {})) as { shards: Array<{ id: number; replicas: number[]; leader: number | null }> }
    const shard = this.random.pick(view.shards)
    const to = this.random.pick(shard.replicas.filter((r) => r !== shard.leader).length > 0 ? shard.replicas.filter((r) => r !== shard.leader) : shard.replicas)
    const result = await this.admin.call('admin.transferLeader', { shard: shard.id, node: to }).then(() => 'ok', (error: Error) => `refused: ${error.message}`)
    return { detail: `shard ${shard.id} ${shard.leader} -> ${to} (${result})`, nodes: [], heal: async () => undefined }
  }

  private async moveSlots(): Promise<{ detail: string; nodes: number[]; heal: () => Promise<void> }> {
    const view = (await this.admin.call('admin.cluster', {})) as { shards: Array<{ id: number; slots: Array<[number, number]> }> }
    const owner = (slot: number) => view.shards.find((s) => s.slots.some(([a, b]) => slot >= a && slot <= b))
    let [from, to] = this.random.shuffle(view.shards.filter((s) => s.slots.length > 0).map((s) => s))
    if (from === undefined || to === undefined) return { detail: 'no two shards', nodes: [], heal: async () => undefined }
    let slots: number[]
    if (this.hotSlots.length > 0 && this.random.chance(0.5)) {
      const slot = this.random.pick(this.hotSlots)
      from = owner(slot) ?? from
      to = view.shards.find((s) => s.id !== from!.id) ?? to
      slots = [slot]
    } else {
      const [a, b] = this.random.pick(from.slots)
      const first = this.random.int(a, b)
      slots = Array.from({ length: Math.min(b - first + 1, this.random.int(1, 64)) }, (_, i) => first + i)
    }
    const result = await this.admin.call('admin.moveSlots', { slots, to: to.id }).then(() => 'ok', (error: Error) => `refused: ${error.message}`)
    return { detail: `slots ${slots[0]}-${slots.at(-1)} shard ${from.id} -> ${to.id} (${result})`, nodes: [], heal: async () => undefined }
  }
}
