/**
 * The distkv wire protocol: length-prefixed binary frames over Unix sockets or TCP, spoken
 * by every role (local server, cluster proxy, store nodes, Raft transport). See docs/wire.md.
 */
export { PROTOCOL_VERSION } from './types.js'
export type {
  HelloInfo,
  PeerInfo,
  RequestContext,
  RequestOptions,
  StreamHandler,
  StreamOptions,
  UnaryHandler,
  WireAddress,
  WireClientOptions,
  WireServerOptions,
} from './types.js'
export { WireServer } from './server.js'
export { WireClient } from './client.js'
export { newRequestId } from './codec.js'
