/**
 * raftstore: durable Raft storage on a shared engine and the multi-group driver
 * (Ready -> one batch, one fsync -> send -> apply). See docs/raftstore.md.
 */
export { RaftDriver, type ApplyOutput, type CompactionPolicy, type DriverLimits, type DriverOptions, type DriverStats, type StateMachine } from './driver.js'
export { DRIVER_DEFAULTS } from './options.js'
export { BOOTSTRAP_INDEX, EngineRaftStorage, type LogStorageOptions, type StagedWrite } from './log-storage.js'
export { RAFT_KEY_SPACE, groupPrefix, type AppliedState, type TruncatedState } from './records.js'
export { decodeEnvelopes, encodeEnvelopes, type RaftEnvelope } from './message-codec.js'
export { LoopbackNetwork, LoopbackTransport, groupByDestination, type Transport, type TransportHandler } from './transport.js'
export { TCP_TRANSPORT_DEFAULTS, TcpTransport, type TcpTransportLimits, type TcpTransportOptions } from './tcp-transport.js'
export { IntervalTicker, ManualTicker, type Ticker } from './ticker.js'
