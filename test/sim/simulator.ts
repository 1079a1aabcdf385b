/**
 * One simulated run (tigerbeetle's VOPR is the model): the seed picks the cluster's shape and
 * fault rates, then drives every event. A safety phase runs under faults (crashes at any point
 * of Ready processing, restarts, symmetric and one-way partitions, loss, delay, duplication,
 * reordering, membership changes, leadership transfers, snapshots and compaction) with the
 * invariants checked after every step; a liveness phase then heals every fault and requires a
 * leader and a newly proposed entry to commit within a bound of ticks. Finally the clients'
 * history must be linearizable.
 */
import { ErrorCode, KvError } from '../../src/errors.js'
import type { ConfChange } from '../../src/raft/index.js'
import { Checker, SimViolation } from './checkers.js'
import { CRASH_POINTS, Cluster, type ClusterOptions } from './cluster.js'
import { Network, type NetworkOptions } from './network.js'
import { Random } from './random.js'
import { Trace } from './trace.js'
import { Workload } from './workload.js'
import { TICK_UNITS, drawProfile, type Faults } from './profiles.js'

/** TICK_UNITS is re-exported from profiles.ts for the simulator's callers. */
export { TICK_UNITS }

/** RunOptions size one run. */
export interface RunOptions {
  /** safetyTicks: length of the faulty phase. */
  safetyTicks: number
  /** livenessElectionTimeouts: the liveness bound, in election timeouts after the heal. */
  livenessElectionTimeouts: number
  verbose?: boolean
  sink?: (line: string) => void
}

/** RUN_DEFAULTS is the run size used by `npm test` and the CLI. */
export const RUN_DEFAULTS: RunOptions = { safetyTicks: 300, livenessElectionTimeouts: 40 }

/** RunResult is what one seed did. */
export interface RunResult {
  seed: number
  violation: SimViolation | Error | undefined
  /** events: trace events (the simulator's steps). */
  events: number
  ticks: number
  traceDigest: string
  tail: string[]
  putsCompleted: number
  readsCompleted: number
  description: string
}

interface World {
  random: Random
  cluster: Cluster
  workload: Workload
  faults: Faults
  /** everMember: nodes that have been in the committed configuration, so are shut down once removed. */
  everMember: Set<number>
  nextId: number
  pendingConf: { index: number; at: number } | undefined
  electionTimeoutTicks: number
}

function buildWorld(seed: number, options: RunOptions, trace: Trace): { world: World; description: string } {
  const random = new Random(seed)
  // The profile's own stream: choosing it does not shift any draw of the streams below.
  const profile = drawProfile(new Random(seed).fork('profile'), random.fork('parameters'))
  const { size, faults } = profile
  const voters = Array.from({ length: size }, (_, i) => i + 1)
  const network = new Network(random.fork('network'), profile.network)
  const checker = new Checker()
  const cluster = new Cluster({ random: random.fork('cluster'), network, checker, trace, options: profile.cluster, voters })
  const workload = new Workload(cluster, random.fork('clients'), profile.workload)
  const world: World = { random: random.fork('faults'), cluster, workload, faults, everMember: new Set(voters), nextId: size + 1, pendingConf: undefined, electionTimeoutTicks: profile.cluster.electionTimeoutTicks }
  const description = `profile ${profile.name}, nodes ${size}, ${JSON.stringify(profile.cluster)}, network ${JSON.stringify(profile.network)}, faults ${JSON.stringify(faults)}, safetyTicks ${options.safetyTicks}`
  return { world, description }
}

/** isolate cuts `node` off from every other node; under `moveIsolation` the previous cut heals first. */
function isolate(world: World, node: number, why: string): void {
  const { cluster } = world
  if (world.faults.moveIsolation) cluster.network.heal()
  const rest = [...cluster.nodes.keys()].filter((id) => id !== node).sort((a, b) => a - b)
  cluster.network.partition([node], rest)
  cluster.trace.add(cluster.now, `isolate n${node} ${why}${world.faults.moveIsolation ? ' (other cuts healed)' : ''}`)
}

/**
 * strandLeader cuts off (or, one time in four, crashes) a leader whose log holds entries beyond
 * its commit index, so they stay on a minority: the first move of Figure 8. A crash also
 * restarts one down node, the way an isolation lets the previous victim back.
 */
function strandLeader(world: World): void {
  const { cluster, random } = world
  if (!random.chance(world.faults.strandLeader)) return
  const leader = cluster.leaders()[0]
  if (leader === undefined) return
  const status = cluster.status(leader)!
  if (status.lastIndex <= status.commit) return
  if (random.chance(0.75)) return isolate(world, leader, `with ${status.lastIndex - status.commit} entries past commit ${status.commit}`)
  cluster.crash(leader, `stranded with ${status.lastIndex - status.commit} entries past commit ${status.commit}`)
  const down = [...cluster.nodes.values()].filter((n) => n.raft === undefined && n.id !== leader).map((n) => n.id)
  if (down.length > 0) cluster.restart(random.pick(down))
}

/** advance runs one time unit: due packets, then ticks of the nodes whose tick falls on it. */
function advance(world: World): void {
  const { cluster } = world
  for (let due = cluster.network.nextDue(cluster.now); due !== undefined; due = cluster.network.nextDue(cluster.now)) {
    cluster.deliver(due.packet, due.dropped)
  }
  for (const id of cluster.up()) {
    if ((cluster.now + id * 3) % TICK_UNITS === 0) cluster.input(id, undefined, (r) => r.tick())
  }
}

/** crashAndRestart crashes a node (the leader half the time: the interesting victim) and restarts others. */
function crashAndRestart(world: World): void {
  const { cluster, random, faults } = world
  const up = cluster.up()
  if (up.length > 0 && random.chance(faults.crash)) {
    const leader = cluster.leaders()[0]
    cluster.crash(leader !== undefined && random.chance(0.5) ? leader : random.pick(up))
  }
  for (const node of cluster.nodes.values()) {
    if (node.raft === undefined && random.chance(faults.restart)) cluster.restart(node.id)
  }
}

/** partitionNetwork cuts links: isolates the leader, splits the nodes in two, or cuts one direction of one link. */
function partitionNetwork(world: World): void {
  const { cluster, random } = world
  const ids = [...cluster.nodes.keys()].sort((a, b) => a - b)
  if (ids.length < 2) return
  const kind = random.int(0, 2)
  const leader = cluster.leaders()[0]
  if (kind < 2) {
    const side = kind === 0 && leader !== undefined ? [leader] : random.shuffle([...ids]).slice(0, random.int(1, ids.length - 1))
    const rest = ids.filter((id) => !side.includes(id))
    cluster.network.partition(side, rest)
    cluster.trace.add(cluster.now, `partition ${side.join(',')} | ${rest.join(',')}`)
  } else {
    const [from, to] = random.shuffle([...ids])
    cluster.network.cutOneWay(from!, to!)
    cluster.trace.add(cluster.now, `cut one way ${from}->${to}`)
  }
}

function injectFaults(world: World): void {
  const { cluster, random, faults } = world
  crashAndRestart(world)
  if (random.chance(faults.partition)) partitionNetwork(world)
  if (random.chance(faults.heal)) {
    cluster.network.heal()
    cluster.trace.add(cluster.now, 'heal network')
  }
  const leader = cluster.leaders()[0]
  if (leader !== undefined && random.chance(faults.transfer)) {
    const voters = cluster.status(leader)!.confState.voters.filter((id) => id !== leader)
    if (voters.length > 0) {
      const to = random.pick(voters)
      cluster.input(leader, `transfer leadership to ${to}`, (r) => r.transferLeadership(to))
    }
  }
  const stillUp = cluster.up()
  if (stillUp.length > 0 && random.chance(faults.campaign)) cluster.input(random.pick(stillUp), 'campaign', (r) => r.campaign())
  if (random.chance(faults.confChange)) changeMembership(world)
}

/** changeMembership takes one step of add learner -> promote -> remove, one change at a time. */
function changeMembership(world: World): void {
  const { cluster, random } = world
  const leader = cluster.leaders()[0]
  if (leader === undefined) return
  const status = cluster.status(leader)!
  const applied = cluster.nodes.get(leader)!.sm!.applied
  if (world.pendingConf !== undefined && applied < world.pendingConf.index && cluster.now - world.pendingConf.at < 50 * TICK_UNITS) return
  const conf = status.confState
  if (conf.votersOutgoing.length > 0) return
  let change: ConfChange | undefined
  if (conf.learners.length > 0) {
    const learner = random.pick(conf.learners)
    const match = status.progress?.[learner]?.match ?? 0
    if (cluster.nodes.has(learner) && match + 5 >= status.commit) change = { type: 'addVoter', nodeId: learner }
  } else if (conf.voters.length > 3 && random.chance(0.6)) {
    const others = conf.voters.filter((id) => id !== leader)
    change = { type: 'removeNode', nodeId: random.chance(0.1) ? leader : random.pick(others) }
  } else if (conf.voters.length < 6 && world.nextId < 30) {
    const spare = [...cluster.nodes.keys()].find((id) => !world.everMember.has(id))
    const id = spare ?? world.nextId++
    if (spare === undefined) cluster.spawn(id)
    change = { type: 'addLearner', nodeId: id }
  }
  if (change === undefined) return
  let index: number | undefined
  cluster.input(leader, `propose ${change.type} ${change.nodeId}`, (r) => {
    const result = r.proposeConfChange(change)
    if (result.ok) index = result.index
  })
  if (index !== undefined) world.pendingConf = { index, at: cluster.now }
}

/** retireRemoved shuts down nodes the committed configuration no longer holds. */
function retireRemoved(world: World): void {
  const { cluster } = world
  const conf = cluster.latestConf.confState
  const members = new Set([...conf.voters, ...conf.learners, ...conf.votersOutgoing])
  for (const id of members) world.everMember.add(id)
  for (const id of [...cluster.nodes.keys()]) {
    if (world.everMember.has(id) && !members.has(id)) cluster.shutdown(id)
  }
}

function runSafety(world: World, ticks: number): void {
  const { cluster } = world
  const { crashInReady, crashInCriticalReady, isolateAtCriticalReady } = world.faults
  cluster.crashPlan = (_node, critical) => (world.random.chance(critical ? crashInCriticalReady : crashInReady) ? world.random.pick(CRASH_POINTS) : undefined)
  cluster.onCriticalReady = (node) => {
    if (world.random.chance(isolateAtCriticalReady)) isolate(world, node, 'at a critical Ready')
  }
  for (let tick = 0; tick < ticks; tick++) {
    for (let unit = 0; unit < TICK_UNITS; unit++, cluster.now++) advance(world)
    injectFaults(world)
    retireRemoved(world)
    world.workload.step()
    strandLeader(world)
    cluster.checkAfterStep()
  }
}

function runLiveness(world: World, options: RunOptions): void {
  const { cluster, workload } = world
  cluster.crashPlan = () => undefined
  cluster.onCriticalReady = () => undefined
  cluster.network.heal()
  cluster.network.setOptions({ delayMin: 1, delayMax: TICK_UNITS, lossProbability: 0, duplicateProbability: 0, packetsInFlightMax: 4096 })
  for (const node of cluster.nodes.values()) if (node.raft === undefined) cluster.restart(node.id)
  const healedAt = cluster.now
  cluster.trace.add(cluster.now, 'LIVENESS: all faults healed, every node up')
  const boundTicks = options.livenessElectionTimeouts * world.electionTimeoutTicks
  for (let tick = 0; tick < boundTicks; tick++) {
    for (let unit = 0; unit < TICK_UNITS; unit++, cluster.now++) advance(world)
    retireRemoved(world)
    workload.step()
    cluster.checkAfterStep()
    if (cluster.leaders().length > 0 && workload.lastCompletedPutCall >= healedAt) return
  }
  throw new SimViolation('liveness', `no leader with a newly committed proposal within ${boundTicks} ticks of healing (leaders: ${cluster.leaders().join(',') || 'none'}, up: ${cluster.up().join(',')})`, { boundTicks })
}

/** runSeed runs one seed end to end and reports what happened; it never throws for a violation. */
export function runSeed(seed: number, options: RunOptions = RUN_DEFAULTS): RunResult {
  if (!Number.isSafeInteger(options.safetyTicks) || options.safetyTicks < 0) {
    throw new KvError(ErrorCode.INVALID, `RunOptions.safetyTicks must be a non-negative integer`, { safetyTicks: options.safetyTicks })
  }
  const trace = new Trace(options.verbose === true && options.sink !== undefined ? { sink: options.sink } : {})
  const { world, description } = buildWorld(seed, options, trace)
  trace.add(0, `seed ${seed}: ${description}`)
  let violation: SimViolation | Error | undefined
  try {
    world.cluster.checkAfterStep()
    runSafety(world, options.safetyTicks)
    runLiveness(world, options)
    world.workload.checkLinearizable()
  } catch (error) {
    violation = error instanceof Error ? error : new Error(String(error))
  }
  return {
    seed,
    violation,
    events: trace.events,
    ticks: Math.floor(world.cluster.now / TICK_UNITS),
    traceDigest: trace.digest(),
    tail: trace.lines(),
    putsCompleted: world.workload.putsCompleted,
    readsCompleted: world.workload.readsCompleted,
    description,
  }
}

/** replayCommand is the one command that replays `seed`. */
export function replayCommand(seed: number): string {
  return `npm run sim -- --seeds 1 --from ${seed}`
}

/** formatFailure renders a failed run for humans: seed, invariant, trace tail and the replay command. */
export function formatFailure(result: RunResult): string {
  const v = result.violation!
  const invariant = v instanceof SimViolation ? v.invariant : 'coreError'
  const lines = [
    `SEED ${result.seed} FAILED: ${invariant}`,
    `  ${v instanceof SimViolation ? v.message : (v.stack ?? v.message)}`,
    `  run: ${result.description}`,
    `  trace tail (last ${result.tail.length} of ${result.events} events):`,
    ...result.tail.map((line) => `    ${line}`),
    `  replay: ${replayCommand(result.seed)}   (add --verbose for the full trace)`,
  ]
  return lines.join('\n')
}
