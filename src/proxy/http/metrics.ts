/**
 * Prometheus metrics of one HTTP front end: request counts and latencies per route, bytes of
 * file traffic, and (pulled at scrape time from a callback the cluster code supplies) Raft
 * terms, commit and apply indexes, leader changes and per-shard sizes. Each server has its
 * own registry, so several servers in one process (tests) do not collide.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

/** eventLoopSampleMs: how often the event-loop lag metric samples the loop. */
export const eventLoopSampleMs = 100

/** RaftGroupMetrics is what the cluster code reports for one Raft group (the meta group or a shard) on this node. */
export interface RaftGroupMetrics {
  /** group: 'meta' or the shard id. */
  group: string
  term: number
  commitIndex: number
  appliedIndex: number
  /** leaderChanges: how many times this node saw the group's leader change (a counter). */
  leaderChanges: number
  isLeader: boolean
  /** sizeBytes / keys: the shard's approximate size, when known. */
  sizeBytes?: number
  keys?: number
}

/** RaftMetricsSource is called at each scrape; the cluster engineer passes one to startHttpServer. */
export type RaftMetricsSource = () => RaftGroupMetrics[] | Promise<RaftGroupMetrics[]>

/** HttpMetrics owns one registry and the metrics of one HTTP server. */
export class HttpMetrics {
  /** registry: register further metrics here (`registers: [metrics.registry]`) to have /metrics serve them. */
  readonly registry = new Registry()
  /** requestsTotal counts every request answered, for the cluster view's ops/s. */
  requestsTotal = 0
  private readonly requests: Counter<'route' | 'method' | 'status'>
  private readonly latency: Histogram<'route' | 'method'>
  private readonly fileBytes: Counter<'direction'>

  constructor(raft?: RaftMetricsSource) {
    // The event-loop lag histogram samples on a libuv timer: at prom-client's default 10 ms that
    // timer alone costs an idle node ~3.4 ms of CPU per second; every 100 ms is plenty for a
    // metric scraped every few seconds (its percentiles stay meaningful, at 10 samples/s).
    collectDefaultMetrics({ register: this.registry, prefix: 'distkv_', eventLoopMonitoringPrecision: eventLoopSampleMs })
    this.requests = new Counter({
      name: 'distkv_http_requests_total',
      help: 'HTTP requests answered, by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [this.registry],
    })
    this.latency = new Histogram({
      name: 'distkv_http_request_duration_seconds',
      help: 'HTTP request latency until the reply is finished, by route and method',
      labelNames: ['route', 'method'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
      registers: [this.registry],
    })
    this.fileBytes = new Counter({
      name: 'distkv_http_file_bytes_total',
      help: 'file content bytes received (in) and sent (out)',
      labelNames: ['direction'],
      registers: [this.registry],
    })
    if (raft !== undefined) this.registerRaft(raft)
  }

  /** observe records one finished request. */
  observe(route: string, method: string, status: number, seconds: number): void {
    this.requestsTotal++
    this.requests.inc({ route, method, status: String(status) })
    this.latency.observe({ route, method }, seconds)
  }

  /** countFileBytes adds file bytes moved in one direction. */
  countFileBytes(direction: 'in' | 'out', bytes: number): void {
    if (bytes > 0) this.fileBytes.inc({ direction }, bytes)
  }

  private registerRaft(source: RaftMetricsSource): void {
    // One scrape of the source feeds every Raft gauge: the first gauge collected fetches, the rest reuse it.
    let latest: Promise<RaftGroupMetrics[]> | undefined
    const snapshot = (): Promise<RaftGroupMetrics[]> => {
      latest ??= Promise.resolve(source()).finally(() => setImmediate(() => (latest = undefined)))
      return latest
    }
    const gauge = (name: string, help: string, pick: (g: RaftGroupMetrics) => number | undefined): void => {
      new Gauge({
        name,
        help,
        labelNames: ['group'],
        registers: [this.registry],
        async collect() {
          this.reset()
          for (const group of await snapshot()) {
            const value = pick(group)
            if (value !== undefined) this.set({ group: group.group }, value)
          }
        },
      })
    }
    gauge('distkv_raft_term', 'current Raft term of each group on this node', (g) => g.term)
    gauge('distkv_raft_commit_index', 'Raft commit index of each group on this node', (g) => g.commitIndex)
    gauge('distkv_raft_applied_index', 'Raft applied index of each group on this node', (g) => g.appliedIndex)
    gauge('distkv_raft_leader_changes', 'leader changes seen by this node, per group (monotonic)', (g) => g.leaderChanges)
    gauge('distkv_raft_is_leader', '1 when this node leads the group', (g) => (g.isLeader ? 1 : 0))
    gauge('distkv_shard_size_bytes', 'approximate bytes held by each shard', (g) => g.sizeBytes)
    gauge('distkv_shard_keys', 'approximate keys held by each shard', (g) => g.keys)
  }
}
