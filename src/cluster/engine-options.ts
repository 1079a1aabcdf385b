/** The RocksDB options of a cluster node (src/cluster/node.ts), shared with bench/raft's node processes. */
/**
 * nodeEngineOptions: the node's RocksDB tuning. File chunks (1 MiB values) go through the engine
 * twice per replica (Raft log entry, then applied data), and with level compaction every byte
 * flushed is rewritten by compactions on background threads, which cost as much CPU as the
 * node's JavaScript thread in a 4 MiB upload run. 64 MiB write buffers (a quarter of the
 * budget; two are merged per flush) let a log entry be written and deleted (nodeLogCompaction)
 * before its memtable is flushed, so it never reaches an SST file: ~30% less server CPU per
 * uploaded MiB (docs/cluster.md, "Engine and log settings for large values"). The cost is memory: two to three 64 MiB
 * memtables per busy node, at most six. (Written when the Raft log still lived in RocksDB; the
 * log files took it out since.) bench/raft's node processes open their engine with these too.
 */
export const nodeEngineOptions = Object.freeze({ cacheBytes: 32 * 1024 * 1024, memtableBudgetBytes: 256 * 1024 * 1024, backgroundThreads: 2 })
