/**
 * /metrics of a node's storage: where large values went (log pointers, blob files), the Raft log
 * files kept for the values that point into them, and what GC retired. Counters count since the
 * node started; the kept files on disk are counted at each scrape.
 */
import { Counter, Gauge, type Registry } from 'prom-client'
import type { BlobStats } from '../engine/blob-engine.js'
import { keptFileSize, keptFiles } from '../engine/log-values-gc.js'
import type { RaftLogFiles } from '../raftstore/log-files.js'

/** registerStorageMetrics adds the storage metrics of `engine` and `logFiles` (kept files in `keptDir`) to `registry`. */
export function registerStorageMetrics(registry: Registry, engine: { readonly stats: BlobStats }, logFiles: RaftLogFiles, keptDir: string): void {
  const counter = (name: string, help: string, read: () => number): void => {
    new Counter({
      name,
      help,
      registers: [registry],
      collect() {
        this.reset()
        this.inc(read())
      },
    })
  }
  counter('distkv_values_in_log_total', 'separated values written as pointers into the Raft log file holding them', () => engine.stats.pointedIntoLog)
  counter('distkv_values_in_blob_files_total', 'separated values appended to blob files (log values off, or not written by this node\'s log)', () => engine.stats.separated)
  counter('distkv_log_files_kept_total', 'Raft log files the log was done with but values pointed into: moved to log-values/ instead of deleted', () => logFiles.stats.filesKept)
  counter('distkv_log_value_files_retired_total', 'kept log files GC deleted (no live value, or the few live ones moved to blob files)', () => engine.stats.logFilesRetired)
  counter('distkv_blob_files_retired_total', 'blob files GC deleted', () => engine.stats.filesRetired)
  counter('distkv_storage_gc_errors_total', 'kept log files whose GC examination failed (left for a later run)', () => engine.stats.logGcErrors)
  new Gauge({
    name: 'distkv_log_value_files',
    help: 'kept Raft log files on disk (log-values/): count and bytes',
    labelNames: ['unit'],
    registers: [registry],
    async collect() {
      let count = 0
      let bytes = 0
      for (const file of await keptFiles(keptDir).catch(() => [] as number[])) {
        // A file GC deletes between the listing and its stat is simply not counted.
        const size = await keptFileSize(keptDir, file).catch(() => undefined)
        if (size === undefined) continue
        count++
        bytes += size
      }
      this.set({ unit: 'files' }, count)
      this.set({ unit: 'bytes' }, bytes)
    },
  })
}
