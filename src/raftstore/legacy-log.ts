/**
 * The Raft state of a group as raftstore stored it before the log moved into log files
 * (log-files.ts): hard state, truncated state and log runs under the group's keys in the engine
 * (records.ts has the layout). `loadLegacyLog` reads it once, at the group's first open by a
 * newer build; EngineRaftStorage.open then writes it into the log files and deletes these keys
 * (`legacyKeysOps`), so every later open reads only the log files.
 *
 * Same repairs as before: a damaged run above the commit index is a torn tail and is dropped with
 * everything after it; damage at or below it, or in the hard or truncated state, is
 * KV_ERR_CORRUPTION.
 */
import { ErrorCode, KvError } from '../errors.js'
import type { Engine, EngineOp } from '../engine/engine.js'
import type { Entry, HardState } from '../raft/types.js'
import { emptyHardState } from '../raft/util.js'
import type { RecoveredGroup } from './log-files.js'
import * as records from './records.js'
import type { TruncatedState } from './records.js'

const LOAD_BATCH_RUNS = 256

export function corruption(groupId: number, message: string, details: Record<string, unknown> = {}): KvError {
  return new KvError(ErrorCode.CORRUPTION, `raft group ${groupId}: ${message}`, { groupId, ...details })
}

/** decodeState decodes one checksummed state record (fallback when absent); a damaged one is KV_ERR_CORRUPTION. */
function decodeState<T>(groupId: number, record: Buffer | undefined, name: string, decode: (record: Buffer) => T | undefined, fallback: T): T {
  if (record === undefined) return fallback
  const state = decode(record)
  if (state === undefined) throw corruption(groupId, `${name} record fails its checksum`)
  return state
}

/** readState reads one checksummed state record; a damaged one is KV_ERR_CORRUPTION. */
export async function readState<T>(engine: Engine, groupId: number, key: Buffer, name: string, decode: (record: Buffer) => T | undefined, fallback: T): Promise<T> {
  return decodeState(groupId, await engine.get(key), name, decode, fallback)
}

interface LoadedRuns {
  entries: Entry[]
  /** damagedAt is the first index that failed validation; undefined when the log is intact. */
  damagedAt: number | undefined
  keys: Buffer[]
}

/**
 * loadRuns reads a group's log runs in key order. The first run may start at or below the
 * compaction point; its compacted entries are skipped. Every later run must start where the
 * previous one ended, with non-decreasing terms.
 */
async function loadRuns(engine: Engine, groupId: number, truncated: TruncatedState): Promise<LoadedRuns> {
  const iterator = engine.iterator({ gte: records.entryKey(groupId, 0), lt: records.entryKey(groupId, Number.MAX_SAFE_INTEGER) })
  const loaded: LoadedRuns = { entries: [], damagedAt: undefined, keys: [] }
  let expected = truncated.index + 1
  let lastTerm = truncated.term
  try {
    for (;;) {
      const batch = await iterator.nextBatch(LOAD_BATCH_RUNS)
      if (batch.length === 0) break
      for (const [key, value] of batch) {
        loaded.keys.push(key)
        if (loaded.damagedAt !== undefined) continue
        const first = records.entryIndexFromKey(key)
        const run = first <= expected ? records.decodeRun(value, first) : undefined
        const live = run?.filter((entry) => entry.index > truncated.index)
        if (live !== undefined && (live.length === 0 || (live[0]!.index === expected && termsAscend(live, lastTerm)))) {
          for (const entry of live) loaded.entries.push(entry)
          if (live.length > 0) {
            lastTerm = live[live.length - 1]!.term
            expected = live[live.length - 1]!.index + 1
          }
          continue
        }
        loaded.damagedAt = expected
      }
    }
  } finally {
    await iterator.close()
  }
  return loaded
}

function termsAscend(entries: readonly Entry[], previousTerm: number): boolean {
  let term = previousTerm
  for (const entry of entries) {
    if (entry.term < term) return false
    term = entry.term
  }
  return true
}

/** LegacyLog is a group's state in the engine's old layout and the keys holding it. */
export interface LegacyLog {
  state: RecoveredGroup
  keys: Buffer[]
}

/** loadLegacyLog returns the group's state in the old layout, or undefined when the engine holds none. */
export async function loadLegacyLog(engine: Engine, groupId: number, logger?: (message: string, details: Record<string, unknown>) => void): Promise<LegacyLog | undefined> {
  const hsRecord = await engine.get(records.hardStateKey(groupId))
  const truncatedRecord = await engine.get(records.truncatedStateKey(groupId))
  const hardState: HardState = decodeState(groupId, hsRecord, 'hard state', records.decodeHardState, emptyHardState())
  const truncated = decodeState(groupId, truncatedRecord, 'truncated state', records.decodeTruncatedState, { index: 0, term: 0 })
  const loaded = await loadRuns(engine, groupId, truncated)
  if (hsRecord === undefined && truncatedRecord === undefined && loaded.keys.length === 0) return undefined
  if (loaded.damagedAt !== undefined) {
    if (loaded.damagedAt <= hardState.commit) throw corruption(groupId, `log entry ${loaded.damagedAt} is damaged at or below the commit index ${hardState.commit}`, { index: loaded.damagedAt, commit: hardState.commit })
    logger?.('raft log: dropping a torn tail', { groupId, from: loaded.damagedAt })
  }
  const keys = [records.hardStateKey(groupId), records.truncatedStateKey(groupId), ...loaded.keys]
  return { state: { hardState, truncated, entries: loaded.entries }, keys }
}

/** legacyKeysOps deletes the old-layout keys of a group (after its state was written to the log files). */
export function legacyKeysOps(legacy: LegacyLog): EngineOp[] {
  return legacy.keys.map((key) => ({ type: 'del' as const, key }))
}
