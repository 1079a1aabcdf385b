/**
 * The HTTP front end: `startHttpServer({ kv, host, port, cluster? })` (docs/http.md).
 */
export { startHttpServer, httpDefaults } from './server.js'
export type { HttpServerOptions, HttpServerHandle } from './server.js'
export { HttpMetrics } from './metrics.js'
export type { RaftGroupMetrics, RaftMetricsSource } from './metrics.js'
export type { ClusterView, ClusterNode, ClusterShard } from './cluster.js'
export { openApiDocument } from './openapi.js'
