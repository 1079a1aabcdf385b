/**
 * Fault profiles: the seed first picks a profile, then the profile draws the cluster's shape,
 * the network and the fault rates from the seed's `parameters` stream.
 *
 * - `mixed` spreads every knob wide (crashes anywhere in a Ready, partitions of every shape,
 *   loss, duplication, long delays, membership changes).
 * - `figure8` aims at the interleaving of the Raft paper's Figure 8 (§5.4.2): a leader appends
 *   entries that reach only a minority and is cut off; a leader of a higher term appends its own
 *   entries, reaches nobody, and is cut off in turn; the first one returns in a yet higher term
 *   and re-replicates its old-term entries one per append. Short message delays against long
 *   election timeouts let the replication race finish inside one tick; "stranding" moves a single
 *   isolation from node to node, so the previous victim comes back as the next leaves, and it
 *   strikes a leader whose log holds entries not yet on a quorum. Under a correct core nothing
 *   may break; a core that commits an earlier-term entry by counting replicas loses it there.
 */
import type { ClusterOptions } from './cluster.js'
import type { NetworkOptions } from './network.js'
import type { Random } from './random.js'
import type { WorkloadOptions } from './workload.js'

/** TICK_UNITS is how many simulated time units make one Raft tick (network delays are in units). */
export const TICK_UNITS = 10

/** FIGURE8_SHARE is the fraction of seeds that run the `figure8` profile. */
export const FIGURE8_SHARE = 0.3

/** ProfileName names a fault profile. */
export type ProfileName = 'mixed' | 'figure8'

/** Faults are the per-seed fault rates (per tick unless named otherwise). */
export interface Faults {
  crash: number
  crashInReady: number
  /** crashInCriticalReady: crash chance in a new leader's first Ready or a leader's commit-advancing Ready. */
  crashInCriticalReady: number
  /** isolateAtCriticalReady: chance to cut a node off from all others just as it processes a critical Ready. */
  isolateAtCriticalReady: number
  /** strandLeader: chance per tick to cut off (or crash) a leader whose log runs ahead of its commit index. */
  strandLeader: number
  /** moveIsolation: an isolation first heals the previous one, so the last victim rejoins as the next leaves. */
  moveIsolation: boolean
  restart: number
  partition: number
  heal: number
  transfer: number
  campaign: number
  confChange: number
}

/** Profile is everything a profile decides for one seed. */
export interface Profile {
  name: ProfileName
  size: number
  cluster: ClusterOptions
  network: NetworkOptions
  faults: Faults
  workload: WorkloadOptions
}

const PACKETS_IN_FLIGHT_MAX = 4096
const READY_LOOPS_MAX = 64

/** drawProfile picks the seed's profile with `chooser` and draws its parameters from `params`. */
export function drawProfile(chooser: Random, params: Random): Profile {
  return chooser.chance(FIGURE8_SHARE) ? figure8(params) : mixed(params)
}

function workload(opProbability: number): WorkloadOptions {
  return { clients: 3, keys: 3, opProbability, readFraction: 0.4, opTimeout: 30 * TICK_UNITS, historyOpsMax: 600 }
}

function mixed(params: Random): Profile {
  const size = params.chance(0.6) ? 3 : 5
  const cluster: ClusterOptions = {
    electionTimeoutTicks: params.int(5, 12),
    heartbeatIntervalTicks: params.int(1, 2),
    preVote: params.chance(0.7),
    checkQuorum: params.chance(0.7),
    snapshotEveryEntries: params.int(3, 40),
    compactKeepEntries: params.int(0, 5),
    entryBytesMaxPerMessage: params.pick([1, 100, 1024 * 1024]),
    inflightMessagesMax: params.pick([1, 4, 256]),
    readyLoopsMax: READY_LOOPS_MAX,
  }
  const network: NetworkOptions = {
    delayMin: params.int(0, 3),
    delayMax: params.int(4, 3 * TICK_UNITS),
    lossProbability: params.pick([0, 0.01, 0.05, 0.15]),
    duplicateProbability: params.pick([0, 0.01, 0.05]),
    packetsInFlightMax: PACKETS_IN_FLIGHT_MAX,
  }
  const faults: Faults = {
    crash: params.pick([0, 0.005, 0.02, 0.05]),
    crashInReady: params.pick([0, 0.002, 0.01]),
    crashInCriticalReady: params.pick([0, 0.01, 0.05, 0.2]),
    isolateAtCriticalReady: params.pick([0, 0.05, 0.2]),
    strandLeader: 0,
    moveIsolation: false,
    restart: params.pick([0.02, 0.1]),
    partition: params.pick([0, 0.01, 0.03]),
    heal: params.pick([0.02, 0.1]),
    transfer: params.pick([0, 0.01]),
    campaign: params.pick([0, 0.005]),
    confChange: params.pick([0, 0.02, 0.05]),
  }
  return { name: 'mixed', size, cluster, network, faults, workload: workload(0.2) }
}

function figure8(params: Random): Profile {
  const size = params.pick([3, 5, 5])
  const cluster: ClusterOptions = {
    electionTimeoutTicks: params.int(8, 14),
    heartbeatIntervalTicks: params.int(1, 2),
    preVote: params.chance(0.5),
    checkQuorum: params.chance(0.5),
    snapshotEveryEntries: params.int(10, 60),
    compactKeepEntries: params.int(0, 5),
    // One entry per append: the old-term entry travels alone, ahead of the new leader's own.
    entryBytesMaxPerMessage: params.pick([1, 1, 100]),
    inflightMessagesMax: params.pick([1, 4]),
    readyLoopsMax: READY_LOOPS_MAX,
  }
  const network: NetworkOptions = {
    delayMin: params.int(0, 1),
    delayMax: params.int(2, TICK_UNITS),
    lossProbability: params.pick([0, 0, 0.01]),
    duplicateProbability: params.pick([0, 0.01]),
    packetsInFlightMax: PACKETS_IN_FLIGHT_MAX,
  }
  const faults: Faults = {
    crash: params.pick([0.005, 0.02]),
    crashInReady: params.pick([0, 0.002]),
    crashInCriticalReady: params.pick([0.05, 0.2]),
    isolateAtCriticalReady: params.pick([0.2, 0.5]),
    strandLeader: params.pick([0.1, 0.3]),
    moveIsolation: true,
    restart: params.pick([0.05, 0.2]),
    partition: params.pick([0, 0.01]),
    heal: params.pick([0.02, 0.05]),
    transfer: 0,
    campaign: params.pick([0, 0.01]),
    confChange: params.pick([0, 0.01]),
  }
  return { name: 'figure8', size, cluster, network, faults, workload: workload(0.4) }
}
