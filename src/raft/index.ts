/**
 * The Raft consensus core: a pure, synchronous state machine (etcd-io/raft design). See docs/raft.md.
 */
export * from './types.js'
export { RaftNode } from './node.js'
export { MemoryRaftStorage } from './memory-storage.js'
export { RAFT_DEFAULTS, resolveRaftConfig, type ResolvedRaftConfig } from './config.js'
export { ENTRY_OVERHEAD_BYTES, entryBytes, entriesBytes, limitSize } from './util.js'
