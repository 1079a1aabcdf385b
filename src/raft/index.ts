/**
 * The Raft consensus core: a pure, synchronous state machine (etcd-io/raft design). See docs/raft.md.
 */
export * from './types.js'
export { RaftNode, APPLY_BYTES_MAX_PER_READY, READ_CONTEXT_BYTES_MAX } from './node.js'
export { MemoryRaftStorage } from './memory-storage.js'
export { RAFT_DEFAULTS, resolveRaftConfig, type ResolvedRaftConfig } from './config.js'
export { encodeConfChange, decodeConfChange, applyConfChangeTo } from './confchange.js'
export { READ_INDEX_PENDING_MAX } from './read-only.js'
export { ENTRY_OVERHEAD_BYTES, entryBytes, entriesBytes, limitSize, SnapshotTemporarilyUnavailable } from './util.js'
