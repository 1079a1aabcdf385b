/**
 * WAL group commit on libuv's thread pool: makes RocksDB writes that were written with
 * `sync: false` durable by fdatasyncing the write-ahead log files from Node's thread pool, so
 * that the event loop keeps turning while the disk flushes.
 *
 * Why: @nxtedition/rocksdb runs `DB::Write` on the JavaScript thread; with `sync: true` the
 * thread sleeps in fdatasync (milliseconds on a real disk) and no socket, timer or Raft message
 * is served meanwhile. A `sync: false` write costs a memtable insert plus one write(2) of the
 * WAL record into the page cache, and this module does the fdatasync elsewhere.
 *
 * The engine calls `noteWrite()` right after each write returns, so a `sync()` with no write
 * since the start of the running or last completed round needs no round of its own.
 *
 * Coalescing: `sync()` resolves after a *round* that started after the call. At most two rounds
 * exist: the running one and the next one, which every caller that arrives while a round runs
 * shares (it cannot use the running round: that may have listed the WAL before its write). So
 * any number of concurrent synced writes cost at most two rounds, and no queue grows.
 *
 * One round: list the WAL directory, fdatasync every `NNNNNN.log` numbered >= `floor`, fsync
 * the directory when a WAL newer than every WAL seen so far appears. After round R succeeds,
 * `floor` becomes the newest WAL listed by round R-1, so round R+1 skips only WALs older than
 * the newest one of the round *before the previous one*. The newest WAL's descriptor stays open
 * across rounds (it holds a deleted WAL's blocks only until a round sees a newer WAL).
 *
 * Why round R makes every write that finished before R started durable (W went into WAL N):
 * - N existed before R's listing began, so the listing returns it unless RocksDB deleted it
 *   meanwhile (readdir returns every entry that exists throughout the call). A deleted WAL was
 *   obsolete: every memtable it backed was already flushed to a synced table file recorded in
 *   a synced MANIFEST, so ENOENT is skipped.
 * - If N >= floor, R fdatasyncs N after W, which flushes W (fdatasync acts on the file, whatever
 *   descriptor it is called through).
 * - If N < floor = newest WAL listed by R-2: that WAL existed before R-1 started, so N (older)
 *   was sealed (no later write reaches it) and existed before R-1 started; R-1's listing thus
 *   returned N (or N was deleted), and R-1 fdatasynced it after it was sealed, or N was below
 *   R-1's floor and the same holds one round earlier (induction; the floor only moves after a
 *   round that fully succeeded). The floor lags two rounds, not one, because a WAL created
 *   *during* R-1's listing may be missed while a newer one created during it is listed.
 * - N's directory entry: R fsyncs the directory when its newest listed WAL is newer than the
 *   newest one an earlier round fsynced the directory for; N <= that newest, and N was created
 *   before that fsync, which persists every entry created before it.
 *
 * Skipping the listing: RocksDB creates a WAL only when it switches memtables, and every switch
 * installs a new super version. Given `walVersion` (the engine passes RocksDB's
 * `rocksdb.current-super-version-number`), a round reads it first and, when it equals the value
 * read before the last listing, reuses that listing: no WAL was created since that value was
 * read, so the listing is exactly what a listing now would return (less WALs deleted since,
 * which ENOENT covers), and the argument above holds with the listing dated at that read. This
 * saves one thread-pool hop per round, which under CPU contention is most of a round's latency.
 *
 * NB: this relies on (checked at open from the OPTIONS file where RocksDB records them):
 * `manual_wal_flush=false` (each write group's record reaches write(2) inside `DB::Write`),
 * `recycle_log_file_num=0` (a WAL file is never renamed and rewritten), `two_write_queues=false`
 * and `enable_pipelined_write=false` (the WAL write completes before `DB::Write` returns),
 * `WAL_ttl_seconds=0` and `WAL_size_limit_MB=0` (obsolete WALs are deleted, not archived);
 * on WAL numbers growing with creation (RocksDB allocates them from its file counter);
 * and on `wal_dir` being the database directory: the binding never sets it and RocksDB does
 * not record it in OPTIONS, so a caller that could set it must pass it as `walDir`.
 *
 * Fault model: a failed fdatasync (EIO, ENOSPC) leaves the durability of every write since the
 * last good round unknown, and Linux may drop the dirty pages, so a retry could "succeed"
 * falsely. The syncer therefore fails for good: that round's callers and every later `sync()`
 * reject, and the engine must be reopened (RocksDB recovers from what reached the disk).
 */
import { open, readdir, readFile, type FileHandle } from 'node:fs/promises'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../errors.js'

/** WAL_FILE matches RocksDB's write-ahead log names: the file number, six digits at least. */
const WAL_FILE = /^(\d{6,})\.log$/

/** WalSyncStats counts rounds, for tests and metrics. */
export interface WalSyncStats {
  /** roundsStarted: rounds begun (each one listing + fdatasyncs). */
  roundsStarted: number
  /** roundsCompleted: rounds that made every earlier write durable. */
  roundsCompleted: number
  /** filesSynced: fdatasync calls on WAL files. */
  filesSynced: number
  /** dirSyncs: fsync calls on the WAL directory. */
  dirSyncs: number
  /** listings: rounds that listed the WAL directory (the others reused a listing, see walVersion). */
  listings: number
}

/** WalSyncerOptions: an optional probe that lets rounds skip listing the WAL directory. */
export interface WalSyncerOptions {
  /** walVersion returns a value that changes whenever the engine may have created a WAL file. */
  walVersion?: () => string
}

interface Deferred {
  promise: Promise<void>
  resolve: () => void
  reject: (error: unknown) => void
}

/** WalSyncer fdatasyncs one RocksDB WAL directory in coalesced rounds on the thread pool. */
export class WalSyncer {
  /** walDir: the directory RocksDB writes its WAL files to. */
  readonly walDir: string
  /** stats: round counters, updated in place. */
  readonly stats: WalSyncStats = { roundsStarted: 0, roundsCompleted: 0, filesSynced: 0, dirSyncs: 0, listings: 0 }
  #running: Promise<void> | undefined
  #next: Deferred | undefined
  #failure: KvError | undefined
  #closed = false
  /** #floor: every WAL numbered below it was fdatasynced after it was sealed. */
  #floor = 0
  /** #previousNewest: the newest WAL the last successful round listed. */
  #previousNewest = 0
  /** #dirSyncedThrough: the newest WAL whose directory entry a directory fsync covered. */
  #dirSyncedThrough = 0
  #current: { number: number; handle: FileHandle } | undefined
  /** #writes counts noteWrite() calls; #durableWrites is that count when the last good round started. */
  #writes = 0
  #durableWrites = 0
  /** #runningWrites: the write count when the running round started. */
  #runningWrites = 0

  /** #walVersion: changes whenever a WAL may have been created; undefined means list every round. */
  readonly #walVersion: (() => string) | undefined
  /** #listed: the last listing, and the walVersion read just before it. */
  #listed: { version: string; numbers: number[] } | undefined

  constructor(walDir: string, options: WalSyncerOptions = {}) {
    this.walDir = walDir
    this.#walVersion = options.walVersion
  }

  /** noteWrite records a write RocksDB completed; call it before the write is acknowledged or synced. */
  noteWrite(): void {
    this.#writes++
  }

  /** sync resolves once every write noted before the call is on stable storage. */
  sync(): Promise<void> {
    if (this.#failure !== undefined) return Promise.reject(this.#failure)
    if (this.#closed) return Promise.reject(new KvError(ErrorCode.CLOSED, 'WAL syncer is closed'))
    if (this.#running === undefined) return this.#writes === this.#durableWrites ? Promise.resolve() : this.#start()
    // The running round started after every write so far: it is enough.
    if (this.#writes === this.#runningWrites) return this.#running
    this.#next ??= deferred()
    return this.#next.promise
  }

  /** close waits for the running and the pending round, then releases the WAL descriptor. */
  async close(): Promise<void> {
    this.#closed = true
    while (this.#running !== undefined) await this.#running.catch(() => undefined)
    const current = this.#current
    this.#current = undefined
    await current?.handle.close()
  }

  #start(): Promise<void> {
    const round = this.#round().catch((error: unknown) => {
      this.#failure ??= syncFailure(error)
      throw this.#failure
    })
    this.#running = round
    void round.catch(() => undefined).then(() => {
      this.#running = undefined
      const next = this.#next
      this.#next = undefined
      if (next === undefined) return
      if (this.#failure !== undefined) next.reject(this.#failure)
      else this.#start().then(next.resolve, next.reject)
    })
    return round
  }

  async #round(): Promise<void> {
    this.stats.roundsStarted++
    const writes = this.#writes
    this.#runningWrites = writes
    const numbers = await this.#listWals()
    const newest = numbers[numbers.length - 1]
    if (newest === undefined) {
      throw new KvError(ErrorCode.INTERNAL, 'no RocksDB WAL file (NNNNNN.log) in the WAL directory', { walDir: this.walDir })
    }
    // Bounded: RocksDB keeps a WAL only while a memtable it backs is unflushed (max_write_buffer_number + 1).
    const targets = numbers.filter((number) => number >= this.#floor)
    const syncs: Array<Promise<FileHandle | undefined>> = targets.map((number) => this.#syncWal(number, number === newest))
    if (newest > this.#dirSyncedThrough) syncs.push(this.#syncDir())
    const results = await Promise.allSettled(syncs)
    const opened = results.flatMap((result) => (result.status === 'fulfilled' && result.value !== undefined ? [result.value] : []))
    const failed = results.find((result): result is PromiseRejectedResult => result.status === 'rejected')
    if (failed !== undefined) {
      await Promise.allSettled(opened.map((handle) => handle.close()))
      throw failed.reason
    }
    // Swapped only now, once no fdatasync of this round still uses the old descriptor.
    const [handle] = opened
    if (handle !== undefined) {
      const old = this.#current
      this.#current = { number: newest, handle }
      await old?.handle.close()
    }
    this.#dirSyncedThrough = Math.max(this.#dirSyncedThrough, newest)
    this.#floor = this.#previousNewest
    this.#previousNewest = newest
    this.#durableWrites = writes
    this.stats.roundsCompleted++
  }

  async #listWals(): Promise<number[]> {
    // Read before listing: a WAL created between the read and the listing is then listed, and
    // one created after the read changes the version, so the next round lists again.
    const version = this.#walVersion?.()
    if (version !== undefined && this.#listed?.version === version) return this.#listed.numbers
    const numbers: number[] = []
    this.stats.listings++
    for (const name of await readdir(this.walDir)) {
      const match = WAL_FILE.exec(name)
      if (match !== null) numbers.push(Number(match[1]))
    }
    numbers.sort((a, b) => a - b)
    this.#listed = version === undefined ? undefined : { version, numbers }
    return numbers
  }

  /**
   * #syncWal fdatasyncs WAL `number`; for the newest WAL (`keep`) it returns the descriptor it
   * opened, which the round keeps for later rounds. A WAL deleted meanwhile was obsolete.
   */
  async #syncWal(number: number, keep: boolean): Promise<FileHandle | undefined> {
    const current = this.#current
    if (current?.number === number) {
      await current.handle.datasync()
      this.stats.filesSynced++
      return undefined
    }
    let handle: FileHandle
    try {
      handle = await open(join(this.walDir, walFileName(number)), 'r')
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw error
    }
    try {
      await handle.datasync()
      this.stats.filesSynced++
    } catch (error) {
      await handle.close()
      throw error
    }
    if (keep) return handle
    await handle.close()
    return undefined
  }

  async #syncDir(): Promise<undefined> {
    const handle = await open(this.walDir, 'r')
    try {
      await handle.sync()
      this.stats.dirSyncs++
    } finally {
      await handle.close()
    }
    return undefined
  }
}

/** walFileName is RocksDB's name for WAL `number` (LogFileName in file/filename.cc). */
export function walFileName(number: number): string {
  return `${String(number).padStart(6, '0')}.log`
}

/** WAL_OPTIONS are the RocksDB options the syncer's correctness argument needs, with their required value. */
const WAL_OPTIONS: Readonly<Record<string, string>> = {
  manual_wal_flush: 'false',
  recycle_log_file_num: '0',
  two_write_queues: 'false',
  enable_pipelined_write: 'false',
  WAL_ttl_seconds: '0',
  WAL_size_limit_MB: '0',
}

/**
 * checkWalOptions reads the newest OPTIONS-NNNNNN file of an open database and throws
 * KV_ERR_INVALID, naming the option, when one the syncer relies on has another value.
 */
export async function checkWalOptions(dir: string): Promise<void> {
  const names = (await readdir(dir)).filter((name) => /^OPTIONS-\d+$/.test(name))
  const newest = names.sort((a, b) => Number(a.slice(8)) - Number(b.slice(8))).pop()
  if (newest === undefined) {
    throw new KvError(ErrorCode.INTERNAL, 'RocksDB wrote no OPTIONS file: cannot check the WAL options', { dir })
  }
  const values = new Map<string, string>()
  let section = ''
  for (const raw of (await readFile(join(dir, newest), 'utf8')).split('\n')) {
    const line = raw.trim()
    if (line.startsWith('[')) section = line
    else if (section === '[DBOptions]' && line.includes('=')) {
      const at = line.indexOf('=')
      values.set(line.slice(0, at), line.slice(at + 1))
    }
  }
  for (const [name, required] of Object.entries(WAL_OPTIONS)) {
    const actual = values.get(name)
    if (actual !== required) {
      throw new KvError(ErrorCode.INVALID, `walSync 'threadpool' needs RocksDB ${name}=${required}; use walSync 'native'`, { file: newest, [name]: actual ?? 'absent' })
    }
  }
}

function syncFailure(error: unknown): KvError {
  if (error instanceof KvError) return error
  const err = error as NodeJS.ErrnoException
  const code = err?.code === 'ENOSPC' ? ErrorCode.DISK_FULL : ErrorCode.INTERNAL
  return new KvError(code, `WAL sync failed, durability of writes since the last good sync is unknown; reopen the engine: ${String(err?.message ?? error)}`, { errno: err?.code })
}

function deferred(): Deferred {
  let resolve!: () => void
  let reject!: (error: unknown) => void
  const promise = new Promise<void>((res, rej) => {
    resolve = res
    reject = rej
  })
  // A pending round nobody awaits any more must not become an unhandled rejection.
  promise.catch(() => undefined)
  return { promise, resolve, reject }
}
