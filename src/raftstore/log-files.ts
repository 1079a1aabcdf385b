/**
 * RaftLogFiles: the Raft log of every group on a node in append-only files of its own
 * (raft-engine style), `DIR/NNNNNN.rlog`, numbered in creation order. Each driver iteration
 * appends ONE record holding all groups' entries and hard states and fdatasyncs once; RocksDB
 * keeps only applied state. The caller (EngineRaftStorage) keeps the whole uncompacted log in
 * memory, so the files are written during normal operation and read only at open (replay).
 * Format: log-files/codec.ts; replay and why garbage collection need not go in file order:
 * log-files/replay.ts.
 *
 * Preallocation: once the active file is half full, the next one is prepared in the background,
 * written full of zeros to fileBytesMax and fdatasynced, under a name replay ignores (so a small
 * or short-lived log, a test's or an idle dev cluster's, never costs fileBytesMax more). Appends
 * into it then change no file metadata (no new blocks, no new size), so their fdatasync writes the data and
 * flushes the disk without an ext4 journal commit, which would also have to write out every
 * other file's newly allocated dirty data (RocksDB's WAL, flushes and compactions on the same
 * disk) first. Measured on this project's host with a 150 MiB/s background writer: 1,184-1,905
 * write+fdatasync/s in place against 458-793 appending, p99 5-9 ms against 13-23 ms
 * (docs/raftstore.md, round 8). Replay takes zeros to the end of the last file as its end.
 * A file whose synced writes were large (preallocateSyncBytesMax, file chunks) gets no prepared
 * successor: there the zeros would double the disk's writes to save a cost paid per sync.
 *
 * Rotation: once the active file reached fileBytesMax, the next write syncs it (if it holds
 * unsynced bytes; a preallocated file is first cut to its records, so sealed files end at
 * their last record), names the prepared file as the next one (or creates an empty one when
 * none is ready; fsyncing the directory either way) and starts it with a checkpoint
 * of every live group (hard state, truncated state, last index), then rewrites into it the live
 * entries of idle groups (no entry in the file just sealed) that are small, so they do not pin
 * old files forever. GC: after a synced write, every file but the active one that holds no live
 * entry is unlinked (off the write path), once the records that killed its entries and the next
 * file's checkpoint are durable.
 *
 * Fault model: a crash can tear the last write (the tail of the last file: truncated at open,
 * with a warning); a disk can flip bits (KV_ERR_CORRUPTION naming file and offset at open). A
 * failed write or sync leaves the files' state unknown: every later call fails with that error.
 *
 * Unsynced records (write(..., false): a leader's commit-only hard state, a compaction) are held
 * in this process until the next synced write or sync, which writes them with its own record in
 * one write (an O_DSYNC one when the file holds no unsynced bytes: see flushFile), or close();
 * past logHeldBytesMax they are written at once, unsynced. A process crash may lose them, as a
 * power cut may lose any unsynced write.
 *
 * Power-loss model (powerLoss, as src/engine/blob-log.ts): appended records are held in this
 * process and written to the file only by the sync that makes them durable (whole, in order);
 * held bytes are bounded by powerLossCacheBytesMax (past it they are written back unsynced);
 * close() writes them back and crash() drops them, so SIGKILL loses exactly what no completed
 * sync covered. Directory entries are not modelled.
 */
import { closeSync, constants as fsConstants, writeSync, writevSync } from 'node:fs'
import { mkdir, readdir } from 'node:fs/promises'
import { randomUUID } from 'node:crypto'
import { join } from 'node:path'
import { ErrorCode, KvError, assert } from '../errors.js'
import { powerLossCacheBytesMax, powerLossFaultOn } from '../engine/power-loss.js'
import type { Entry, HardState } from '../raft/types.js'
import { LOG_FILE_HEADER_BYTES, dataByReferenceBytesMin, encodeRecord, itemBytes, recordBytes, referencedBytes, writeFileHeader, writeParts, type CheckpointGroup, type DataGap, type EncodableItem, type Placement } from './log-files/codec.js'
import { DirectStage, directOpenFlags, directWriteBytesMin, directWritesEnv, isAlignmentRefusal, tailAfter } from './log-files/direct.js'
import { closeAsync, fdatasyncAsync, fileSizeAsync, fsyncAsync, ftruncateAsync, openAsync, renameAsync, unlinkAsync, writeAllAsync, writevAllAsync } from './log-files/fs.js'
import { GroupTracker, checkRecords, type FileLiveness, type GroupState } from './log-files/groups.js'
import { replayFiles, type ReplayedGroup } from './log-files/replay.js'

export type LogRecord =
  | { type: 'hardState'; groupId: number; hardState: HardState }
  /** entries replace the group's log from entries[0].index on (a suffix conflict) or extend it; contiguous, at least one. */
  | { type: 'entries'; groupId: number; entries: readonly Entry[] }
  /** compact drops entries <= index; truncated becomes (index, term). index may be past the last entry (then the log is empty). */
  | { type: 'compact'; groupId: number; index: number; term: number }
  /** snapshot drops every entry; truncated becomes (index, term) (a snapshot was installed). */
  | { type: 'snapshot'; groupId: number; index: number; term: number }
  /** destroy forgets the group (its replica left this node). */
  | { type: 'destroy'; groupId: number }

/** RecoveredGroup is one group's durable Raft state as replayed at open. */
export interface RecoveredGroup {
  hardState: HardState // {term:0, vote:0, commit:0} if none was written
  truncated: { index: number; term: number } // {0,0} if none
  entries: Entry[] // contiguous, entries[0].index === truncated.index + 1 when non-empty
}

/** LogFilesOptions configure RaftLogFiles.open. */
export interface LogFilesOptions {
  dir: string // created if missing
  fileBytesMax?: number // rotate once the active file reaches this; default logFileBytesMaxDefault
  powerLoss?: boolean // power-loss model (module comment); default powerLossFaultOn()
  preallocate?: boolean // prepare each next file full of zeros in the background (module comment); default true
  directWrites?: boolean // large synced writes past the page cache (log-files/direct.ts); default true unless DISTKV_LOG_DIRECT_WRITES=off
  logger?: (level: 'info' | 'warn' | 'error', message: string, details: Record<string, unknown>) => void
  /** liveEntries returns a group's current in-memory log (truncated.index+1 .. last), used to rewrite idle groups that pin old files. */
  liveEntries?: (groupId: number) => readonly Entry[]
  // NB: liveEntries must return the entries as passed to write() so far (indexes are checked, terms and data are trusted); it is called inside write().
  /**
   * keepFile is asked, before a file without live entries is deleted, whether something else
   * still points into it (the applied state keeps large values in place: see locate()). A file
   * it keeps is moved into keptDir instead of being deleted; an error keeps it where it is.
   */
  keepFile?: (file: number) => Promise<boolean>
  /** keptDir: where kept files go (same file system as dir); required with keepFile. */
  keptDir?: string
  /**
   * locateBytesMin: locate() also knows entry data this long or longer that is copied into its
   * record (data written by reference, dataByReferenceBytesMin or more, is always known);
   * default dataByReferenceBytesMin. A node passes its blob threshold when values point into the log.
   */
  locateBytesMin?: number
}

/** DataLocation: where write() put an entry's data in the files (locate), and what makes it durable. */
export interface DataLocation {
  file: number
  /** offset: the file offset of the data's first byte. */
  offset: number
  /** durable: resolves once a completed sync covers the write; undefined when one already has. */
  durable: Promise<void> | undefined
}

/** LogFilesStats counts what the log did (tests, logs, benches). */
export interface LogFilesStats {
  writes: number
  syncs: number
  /** fdatasyncs: syncs made with fdatasync (the others were one O_DSYNC write; see flushFile). */
  fdatasyncs: number
  bytes: number
  files: number
  filesDeleted: number
  rewrites: number
  /** preallocated: files prepared full of zeros and taken into use at a rotation. */
  preallocated: number
  /** preallocationsSkipped: files whose successor was not preallocated because their synced writes were large (preallocateSyncBytesMax). */
  preallocationsSkipped: number
  /** bytesByReference: entry data written from the entries' own buffers, not copied (codec's dataByReferenceBytesMin). */
  bytesByReference: number
  /** filesKept: files without live entries that keepFile kept (moved into keptDir). */
  filesKept: number
  /** directWrites: synced writes made past the page cache (log-files/direct.ts). */
  directWrites: number
}

/** logFileBytesMaxDefault: size at which the active log file is sealed and the next one started. */
export const logFileBytesMaxDefault = 64 * 1024 * 1024
/** logFileBytesMaxLimit: the largest fileBytesMax accepted. */
export const logFileBytesMaxLimit = 1024 * 1024 * 1024
/** logFileBytesMaxMin: the smallest fileBytesMax accepted (tests use it to rotate often). */
export const logFileBytesMaxMin = 1024
/** logFilesMax: most log files one directory may hold (bounds the replay and the file table). */
export const logFilesMax = 100_000
/** logWritesInFlightMax: most write()/sync() calls queued behind the one running (KV_ERR_UNAVAILABLE past it). */
export const logWritesInFlightMax = 4096
/** logScratchBytesMax: the largest encode buffer kept for reuse between writes. */
export const logScratchBytesMax = 4 * 1024 * 1024
/** logHeldBytesMax: unsynced appends held in memory for the next synced write (no power-loss model); past it they are written at once, unsynced. */
export const logHeldBytesMax = 1024 * 1024
/** logRewriteFraction: an idle group's live entries are rewritten at rotation when they take less than fileBytesMax / this. */
export const logRewriteFraction = 16
/**
 * preallocateSyncBytesMax: a file whose synced writes average this many bytes or more does not
 * get its successor preallocated. Zeros double every log byte the disk writes, and what they
 * save, a journal commit per fdatasync, is a fixed cost per sync: large when syncs are small and
 * many (Raft entries of a few KiB, ~40 KiB per sync), noise beside a sync that writes MiBs (file
 * chunks). Measured, 4 MiB uploads through 3 replicas (the disk's own counter): ~8 bytes written
 * per byte uploaded when every file was preallocated, 6.3-6.4 with this rule, 6.0 with none, at
 * the same upload rate (docs/raftstore.md, round 10).
 */
export const preallocateSyncBytesMax = 256 * 1024

const FILE_NAME = /^(\d{6,10})\.rlog$/
/**
 * PREPARED: the next file while it is being preallocated, `next-<unique>.rlog-prepared`; it
 * becomes NNNNNN.rlog at the rotation that takes it. Every preparation has a name of its own, so
 * a job never opens (and truncates) a file another one is renaming into the log, and a job of a
 * crashed instance (tests) cannot touch the next instance's file.
 */
const PREPARED = /^next-[\w-]+\.rlog-prepared$/
const preparedName = () => `next-${randomUUID()}.rlog-prepared`
/** ZERO_CHUNK: what a prepared file is written with, a chunk at a time. */
const ZERO_CHUNK = Buffer.alloc(1024 * 1024)
/** PREPARE_SYNC_CHUNKS: a preparation fdatasyncs after every this many zero chunks (4 MiB). */
const PREPARE_SYNC_CHUNKS = 4
const EMPTY = Buffer.alloc(0)

/** fileName is the name of log file number `file` (also in keptDir). */
export function fileName(file: number): string {
  return `${String(file).padStart(6, '0')}.rlog`
}

/** LogFile is one file of the log. Invariant: held (power-loss model) is contiguous and ends at size; written + held bytes === size once every queued job ran. */
interface LogFile extends FileLiveness {
  number: number
  /** fd: -1 until the write that creates it ran, and for sealed files replayed at open. */
  fd: number
  /**
   * syncFd: a second descriptor of the active file opened with O_DSYNC (-1 if none: sealed
   * files, the power-loss model). A sync of a file whose written bytes are all synced writes
   * the held records through it: one write that returns once its bytes (and the file's size,
   * if it grew) are durable, which is what write + fdatasync give then, in one trip to libuv's
   * pool instead of two (see flushFile).
   */
  syncFd: number
  /** directFd: the active file's O_DIRECT | O_DSYNC descriptor, opened by its first direct write (-1 if none). */
  directFd: number
  /** tail: the file's bytes from the aligned offset below `written` to it (a direct write rewrites them); undefined while unknown. */
  tail: Buffer | undefined
  /** size: bytes appended, counted when write() is called (the rotation decision). */
  size: number
  /** written: bytes in the file (excluding held ones). */
  written: number
  /** createdSeq: the write that started this file (its checkpoint); 0 for files found at open. */
  createdSeq: number
  /** preallocated: the file is longer than its records (zeros after them); cut to its records when sealed. */
  preallocated: boolean
  /** syncedWrites: synced writes into this file since it was opened (their mean size decides preallocation). */
  syncedWrites: number
  /** preallocationSkipped: the successor of this file was not preallocated (preallocateSyncBytesMax). */
  preallocationSkipped: boolean
  needsHeader: boolean
  /** unsynced: bytes appended (held or written), or a truncation, that no completed sync covers. */
  unsynced: boolean
  /** dirty: changes made through the plain descriptor (writes, a truncation) that no completed sync covers (so the next sync needs fdatasync). */
  dirty: boolean
  /** held: appended records not in the file yet (append, flushFile), as writev parts; heldBytes: their total length. */
  held: Buffer[]
  heldBytes: number
  /** owned: the encode buffers among the held parts (the others are entry data written by reference), reused once written. */
  owned: Buffer[]
}

/** RaftLogFiles is the node's Raft log in files (module comment). */
export class RaftLogFiles {
  readonly stats: LogFilesStats = { writes: 0, syncs: 0, fdatasyncs: 0, bytes: 0, files: 0, filesDeleted: 0, rewrites: 0, preallocated: 0, preallocationsSkipped: 0, bytesByReference: 0, filesKept: 0, directWrites: 0 }
  readonly dir: string
  readonly fileBytesMax: number
  readonly powerLoss: boolean
  readonly preallocate: boolean
  readonly #logger: NonNullable<LogFilesOptions['logger']>
  readonly #liveEntries: LogFilesOptions['liveEntries']
  /** #files: every file, in number order (Map insertion order). */
  readonly #files = new Map<number, LogFile>()
  readonly #tracker: GroupTracker
  #recovered: Map<number, ReplayedGroup>
  #dirFd: number
  #active: LogFile
  /** #issued: write()/sync() calls made; #synced: the latest one a completed sync covers. Invariant: #synced <= #issued. */
  #issued = 0
  #synced = 0
  #inFlight = 0
  #tail: Promise<void> = Promise.resolve()
  #unlinking: Promise<void> = Promise.resolve()
  #failed: unknown
  #closed = false
  #crashed = false
  #heldBytes = 0
  /** #scratch: an encode buffer no write uses now, reused so a write does not allocate (and free) ~40 KiB each time. */
  #scratch: Buffer | undefined
  /** #prepared: the next file once it is fully preallocated and synced; #preparing: the job making it. */
  #prepared: { fd: number; path: string } | undefined
  #preparing: Promise<void> = Promise.resolve()
  /** #preparedFor: the active file for which the next one was asked for (once per file). */
  #preparedFor = 0
  /** #locations: where each entry data written by reference went (locate); keyed by the data itself, so it lives as long as the entry. */
  readonly #locations = new WeakMap<Uint8Array, { file: number; offset: number; seq: number }>()
  /** #syncWaiters: durable() promises waiting for a sync to cover their write, in seq order. */
  #syncWaiters: Array<{ seq: number; resolve: () => void; reject: (error: unknown) => void }> = []
  readonly #keepFile: LogFilesOptions['keepFile']
  readonly #keptDir: string | undefined
  readonly #locateBytesMin: number
  /** #direct: the staging memory of direct writes; undefined when they are off (option, or refused once by the file system). */
  #direct: DirectStage | undefined

  private constructor(options: LogFilesOptions, dirFd: number, recovered: Map<number, ReplayedGroup>) {
    this.dir = options.dir
    this.fileBytesMax = options.fileBytesMax ?? logFileBytesMaxDefault
    this.powerLoss = options.powerLoss ?? powerLossFaultOn()
    this.preallocate = options.preallocate ?? true
    this.#logger = options.logger ?? (() => {})
    this.#liveEntries = options.liveEntries
    this.#keepFile = options.keepFile
    this.#keptDir = options.keptDir
    this.#locateBytesMin = Math.max(1, options.locateBytesMin ?? dataByReferenceBytesMin)
    this.#direct = !this.powerLoss && (options.directWrites ?? process.env[directWritesEnv] !== 'off') ? new DirectStage() : undefined
    this.#dirFd = dirFd
    this.#recovered = recovered
    this.#tracker = new GroupTracker((file) => this.#files.get(file)!)
    this.#active = undefined as unknown as LogFile // set by open before any use
  }

  /** open replays every file (repairing a torn tail of the last one) and appends to the last file. */
  static async open(options: LogFilesOptions): Promise<RaftLogFiles> {
    const fileBytesMax = options.fileBytesMax ?? logFileBytesMaxDefault
    if (!Number.isSafeInteger(fileBytesMax) || fileBytesMax < logFileBytesMaxMin || fileBytesMax > logFileBytesMaxLimit) {
      throw new KvError(ErrorCode.INVALID, `fileBytesMax must be an integer in [${logFileBytesMaxMin}, ${logFileBytesMaxLimit}] (logFileBytesMaxLimit)`, { fileBytesMax })
    }
    if ((options.keepFile === undefined) !== (options.keptDir === undefined)) throw new KvError(ErrorCode.INVALID, 'keepFile and keptDir go together', { dir: options.dir })
    await mkdir(options.dir, { recursive: true })
    if (options.keptDir !== undefined) await mkdir(options.keptDir, { recursive: true })
    const numbers = (await readdir(options.dir)).map((name) => FILE_NAME.exec(name)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b)
    if (numbers.length > logFilesMax) throw new KvError(ErrorCode.UNAVAILABLE, `raft log directory holds more than logFilesMax (${logFilesMax}) files`, { dir: options.dir, files: numbers.length })
    const { groups, sizes, headerMissing } = await replayFiles(numbers.map((number) => join(options.dir, fileName(number))), numbers, options.logger)
    const log = new RaftLogFiles(options, await openAsync(options.dir, 'r'), groups)
    // A new log numbers its first file after every kept one: a number names one file for good.
    const kept = options.keptDir === undefined ? [] : (await readdir(options.keptDir)).map((name) => FILE_NAME.exec(name)).filter((m) => m !== null).map((m) => Number(m[1]))
    await log.start(numbers, sizes, headerMissing, kept.reduce((max, number) => Math.max(max, number), 0) + 1)
    return log
  }

  /** start sets up the file table and group state after replay, and opens (or creates) the active file. */
  private async start(numbers: number[], sizes: number[], headerMissing: boolean, firstNumber: number): Promise<void> {
    numbers.forEach((number, i) => this.addFile(number, sizes[i]!, 0))
    if (numbers.length === 0) this.addFile(firstNumber, 0, 0)
    this.#active = [...this.#files.values()].pop()!
    this.#active.needsHeader = numbers.length === 0 || headerMissing
    // A file without its header has no checkpoint yet: the files before it must stay until one is durable.
    if (this.#active.needsHeader) this.#active.createdSeq = Number.MAX_SAFE_INTEGER
    this.#active.fd = await openAsync(this.path(this.#active.number), numbers.length === 0 ? 'wx+' : 'r+')
    await this.openSyncFd(this.#active)
    this.#active.preallocated = (await fileSizeAsync(this.#active.fd)) > this.#active.size
    if (numbers.length === 0) await fsyncAsync(this.#dirFd)
    // What a crashed process left in the page cache is durable from here on (GC relies on it).
    await fdatasyncAsync(this.#active.fd)
    for (const [groupId, group] of this.#recovered) {
      const last = group.entries.length > 0 ? group.entries[group.entries.length - 1]!.index : group.truncated.index
      this.#tracker.adopt(groupId, { hardState: group.hardState, truncated: group.truncated, last, runs: group.runs })
    }
    this.collect()
    // A prepared file left by an earlier process may be incomplete: start again when needed.
    for (const name of await readdir(this.dir)) if (PREPARED.test(name)) await unlinkAsync(join(this.dir, name))
  }

  private addFile(number: number, size: number, createdSeq: number): LogFile {
    const file: LogFile = { number, fd: -1, syncFd: -1, directFd: -1, tail: size === 0 ? Buffer.alloc(0) : undefined, size, written: size, createdSeq, preallocated: false, syncedWrites: 0, preallocationSkipped: false, needsHeader: true, unsynced: false, dirty: false, held: [], heldBytes: 0, owned: [], liveRuns: 0, deadSeq: createdSeq }
    this.#files.set(number, file)
    this.stats.files = this.#files.size
    return file
  }

  private path(number: number): string {
    return join(this.dir, fileName(number))
  }

  /** activeFile is the number of the file appends go to (tests, logs). */
  get activeFile(): number {
    return this.#active.number
  }

  /** prepared resolves once the next file's preallocation started so far is done (tests). */
  prepared(): Promise<void> {
    return this.#preparing
  }

  /** unlinked resolves once every file deletion started so far is done (they run off the write path). */
  unlinked(): Promise<void> {
    return this.#unlinking
  }

  /** takeRecovered hands over (and forgets) the state replayed at open for one group; undefined if the log never saw it. */
  takeRecovered(groupId: number): RecoveredGroup | undefined {
    const group = this.#recovered.get(groupId)
    if (group === undefined) return undefined
    this.#recovered.delete(groupId)
    return { hardState: group.hardState, truncated: group.truncated, entries: group.entries }
  }

  /** recoveredGroupIds: the groups replayed at open that were not taken yet. */
  recoveredGroupIds(): number[] {
    return [...this.#recovered.keys()]
  }

  /**
   * write appends ONE framed record holding `records` (in order) and, if sync, fdatasyncs before
   * resolving. Calls are serialised in call order. The records are checked, encoded and applied
   * to the group state now (so a later call sees them); the I/O runs in the queue.
   */
  write(records: readonly LogRecord[], sync: boolean): Promise<void> {
    try {
      return this.writeNow(records, sync)
    } catch (error) {
      return Promise.reject(error)
    }
  }

  /** writeNow is write() with its checks throwing (write turns them into a rejection). */
  private writeNow(records: readonly LogRecord[], sync: boolean): Promise<void> {
    this.checkUsable()
    checkRecords(records, this.#tracker.groups)
    // Sized before anything changes: a record past logRecordBytesMax fails the call alone.
    let size = records.length > 0 ? recordBytes(records) : 0
    const seq = ++this.#issued
    this.stats.writes++
    let file = this.#active
    const sealed = file.size >= this.fileBytesMax ? file : undefined
    if (sealed !== undefined) file = this.startFile(seq)
    const prefix = file.needsHeader ? this.headerItems(sealed, records) : []
    if (file.needsHeader) size += LOG_FILE_HEADER_BYTES
    for (const items of prefix) size += recordBytes(items)
    // Large entry data is not copied (encodeRecord's gaps): the buffer holds everything else.
    let referenced = referencedBytes(records)
    for (const items of prefix) referenced += referencedBytes(items)
    this.stats.bytesByReference += referenced
    const buffer = size > 0 ? this.encodeBuffer(size - referenced) : EMPTY
    const gaps: DataGap[] = []
    const placement: Placement | undefined = this.#locateBytesMin < dataByReferenceBytesMin ? { bytesMin: this.#locateBytesMin, placed: [] } : undefined
    let offset = file.needsHeader ? writeFileHeader(buffer, 0) : 0
    for (const items of prefix) offset = encodeRecord(buffer, items, offset, gaps, placement)
    if (records.length > 0) encodeRecord(buffer, records, offset, gaps, placement)
    for (const items of prefix.slice(1)) this.#tracker.apply(items[0] as LogRecord, file.number, seq)
    for (const record of records) this.#tracker.apply(record, file.number, seq)
    if (file.needsHeader) file.createdSeq = seq
    file.needsHeader = false
    const position = file.size
    this.noteLocations(gaps, placement, file.number, position, seq)
    file.size += size
    this.stats.bytes += size
    if (sync) file.syncedWrites++
    if (this.preallocate && file.size >= this.fileBytesMax / 2 && this.#preparedFor !== file.number) {
      if (file.size / Math.max(1, file.syncedWrites) < preallocateSyncBytesMax) {
        this.#preparedFor = file.number
        this.prepareNext()
      } else if (!file.preallocationSkipped) {
        file.preallocationSkipped = true
        this.stats.preallocationsSkipped++
      }
    }
    return this.enqueue(async () => {
      if (sealed !== undefined) {
        await this.sealFile(sealed)
        await this.closeSyncFd(sealed)
      }
      if (file.fd < 0) await this.createFile(file)
      if (size > 0) await this.append(file, writeParts(buffer, gaps), buffer, position, sync)
      if (sync) await this.completeSync(file, seq)
    })
  }

  /** noteLocations remembers where entry data lands in the file: its place in the buffer plus the data of the gaps writeParts inserts before it. */
  private noteLocations(gaps: readonly DataGap[], placement: Placement | undefined, file: number, position: number, seq: number): void {
    // Every Raft write passes here; small entries (no gaps, nothing placed) cost nothing.
    if (gaps.length === 0 && (placement === undefined || placement.placed.length === 0)) return
    // inserted[i]: the bytes of gaps 0..i-1.
    const inserted = [0]
    for (const gap of gaps) {
      this.#locations.set(gap.data, { file, offset: position + inserted[inserted.length - 1]! + gap.at, seq })
      inserted.push(inserted[inserted.length - 1]! + gap.data.byteLength)
    }
    for (const { at, data, gapsBefore } of placement?.placed ?? []) this.#locations.set(data, { file, offset: position + inserted[gapsBefore]! + at, seq })
  }

  /**
   * locate tells where write() put `data`, an entry's data of at least locateBytesMin (or written
   * by reference), and when those bytes are durable; undefined for shorter data and for entries
   * replayed at open. The last write of the same buffer wins. The bytes stay at
   * that place for good: a file is only ever appended to, and one that keepFile keeps moves
   * whole into keptDir under its own name.
   */
  locate(data: Uint8Array): DataLocation | undefined {
    const location = this.#locations.get(data)
    if (location === undefined) return undefined
    return { file: location.file, offset: location.offset, durable: this.durable(location.seq) }
  }

  /** durable resolves once a completed sync covers write `seq` (undefined if one has), or rejects when the log fails first. */
  private durable(seq: number): Promise<void> | undefined {
    if (seq <= this.#synced) return undefined
    if (this.#failed !== undefined) return Promise.reject(this.#failed)
    return new Promise((resolve, reject) => {
      const waiters = this.#syncWaiters
      // Almost always the latest write: appended at the end, kept in seq order.
      let at = waiters.length
      while (at > 0 && waiters[at - 1]!.seq > seq) at--
      waiters.splice(at, 0, { seq, resolve, reject })
    })
  }

  /** settleWaiters resolves the durable() promises #synced covers, or rejects them all with `error`. */
  private settleWaiters(error?: unknown): void {
    const waiters = this.#syncWaiters
    if (waiters.length === 0) return
    let done = 0
    if (error !== undefined) done = waiters.length
    else while (done < waiters.length && waiters[done]!.seq <= this.#synced) done++
    if (done === 0) return
    const settled = waiters.splice(0, done)
    for (const waiter of settled) {
      if (error !== undefined) waiter.reject(error)
      else waiter.resolve()
    }
  }

  /** encodeBuffer returns a buffer of `size` bytes: the scratch buffer when free and large enough, else a new one. */
  private encodeBuffer(size: number): Buffer {
    const scratch = this.#scratch
    if (scratch !== undefined && scratch.length >= size) {
      this.#scratch = undefined
      return scratch.subarray(0, size)
    }
    // Slow: a buffer of its own, never a slice of Node's shared pool, so it can be kept and reused.
    return Buffer.allocUnsafeSlow(size)
  }

  /** releaseBuffer keeps a written buffer for the next write (the larger one, up to logScratchBytesMax); the power-loss model keeps its buffers. */
  private releaseBuffer(buffer: Buffer): void {
    if (this.powerLoss || buffer.buffer.byteLength > logScratchBytesMax) return
    if (this.#scratch === undefined || buffer.buffer.byteLength > this.#scratch.length) this.#scratch = Buffer.from(buffer.buffer)
  }

  /** sync makes everything written so far durable. */
  sync(): Promise<void> {
    try {
      this.checkUsable()
    } catch (error) {
      return Promise.reject(error)
    }
    const seq = ++this.#issued
    const file = this.#active
    return this.enqueue(() => this.completeSync(file, seq))
  }

  /** close (clean): waits for queued writes, writes back what the power-loss model holds, syncs, closes the descriptors. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    await this.#tail
    await this.#preparing
    try {
      const active = this.#active
      if (this.#failed === undefined && active.fd >= 0) {
        // Written back first, then synced: a clean close leaves nothing held and everything durable.
        this.writeBack(active)
        if (active.unsynced) await fdatasyncAsync(active.fd)
        active.unsynced = false
        this.#synced = this.#issued
        this.settleWaiters()
      }
    } finally {
      this.settleWaiters(this.#failed ?? new KvError(ErrorCode.CLOSED, 'raft log closed', { dir: this.dir }))
      await this.#unlinking
      const prepared = this.#prepared
      this.#prepared = undefined
      if (prepared !== undefined) {
        await closeAsync(prepared.fd).catch(() => undefined)
        await unlinkAsync(prepared.path).catch(() => undefined)
      }
      for (const file of this.#files.values()) {
        if (file.fd >= 0) await closeAsync(file.fd).catch(() => undefined)
        await this.closeSyncFd(file).catch(() => undefined)
      }
      await closeAsync(this.#dirFd).catch(() => undefined)
      for (const file of this.#files.values()) file.fd = -1
    }
  }

  /** crash (tests, power-loss model only): drops every held (unsynced) append and closes, as a power cut would. */
  crash(): void {
    if (!this.powerLoss) throw new KvError(ErrorCode.INVALID, 'crash() needs the power-loss model (powerLoss: true)', { dir: this.dir })
    if (this.#closed) return
    this.#closed = true
    this.#crashed = true
    this.#failed ??= new KvError(ErrorCode.UNAVAILABLE, 'raft log crashed', { dir: this.dir })
    this.settleWaiters(this.#failed)
    for (const file of this.#files.values()) {
      this.#heldBytes -= file.heldBytes
      file.held = []
      file.heldBytes = 0
      file.owned = []
      if (file.fd >= 0) closeSync(file.fd)
      if (file.syncFd >= 0) closeSync(file.syncFd)
      if (file.directFd >= 0) closeSync(file.directFd)
      file.fd = -1
      file.syncFd = -1
      file.directFd = -1
    }
    if (this.#prepared !== undefined) closeSync(this.#prepared.fd)
    this.#prepared = undefined
    closeSync(this.#dirFd)
  }

  private checkUsable(): void {
    if (this.#closed) throw new KvError(ErrorCode.UNAVAILABLE, 'raft log is closed', { dir: this.dir })
    if (this.#failed !== undefined) throw this.#failed
    if (this.#inFlight >= logWritesInFlightMax) {
      throw new KvError(ErrorCode.UNAVAILABLE, `raft log has logWritesInFlightMax (${logWritesInFlightMax}) writes queued`, { dir: this.dir })
    }
  }

  /** enqueue runs `job` after every earlier one; the first failure fails every later job (the files' state is unknown). */
  private enqueue(job: () => Promise<void>): Promise<void> {
    this.#inFlight++
    const run = async () => {
      try {
        if (this.#failed !== undefined) throw this.#failed
        await job()
      } catch (error) {
        this.#failed ??= error
        this.settleWaiters(this.#failed)
        throw error
      } finally {
        this.#inFlight--
      }
    }
    const done = this.#tail.then(run)
    this.#tail = done.catch(() => undefined)
    return done
  }

  /** startFile makes the next file the active one (created on disk by the queued write). */
  private startFile(seq: number): LogFile {
    if (this.#files.size >= logFilesMax) throw new KvError(ErrorCode.UNAVAILABLE, `raft log holds logFilesMax (${logFilesMax}) files`, { dir: this.dir })
    const file = this.addFile(this.#active.number + 1, 0, seq)
    this.#active = file
    return file
  }

  /**
   * headerItems are the records that open a file: a checkpoint of every live group, then (at a
   * rotation away from `sealed`) one entries record per idle group being rewritten.
   */
  private headerItems(sealed: LogFile | undefined, records: readonly LogRecord[]): EncodableItem[][] {
    const groups: CheckpointGroup[] = []
    for (const [groupId, group] of this.#tracker.groups) groups.push({ groupId, hardState: group.hardState, truncated: group.truncated, last: group.last })
    const items: EncodableItem[][] = [[{ type: 'checkpoint', groups }]]
    if (sealed === undefined || this.#liveEntries === undefined) return items
    // A group this write touches is not idle, and the caller's memory may already hold this write's entries.
    const touched = new Set(records.map((record) => record.groupId))
    for (const [groupId, group] of this.#tracker.groups) {
      const idle = group.runs.length > 0 && !touched.has(groupId) && !group.runs.some((run) => run.file === sealed.number)
      const entries = idle ? this.rewritable(groupId, group) : undefined
      if (entries === undefined) continue
      items.push([{ type: 'entries', groupId, entries }])
      this.stats.rewrites++
    }
    return items
  }

  /** rewritable returns an idle group's live entries from liveEntries() if they are small and match what the files hold. */
  private rewritable(groupId: number, group: GroupState): readonly Entry[] | undefined {
    const all = this.#liveEntries!(groupId)
    const first = group.truncated.index + 1
    const at = all.length > 0 ? first - all[0]!.index : -1
    const entries = at >= 0 ? all.slice(at, at + group.last - group.truncated.index) : []
    if (entries.length !== group.last - group.truncated.index || entries[0]?.index !== first || entries[entries.length - 1]!.index !== group.last) {
      this.#logger('warn', 'raft log: liveEntries() does not match the log files; group not rewritten', { groupId, truncated: group.truncated.index, last: group.last })
      return undefined
    }
    return itemBytes({ type: 'entries', groupId, entries }) < this.fileBytesMax / logRewriteFraction ? entries : undefined
  }

  private async createFile(file: LogFile): Promise<void> {
    const prepared = this.#prepared
    this.#prepared = undefined
    if (prepared !== undefined) {
      // Its zeros and blocks are durable (prepareNext synced it); the rename is, with the directory's fsync below.
      await renameAsync(prepared.path, this.path(file.number))
      file.fd = prepared.fd
      file.preallocated = true
      this.stats.preallocated++
    } else {
      file.fd = await openAsync(this.path(file.number), 'wx+')
    }
    if (this.#closed) {
      closeSync(file.fd)
      file.fd = -1
      throw new KvError(ErrorCode.UNAVAILABLE, 'raft log is closed', { dir: this.dir })
    }
    await this.openSyncFd(file)
    await fsyncAsync(this.#dirFd)
    this.#logger('info', `raft log: started ${fileName(file.number)}${prepared !== undefined ? ' (preallocated)' : ''}`, { file: file.number })
    // The write that started this file may have asked for the next one already, while the one
    // just taken was still there (the job then did nothing): ask again.
    if (this.#preparedFor === file.number) this.prepareNext()
  }

  /**
   * prepareNext writes the next file full of zeros (fileBytesMax) and fdatasyncs it, off the
   * write path, under a PREPARED name of its own (asked for once the active file is half full);
   * createFile takes it if it is ready by the next rotation, else creates an empty file as
   * before. A failure only costs the preallocation (a warning).
   */
  private prepareNext(): void {
    if (!this.preallocate || this.#closed) return
    this.#preparing = this.#preparing.then(async () => {
      if (this.#closed || this.#prepared !== undefined) return
      const path = join(this.dir, preparedName())
      let fd = -1
      try {
        fd = await openAsync(path, 'w+')
        for (let at = 0; at < this.fileBytesMax && !this.#closed; at += ZERO_CHUNK.length) {
          await writeAllAsync(fd, ZERO_CHUNK.subarray(0, Math.min(ZERO_CHUNK.length, this.fileBytesMax - at)), at)
          // Written back a few MiB at a time: one 64 MiB writeback would hold the disk for tens of
          // milliseconds, and the log's own synced writes would wait behind it.
          if ((at / ZERO_CHUNK.length) % PREPARE_SYNC_CHUNKS === PREPARE_SYNC_CHUNKS - 1) await fdatasyncAsync(fd)
        }
        if (!this.#closed) await fdatasyncAsync(fd)
        if (this.#closed) throw new KvError(ErrorCode.UNAVAILABLE, 'raft log is closed', { dir: this.dir })
        this.#prepared = { fd, path }
      } catch (error) {
        if (fd >= 0) await closeAsync(fd).catch(() => undefined)
        if (!this.#crashed) await unlinkAsync(path).catch(() => undefined)
        if (!this.#closed) this.#logger('warn', 'raft log: could not preallocate the next file; it will grow as written', { error: String(error) })
      }
    })
  }

  /** sealFile makes a file that rotation leaves behind durable, cut to its records first if it was preallocated. */
  private async sealFile(file: LogFile): Promise<void> {
    if (file.preallocated && file.fd >= 0) {
      // Replay accepts a zero tail only in the last file: a sealed file ends at its last record.
      await ftruncateAsync(file.fd, file.size)
      file.preallocated = false
      file.unsynced = true
      // An O_DSYNC write of held records would not cover the new size: the seal fdatasyncs.
      file.dirty = true
    }
    await this.flushFile(file)
  }

  /**
   * openSyncFd opens the O_DSYNC descriptor of the active file (not in the power-loss model,
   * whose appends are held until a sync and must reach the file through fdatasync's path).
   */
  private async openSyncFd(file: LogFile): Promise<void> {
    if (this.powerLoss) return
    file.syncFd = await openAsync(this.path(file.number), fsConstants.O_WRONLY | fsConstants.O_DSYNC)
  }

  /** closeSyncFd closes the active file's extra descriptors (O_DSYNC, direct) when it is sealed or the log closes. */
  private async closeSyncFd(file: LogFile): Promise<void> {
    const fd = file.syncFd
    const directFd = file.directFd
    file.syncFd = -1
    file.directFd = -1
    if (fd >= 0) await closeAsync(fd)
    if (directFd >= 0) await closeAsync(directFd)
  }

  /**
   * append adds `buffer` (at `position`, the end of what the file holds and holds back) to the
   * file's held records. Without the power-loss model they reach the file with the next synced
   * write or sync (flushFile: one write of everything held), at close, or, past
   * logHeldBytesMax, now and unsynced: an unsynced record (a leader's commit-only hard state,
   * a compaction) then costs no system call of its own, and the synced record after it leaves
   * in the same write. A process crash may lose held records; they were never synced, so a
   * power cut could lose them as well, and nothing waits on them (the driver sends nothing that
   * depends on an unsynced record; a destroy asks for a synced write). The power-loss model
   * holds them until a sync writes them back (powerLossCacheBytesMax bounds those).
   */
  private async append(file: LogFile, parts: readonly Buffer[], owned: Buffer, position: number, sync: boolean): Promise<void> {
    assert(position === file.written + file.heldBytes, `raft log: append at ${position}, but the file holds ${file.written} + ${file.heldBytes} bytes`)
    file.unsynced = true
    let bytes = 0
    for (const part of parts) {
      file.held.push(part)
      bytes += part.length
    }
    file.owned.push(owned)
    file.heldBytes += bytes
    this.#heldBytes += bytes
    if (this.powerLoss) {
      if (this.#heldBytes > powerLossCacheBytesMax) this.writeBack(file)
      return
    }
    if (!sync && this.#heldBytes > logHeldBytesMax) await this.writeHeld(file, file.fd)
  }

  /**
   * flushFile makes `file` durable. Without the power-loss model: when every change already made
   * to the file is synced, ONE write of the held records through the O_DSYNC descriptor (durable
   * with the file's size when it returns, as write + fdatasync; it covers only its own bytes,
   * hence the condition, which replay's torn-tail rule needs: a completed sync covers every
   * earlier byte); else the held records through the plain descriptor, then fdatasync. Why:
   * each trip to libuv's pool (submit, wake a worker, wake the loop, run the callback) costs
   * the JavaScript thread, once per driver iteration (docs/raftstore.md, round 9). Power-loss
   * model: fdatasync, then the held records reach the file, the latest a disk may make them
   * durable.
   */
  private async flushFile(file: LogFile): Promise<void> {
    if (!file.unsynced || file.fd < 0) return
    if (this.powerLoss) {
      await fdatasyncAsync(file.fd)
      this.stats.syncs++
      this.stats.fdatasyncs++
      if (this.#closed && this.#failed !== undefined) throw this.#failed
      this.writeBack(file)
      file.unsynced = false
      return
    }
    if (!file.dirty && file.heldBytes >= directWriteBytesMin && (await this.writeHeldDirect(file))) {
      this.stats.directWrites++
    } else if (!file.dirty && file.syncFd >= 0 && file.held.length > 0) {
      await this.writeHeld(file, file.syncFd)
    } else {
      await this.writeHeld(file, file.fd)
      await fdatasyncAsync(file.fd)
      this.stats.fdatasyncs++
    }
    this.stats.syncs++
    file.dirty = false
    file.unsynced = false
  }

  /** writeHeld writes the held records of `file` through `fd` (the plain or the O_DSYNC descriptor), in one writev. */
  private async writeHeld(file: LogFile, fd: number): Promise<void> {
    const held = file.held
    if (held.length === 0) return
    const total = file.heldBytes
    const owned = file.owned
    file.held = []
    file.heldBytes = 0
    file.owned = []
    await writevAllAsync(fd, held, file.written)
    file.written += total
    this.trackTail(file, held)
    this.#heldBytes -= total
    if (fd === file.fd) file.dirty = true
    for (const buffer of owned) this.releaseBuffer(buffer)
  }

  /** trackTail keeps `file.tail` after `parts` were written up to `file.written`; nothing to keep while direct writes are off. */
  private trackTail(file: LogFile, parts: readonly Buffer[]): void {
    file.tail = this.#direct === undefined ? undefined : tailAfter(file.tail, parts, file.written)
  }

  /**
   * writeHeldDirect writes the held records of `file` (every earlier change to it synced) in one
   * direct write, durable when it returns (log-files/direct.ts). False, with nothing written,
   * when it cannot: direct writes off, the file's tail unknown, a write larger than the staging
   * memory, or the file system refusing O_DIRECT (then direct writes stay off for this log).
   */
  private async writeHeldDirect(file: LogFile): Promise<boolean> {
    const direct = this.#direct
    if (direct === undefined || file.tail === undefined) return false
    const held = file.held
    const total = file.heldBytes
    try {
      if (file.directFd < 0) file.directFd = await openAsync(this.path(file.number), directOpenFlags)
      if (!(await direct.write(file.directFd, file.tail, held, total, file.written))) return false
    } catch (error) {
      if (!isAlignmentRefusal(error)) throw error
      this.#direct = undefined
      this.#logger('warn', 'raft log: the file system refuses direct writes; writing through the page cache', { dir: this.dir, error: String(error) })
      return false
    }
    const owned = file.owned
    file.held = []
    file.heldBytes = 0
    file.owned = []
    file.written += total
    file.tail = tailAfter(file.tail, held, file.written)
    // Zeros padded the write to an aligned end: the file is longer than its records until the next write.
    if (file.tail!.length > 0) file.preallocated = true
    this.#heldBytes -= total
    for (const buffer of owned) this.releaseBuffer(buffer)
    return true
  }

  private async completeSync(file: LogFile, seq: number): Promise<void> {
    await this.flushFile(file)
    this.#synced = seq
    this.settleWaiters()
    this.collect()
  }

  /** writeBack writes the held records of `file` to it (power-loss model), unsynced. */
  private writeBack(file: LogFile): void {
    if (file.held.length === 0) return
    const total = file.heldBytes
    const done = writevSync(file.fd, file.held, file.written)
    if (done < total) {
      const rest = Buffer.concat(file.held).subarray(done)
      for (let at = 0; at < rest.length; ) at += writeSync(file.fd, rest, at, rest.length - at, file.written + done + at)
    }
    file.written += total
    this.trackTail(file, file.held)
    this.#heldBytes -= total
    file.held = []
    file.heldBytes = 0
    file.owned = []
    file.dirty = true
  }

  /** fateOf asks keepFile what becomes of a file without live entries; when it cannot answer, the file is left in place (a later open collects it again). */
  private async fateOf(file: number): Promise<'delete' | 'keep' | 'leave'> {
    if (this.#keepFile === undefined) return 'delete'
    try {
      return (await this.#keepFile(file)) ? 'keep' : 'delete'
    } catch (error) {
      this.#logger('warn', `raft log: left ${fileName(file)} in place (keepFile failed)`, { file, error: String(error) })
      return 'leave'
    }
  }

  /** moveToKept renames a kept file into keptDir and makes both directory entries durable. */
  private async moveToKept(file: number, path: string): Promise<void> {
    const keptDir = this.#keptDir!
    await renameAsync(path, join(keptDir, fileName(file)))
    const keptFd = await openAsync(keptDir, 'r')
    try {
      await fsyncAsync(keptFd)
    } finally {
      await closeAsync(keptFd)
    }
    await fsyncAsync(this.#dirFd)
    this.stats.filesKept++
    this.#logger('info', `raft log: kept ${fileName(file)} (values point into it), moved to ${keptDir}`, { file })
  }

  /** collect unlinks (off the write path) every sealed file without live entries whose death and successor's checkpoint are durable. */
  private collect(): void {
    let successor: LogFile | undefined
    const files = [...this.#files.values()]
    for (let i = files.length - 1; i >= 0; i--) {
      const file = files[i]!
      const next = successor
      successor = file
      if (next === undefined || file === this.#active || file.liveRuns > 0) continue
      if (file.deadSeq > this.#synced || next.createdSeq > this.#synced || file.unsynced) continue
      this.#files.delete(file.number)
      this.stats.files = this.#files.size
      this.stats.filesDeleted++
      const fd = file.fd
      const syncFd = file.syncFd
      const directFd = file.directFd
      file.fd = -1
      file.syncFd = -1
      file.directFd = -1
      const path = this.path(file.number)
      this.#unlinking = this.#unlinking
        .then(async () => {
          if (fd >= 0) await closeAsync(fd)
          if (syncFd >= 0) await closeAsync(syncFd)
          if (directFd >= 0) await closeAsync(directFd)
          // A crashed process deletes nothing more (crash() closed the descriptors already).
          if (this.#crashed) return
          const fate = await this.fateOf(file.number)
          if (fate === 'leave') return
          if (fate === 'keep') return await this.moveToKept(file.number, path)
          await unlinkAsync(path)
          this.#logger('info', `raft log: deleted ${fileName(file.number)} (no live entries)`, { file: file.number })
        })
        .catch((error: unknown) => this.#logger('error', `raft log: could not delete ${fileName(file.number)}`, { file: file.number, error: String(error) }))
    }
  }
}
