/**
 * Safety invariants of Raft, checked by the simulator after every step. The checker only sees
 * what an outside observer may see: each node's status, its disk (persisted log) and the
 * entries it applies, plus the clients' operations. Each method records an observation and
 * throws a SimViolation as soon as one contradicts an earlier one:
 * - electionSafety: at most one leader per term (Raft paper §5.2);
 * - logMatching: entries with the same index and term are identical and so are their prefixes
 *   (§5.3), checked as "same (index, term) ⇒ same data and same previous term" on every write;
 * - committedOverwritten / leaderCompleteness: a committed entry is never replaced, and every
 *   leader holds every entry committed before it was elected (§5.4);
 * - stateMachineSafety: no two nodes apply different entries at one index, and what is applied
 *   was committed, in order (§5.4.3);
 * - durability: nothing committed is lost: no quorum of the current voters lacks the highest
 *   committed entry on disk;
 * - staleRead / linearizability: a ReadIndex read sees every write committed before it began.
 */

/** Invariant names every property the checker enforces. */
export type Invariant =
  | 'electionSafety'
  | 'logMatching'
  | 'committedOverwritten'
  | 'leaderCompleteness'
  | 'stateMachineSafety'
  | 'durability'
  | 'staleRead'
  | 'linearizability'
  | 'liveness'

/** SimViolation is thrown when an invariant fails; the simulator prints it with the seed. */
export class SimViolation extends Error {
  readonly invariant: Invariant
  readonly details: Record<string, unknown>

  constructor(invariant: Invariant, message: string, details: Record<string, unknown> = {}) {
    super(`${invariant}: ${message}`)
    this.name = 'SimViolation'
    this.invariant = invariant
    this.details = details
  }
}

/** EntryRef is what the checker keeps of an entry: where it is and a digest of what it holds. */
export interface EntryRef {
  index: number
  term: number
  type: string
  data: Uint8Array
}

/** LogView is a read-only look at one node's persisted log (a MemoryRaftStorage satisfies it). */
export interface LogView {
  firstIndex(): number
  lastIndex(): number
  term(index: number): number
  entries(lo: number, hi: number, maxBytes: number): EntryRef[]
  snapshot(): { meta: { index: number; term: number } }
}

/** entrySignature identifies an entry's content; two entries with equal signatures are the same entry. */
export function entrySignature(entry: EntryRef): string {
  let h = 0x811c9dc5
  for (let i = 0; i < entry.data.length; i++) {
    h ^= entry.data[i]!
    h = Math.imul(h, 0x01000193)
  }
  return `${entry.term}/${entry.type}/${entry.data.length}/${(h >>> 0).toString(16)}`
}

function entryAt(log: LogView, index: number): EntryRef | undefined {
  if (index < log.firstIndex() || index > log.lastIndex()) return undefined
  return log.entries(index, index + 1, Number.MAX_SAFE_INTEGER)[0]
}

/** Checker accumulates observations of one simulated run and enforces the invariants. */
export class Checker {
  /** leaders maps term to the one node seen leading it. */
  private readonly leaders = new Map<number, number>()
  /** written maps "index/term" to the signature and previous term of the entry written there. */
  private readonly written = new Map<string, { signature: string; prevTerm: number }>()
  /** committed[i] is the signature of the entry committed at index i (undefined if not seen yet). */
  private readonly committed: (string | undefined)[] = []
  /** applied[i] is the signature of the entry some node applied at index i. */
  private readonly applied: (string | undefined)[] = []
  private readonly appliedByNode = new Map<number, number>()
  private readonly completenessChecked = new Set<string>()
  private readonly commitChecked = new Map<number, number>()
  // Invariant: maxCommit only grows; committed[1..maxCommit] are defined or pending discovery.
  maxCommit = 0

  /** observeRole records that `node` is in `role` at `term`; a second leader in a term is a violation. */
  observeRole(node: number, term: number, role: string, log?: LogView): void {
    if (role !== 'leader') return
    const other = this.leaders.get(term)
    if (other !== undefined && other !== node) {
      throw new SimViolation('electionSafety', `nodes ${other} and ${node} are both leaders of term ${term}`, { term, leaders: [other, node] })
    }
    this.leaders.set(term, node)
    const key = `${node}/${term}`
    if (log !== undefined && !this.completenessChecked.has(key)) {
      this.completenessChecked.add(key)
      this.checkLeaderCompleteness(node, term, log)
    }
  }

  private checkLeaderCompleteness(node: number, term: number, log: LogView): void {
    const snapIndex = log.snapshot().meta.index
    for (let i = Math.max(1, snapIndex + 1); i <= this.maxCommit; i++) {
      const want = this.committed[i]
      if (want === undefined) continue
      const have = entryAt(log, i)
      if (have === undefined || entrySignature(have) !== want) {
        throw new SimViolation('leaderCompleteness', `node ${node}, leader of term ${term}, lacks committed entry ${i} (${want}); has ${have ? entrySignature(have) : 'nothing'}`, { node, term, index: i })
      }
    }
  }

  /** committedSignature is the signature of the entry committed at `index`, if known. */
  committedSignature(index: number): string | undefined {
    return index <= this.maxCommit ? this.committed[index] : undefined
  }

  /**
   * observeWrite checks entries `node` just persisted; `log` is its disk after the write and
   * `replaced` maps an index to the signature of the committed entry it held before the write.
   * (A stale leader may well append at an index committed elsewhere: only losing a committed
   * entry a node already held is a violation.)
   */
  observeWrite(node: number, entries: readonly EntryRef[], log: LogView, replaced: ReadonlyMap<number, string> = new Map()): void {
    for (const entry of entries) {
      if (entry.index < log.firstIndex() || entry.index > log.lastIndex()) continue
      const signature = entrySignature(entry)
      const prevTerm = log.term(entry.index - 1)
      const key = `${entry.index}/${entry.term}`
      const seen = this.written.get(key)
      if (seen === undefined) this.written.set(key, { signature, prevTerm })
      else if (seen.signature !== signature || seen.prevTerm !== prevTerm) {
        throw new SimViolation('logMatching', `node ${node} wrote entry ${key} as ${signature} after prev term ${prevTerm}; elsewhere it is ${seen.signature} after prev term ${seen.prevTerm}`, { node, index: entry.index, term: entry.term })
      }
      const held = replaced.get(entry.index)
      if (held !== undefined && held !== signature) {
        throw new SimViolation('committedOverwritten', `node ${node} replaced committed entry ${held} at index ${entry.index} with ${signature}`, { node, index: entry.index })
      }
    }
  }

  /** observeCommit records `node`'s commit index and checks its committed prefix against everyone's. */
  observeCommit(node: number, commit: number, log: LogView): void {
    // Entries at or below a node's checked watermark cannot change without observeWrite failing first.
    const from = Math.max(log.firstIndex(), (this.commitChecked.get(node) ?? 0) + 1)
    const to = Math.min(commit, log.lastIndex())
    for (let i = from; i <= to; i++) {
      const signature = entrySignature(entryAt(log, i)!)
      const want = this.committed[i]
      if (want === undefined) this.committed[i] = signature
      else if (want !== signature) {
        throw new SimViolation('stateMachineSafety', `node ${node} has ${signature} committed at ${i}, another node ${want}`, { node, index: i })
      }
    }
    if (to > (this.commitChecked.get(node) ?? 0)) this.commitChecked.set(node, to)
    if (commit > this.maxCommit) this.maxCommit = commit
  }

  /** observeApply checks that `node` applies committed entries in order and agrees with every other node. */
  observeApply(node: number, entry: EntryRef): void {
    const last = this.appliedByNode.get(node) ?? 0
    if (entry.index !== last + 1) {
      throw new SimViolation('stateMachineSafety', `node ${node} applied index ${entry.index} right after ${last}`, { node, index: entry.index })
    }
    this.appliedByNode.set(node, entry.index)
    const signature = entrySignature(entry)
    const other = this.applied[entry.index]
    if (other !== undefined && other !== signature) {
      throw new SimViolation('stateMachineSafety', `node ${node} applied ${signature} at ${entry.index}, another node applied ${other}`, { node, index: entry.index })
    }
    this.applied[entry.index] = signature
    const want = this.committed[entry.index]
    if (entry.index > this.maxCommit || (want !== undefined && want !== signature)) {
      throw new SimViolation('stateMachineSafety', `node ${node} applied ${signature} at ${entry.index}, which is not the committed entry (${want ?? 'none'}, maxCommit ${this.maxCommit})`, { node, index: entry.index })
    }
  }

  /** observeRestore records that `node`'s state machine was reset to a snapshot at `index`. */
  observeRestore(node: number, index: number): void {
    this.appliedByNode.set(node, index)
  }

  /** checkDurability: the highest committed entry must be on enough disks that no quorum of `voters` lacks it. */
  checkDurability(voters: readonly number[], disks: ReadonlyMap<number, LogView>): void {
    const index = this.maxCommit
    const want = this.committed[index]
    if (index === 0 || want === undefined || voters.length === 0) return
    const lacking: number[] = []
    for (const voter of voters) {
      const log = disks.get(voter)
      if (log === undefined) {
        lacking.push(voter)
        continue
      }
      if (log.snapshot().meta.index >= index) continue
      const have = entryAt(log, index)
      if (have === undefined || entrySignature(have) !== want) lacking.push(voter)
    }
    const quorum = Math.floor(voters.length / 2) + 1
    if (lacking.length >= quorum) {
      throw new SimViolation('durability', `committed entry ${index} is missing from the disks of ${lacking.join(',')}, a quorum of voters ${voters.join(',')}`, { index, lacking })
    }
  }

  /** observeRead checks that a read served at `servedIndex` saw everything committed (`commitAtCall`) before it began. */
  observeRead(node: number, commitAtCall: number, servedIndex: number): void {
    if (servedIndex < commitAtCall) {
      throw new SimViolation('staleRead', `node ${node} served a read at applied index ${servedIndex}, but ${commitAtCall} was committed before the read began`, { node, commitAtCall, servedIndex })
    }
  }
}
