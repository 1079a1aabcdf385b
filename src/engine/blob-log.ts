/**
 * BlobLog: append-only files holding large values outside the LSM (WiscKey / TiKV Titan), one
 * directory per node: `NNNNNN.blob`, numbered in creation order. The newest file is the active
 * one; it is sealed once it reaches `fileBytesMax` and a new one is created.
 *
 * Record (self-describing, so GC can walk a file without any index):
 *   crc u32 | keyLength u32 | valueLength u32 | valueCrc u32 | key | value
 * `crc` covers bytes 4..16 and the key; `valueCrc` the value (a pointer carries it too, so a read
 * of the value alone is checked). CRC-32 (IEEE), src/raftstore/records.ts.
 *
 * Durability: `sync()` fdatasyncs every file appended to since the last sync, on libuv's thread
 * pool (the event loop keeps turning), and fsyncs the directory once a new file was created.
 * The caller (BlobEngine) writes a pointer to the engine only after the sync of its record.
 *
 * Crash recovery: `open()` walks the active file and truncates it at the first record that is
 * short or fails a checksum (a torn append). Nothing can point there: pointers are written only
 * after their record was synced, and fdatasync covers every earlier byte of the file too.
 *
 * Power-loss model (DISTKV_FAULT_POWER_LOSS=1, `powerLoss: true`; src/engine/power-loss.ts): an
 * appended record is held in this process, not written to the file, until the sync() that makes
 * it durable completes (reads through this log see it, as a page cache would make them), so
 * SIGKILL loses exactly the records no completed sync covered, as a power cut would. Records are written back whole and
 * in order, so a kill never leaves a torn or reordered record (a disk may keep any prefix; this
 * keeps the shortest). Held bytes are bounded by powerLossCacheBytesMax: past it they are written
 * back unsynced, and then survive a kill. A clean close() writes them back. Directory entries are
 * not modelled: a new file's entry survives a kill even before the directory fsync. Off, appends
 * are written at once, and none of this code runs.
 *
 * Readers and unlinking: a file GC retired (no live pointer left) is unlinked only once every
 * reader that began before the retirement ended: an engine iterator reads a snapshot that may
 * still hold pointers into it (beginRead/endRead). afterReaders applies the same rule to other
 * work: the engine unlinks Raft log files its log pointers pointed into with it.
 */
import { closeSync, fdatasync, fstatSync, fsync, ftruncateSync, mkdirSync, openSync, read, readdirSync, unlink, writeSync, writevSync } from 'node:fs'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../errors.js'
import { crc32 } from '../crc32.js'
import { powerLossCacheBytesMax } from './power-loss.js'

/** blobFileBytesMaxDefault: size at which the active blob file is sealed and a new one started. */
export const blobFileBytesMaxDefault = 64 * 1024 * 1024
/** blobFileBytesMaxLimit: the largest file size accepted (offsets in pointers are 48-bit; this keeps walks short). */
export const blobFileBytesMaxLimit = 1024 * 1024 * 1024
/** blobRecordKeyBytesMax: longest key a record may carry (engine keys of shard data are far shorter); a walk stops at a longer one. */
export const blobRecordKeyBytesMax = 64 * 1024
/** blobRecordValueBytesMax: longest value a record may carry; a walk stops at a longer one. */
export const blobRecordValueBytesMax = 256 * 1024 * 1024
/** blobFilesMax: most blob files one log holds (the file number is 32-bit; this bounds descriptors). */
export const blobFilesMax = 100_000

/** powerLossBlobSyncDelayMsMax: the power-loss model completes a sync up to this much later (uniformly random), as a slow disk would (module comment). */
export const powerLossBlobSyncDelayMsMax = 4

export const RECORD_HEADER_BYTES = 16
const FILE_NAME = /^(\d{6,10})\.blob$/

/** BlobRef is where one value lives: file number, offset of the value's first byte, its length and CRC. */
export interface BlobRef {
  file: number
  offset: number
  length: number
  crc: number
}

/** BlobRecord is one record found by walking a file. */
export interface BlobRecord extends BlobRef {
  key: Buffer
}

interface BlobFile {
  fd: number
  /** size: bytes written (appends go here). */
  size: number
  /** held: power-loss model only: records appended but not yet written to the file, in file order, contiguous, ending at size. */
  held: HeldRecord[]
}

/** HeldRecord is one record the power-loss model keeps in the process until a sync writes it. */
interface HeldRecord {
  at: number
  bytes: Buffer
}

/** BlobLogOptions configure a BlobLog beyond its directory. */
export interface BlobLogOptions {
  /** fileBytesMax: size at which the active file is sealed (default blobFileBytesMaxDefault). */
  fileBytesMax?: number
  /** powerLoss: hold unsynced records in the process, so a kill loses them (module comment); tests and the jepsen harness only. */
  powerLoss?: boolean
}

/** BlobPowerLossStats counts what the power-loss model did (tests). */
export interface BlobPowerLossStats {
  /** heldBytes: record bytes held in the process now. */
  heldBytes: number
  /** writtenBack: records written to their file by a sync, the bound or close. */
  writtenBack: number
  /** writebacks: write-backs forced by powerLossCacheBytesMax (unsynced). */
  writebacks: number
}

function fileName(file: number): string {
  return `${String(file).padStart(6, '0')}.blob`
}

function corruption(message: string, details: Record<string, unknown>): KvError {
  return new KvError(ErrorCode.CORRUPTION, message, details)
}

const fdatasyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fdatasync(fd, (error) => (error ? reject(error) : resolve())))
const fsyncAsync = (fd: number) => new Promise<void>((resolve, reject) => fsync(fd, (error) => (error ? reject(error) : resolve())))
const unlinkAsync = (path: string) => new Promise<void>((resolve, reject) => unlink(path, (error) => (error && error.code !== 'ENOENT' ? reject(error) : resolve())))

/** preadFully reads `length` bytes at `position`; fewer only at the end of the file. */
export async function preadFully(fd: number, length: number, position: number): Promise<Buffer> {
  const buffer = Buffer.allocUnsafe(length)
  let done = 0
  while (done < length) {
    const n = await new Promise<number>((resolve, reject) => read(fd, buffer, done, length - done, position + done, (error, bytes) => (error ? reject(error) : resolve(bytes))))
    if (n === 0) break
    done += n
  }
  return done === length ? buffer : buffer.subarray(0, done)
}

/** parseHeader checks a record header and key; returns the lengths and value CRC, or undefined when the record is torn or foreign. */
function parseHeader(header: Buffer, key: Buffer | undefined): { keyLength: number; valueLength: number; valueCrc: number } | undefined {
  if (header.length < RECORD_HEADER_BYTES) return undefined
  const keyLength = header.readUInt32BE(4)
  const valueLength = header.readUInt32BE(8)
  if (keyLength > blobRecordKeyBytesMax || valueLength > blobRecordValueBytesMax) return undefined
  if (key !== undefined) {
    if (key.length !== keyLength) return undefined
    if (crc32(key, crc32(header.subarray(4, RECORD_HEADER_BYTES))) !== header.readUInt32BE(0)) return undefined
  }
  return { keyLength, valueLength, valueCrc: header.readUInt32BE(12) }
}

/** writeFully writes `parts` (of `total` bytes) at `position`: one writev(2); a short write (rare: a signal, a full disk) finishes piece by piece. */
function writeFully(fd: number, parts: Buffer[], total: number, position: number): void {
  const done = writevSync(fd, parts, position)
  if (done < total) {
    const rest = Buffer.concat(parts).subarray(done)
    for (let at = 0; at < rest.length; ) at += writeSync(fd, rest, at, rest.length - at, position + done + at)
  }
}

/** BlobLog owns the blob files of one directory (see the module comment). */
export class BlobLog {
  readonly fileBytesMax: number
  /** powerLoss: whether the power-loss model is on (module comment). */
  readonly powerLoss: boolean
  /** powerLossStats: what the power-loss model did (all zero when it is off). */
  readonly powerLossStats: BlobPowerLossStats = { heldBytes: 0, writtenBack: 0, writebacks: 0 }
  readonly #files = new Map<number, BlobFile>()
  #active = 0
  /** #dirty: files appended to since the last sync. */
  readonly #dirty = new Set<number>()
  #dirNeedsSync = false
  /** #syncing: syncs running now (sync() waits for the earlier ones). */
  readonly #syncing = new Set<Promise<void>>()
  #dirFd = -1
  /** Reader tracking for deferred unlinks. */
  #readerSeq = 0
  readonly #readers = new Set<number>()
  /** #retired: retired files, and afterReaders' work, each waiting for the readers that began before `after`. */
  readonly #retired: Array<{ file: number; after: number } | { work: () => Promise<void>; after: number }> = []
  #unlinking = Promise.resolve()
  /** truncatedBytes: torn tail cut off the active file at open (tests and logs). */
  truncatedBytes = 0

  constructor(
    readonly dir: string,
    options: BlobLogOptions = {},
  ) {
    const fileBytesMax = options.fileBytesMax ?? blobFileBytesMaxDefault
    this.fileBytesMax = fileBytesMax
    this.powerLoss = options.powerLoss ?? false
    if (!Number.isSafeInteger(fileBytesMax) || fileBytesMax < 1024 || fileBytesMax > blobFileBytesMaxLimit) {
      throw new KvError(ErrorCode.INVALID, `blobFileBytesMax must be an integer in [1024, ${blobFileBytesMaxLimit}] (blobFileBytesMaxLimit)`, { fileBytesMax })
    }
  }

  /** open lists the files, recovers the active one (torn tail) and keeps appending to it. */
  async open(): Promise<void> {
    mkdirSync(this.dir, { recursive: true })
    this.#dirFd = openSync(this.dir, 'r')
    const numbers = readdirSync(this.dir).map((name) => FILE_NAME.exec(name)).filter((m) => m !== null).map((m) => Number(m[1])).sort((a, b) => a - b)
    for (const file of numbers) {
      const fd = openSync(join(this.dir, fileName(file)), 'r+')
      this.#files.set(file, { fd, size: fstatSync(fd).size, held: [] })
    }
    if (numbers.length === 0) this.create(1)
    else {
      this.#active = numbers[numbers.length - 1]!
      await this.recoverActive()
    }
  }

  /** close closes every descriptor (syncing nothing: callers sync what they rely on; held records are written, as a process exit keeps the page cache). */
  async close(): Promise<void> {
    await this.#unlinking
    if (this.powerLoss) this.writeBack([...this.#files.keys()])
    for (const { fd } of this.#files.values()) closeSync(fd)
    this.#files.clear()
    if (this.#dirFd >= 0) closeSync(this.#dirFd)
    this.#dirFd = -1
  }

  get activeFile(): number {
    return this.#active
  }

  /** files lists every file number, oldest first. */
  files(): number[] {
    return [...this.#files.keys()].sort((a, b) => a - b)
  }

  /** sealedFiles lists the files no append goes to any more, oldest first. */
  sealedFiles(): number[] {
    return this.files().filter((file) => file !== this.#active)
  }

  fileSize(file: number): number {
    return this.#files.get(file)?.size ?? 0
  }

  path(file: number): string {
    return join(this.dir, fileName(file))
  }

  /** append writes one record to the active file (a write(2) on this thread, like a WAL append); durable after the next sync(). */
  append(key: Buffer, value: Buffer): BlobRef {
    const recordBytes = RECORD_HEADER_BYTES + key.length + value.length
    if (key.length > blobRecordKeyBytesMax || value.length > blobRecordValueBytesMax) {
      throw new KvError(ErrorCode.VALUE_TOO_LARGE, `blob record exceeds blobRecordKeyBytesMax or blobRecordValueBytesMax`, { key: key.length, value: value.length })
    }
    let active = this.#files.get(this.#active)!
    if (active.size > 0 && active.size + recordBytes > this.fileBytesMax) active = this.create(this.#active + 1)
    const header = Buffer.allocUnsafe(RECORD_HEADER_BYTES)
    header.writeUInt32BE(key.length, 4)
    header.writeUInt32BE(value.length, 8)
    const valueCrc = crc32(value)
    header.writeUInt32BE(valueCrc, 12)
    header.writeUInt32BE(crc32(key, crc32(header.subarray(4))), 0)
    const start = active.size
    // Advance first: a failed write leaves a hole the next append skips, never a record over a torn one.
    active.size += recordBytes
    if (!this.powerLoss) {
      writeFully(active.fd, [header, key, value], recordBytes, start)
      this.#dirty.add(this.#active)
    } else {
      this.#dirty.add(this.#active)
      // A copy: the caller may reuse `value` once append returns, as it may after a write(2).
      active.held.push({ at: start, bytes: Buffer.concat([header, key, value]) })
      this.powerLossStats.heldBytes += recordBytes
      if (this.powerLossStats.heldBytes > powerLossCacheBytesMax) {
        this.powerLossStats.writebacks++
        this.writeBack([...this.#files.keys()])
      }
    }
    return { file: this.#active, offset: start + RECORD_HEADER_BYTES + key.length, length: value.length, crc: valueCrc }
  }

  /**
   * sync makes every record appended so far durable (fdatasync on the thread pool), and new
   * files' directory entries. It also waits for every sync already running: that one took the
   * dirty files this call would otherwise have synced, so returning at its own end (possibly at
   * once, with nothing dirty left) would let a pointer be written before its bytes are durable.
   * A failed earlier sync fails this one too.
   */
  async sync(): Promise<void> {
    const earlier = [...this.#syncing]
    const own = this.syncDirty()
    this.#syncing.add(own)
    const forget = () => void this.#syncing.delete(own)
    own.then(forget, forget)
    await Promise.all([own, ...earlier])
  }

  /** syncDirty syncs the files appended to since the last sync began. */
  private async syncDirty(): Promise<void> {
    const files = [...this.#dirty]
    this.#dirty.clear()
    const dir = this.#dirNeedsSync
    this.#dirNeedsSync = false
    // Power-loss model: this sync covers the records appended so far (each file up to its size now).
    const covered = this.powerLoss ? files.map((file) => this.#files.get(file)?.size ?? 0) : undefined
    try {
      await Promise.all(files.map((file) => fdatasyncAsync(this.#files.get(file)!.fd)))
      if (dir) await fsyncAsync(this.#dirFd)
      // Power-loss model: the covered records reach the file only as the sync completes, the
      // latest a disk may make them durable: so a pointer written before this resolved can
      // outlive its bytes under a kill, as under a power cut (the fdatasync above still runs, so
      // the order and cost of system calls stay the production path's).
      if (covered !== undefined) {
        // A slow disk's flush: without it the thread pool's fdatasync finishes before a racing
        // RocksDB write almost always, and a pointer batch that skipped its wait would go unseen.
        await new Promise((resolve) => setTimeout(resolve, Math.random() * powerLossBlobSyncDelayMsMax))
        files.forEach((file, i) => this.writeBack([file], covered[i]))
      }
    } catch (error) {
      // Unknown durability: keep them dirty so the next sync tries again (the engine write fails meanwhile).
      for (const file of files) this.#dirty.add(file)
      if (dir) this.#dirNeedsSync = true
      throw error
    }
  }

  /** read returns the value `ref` points at, checked against its CRC; KV_ERR_CORRUPTION otherwise (never wrong bytes). */
  async read(ref: BlobRef): Promise<Buffer> {
    const file = this.#files.get(ref.file)
    if (file === undefined) throw corruption(`blob file ${fileName(ref.file)} is missing`, { file: ref.file, offset: ref.offset })
    const value = ref.length === 0 ? Buffer.alloc(0) : await this.pread(file, ref.length, ref.offset)
    if (value.length !== ref.length || crc32(value) !== ref.crc) {
      throw corruption(`blob ${fileName(ref.file)}@${ref.offset}: value is short or fails its checksum`, { file: ref.file, offset: ref.offset, length: ref.length })
    }
    return value
  }

  /** walk yields the records of `file` in order, stopping at its end or at the first torn or foreign header. */
  async *walk(file: number): AsyncGenerator<BlobRecord> {
    const handle = this.#files.get(file)
    if (handle === undefined) return
    let position = 0
    // Read the header with the start of a typical key in one call.
    const guess = 256
    while (position + RECORD_HEADER_BYTES <= handle.size) {
      const head = await this.pread(handle, RECORD_HEADER_BYTES + guess, position)
      const parsed = parseHeader(head, undefined)
      if (parsed === undefined) return
      const key = parsed.keyLength <= guess && head.length >= RECORD_HEADER_BYTES + parsed.keyLength
        ? Buffer.from(head.subarray(RECORD_HEADER_BYTES, RECORD_HEADER_BYTES + parsed.keyLength))
        : await this.pread(handle, parsed.keyLength, position + RECORD_HEADER_BYTES)
      if (parseHeader(head.subarray(0, RECORD_HEADER_BYTES), key) === undefined) return
      const offset = position + RECORD_HEADER_BYTES + parsed.keyLength
      if (offset + parsed.valueLength > handle.size) return
      yield { key, file, offset, length: parsed.valueLength, crc: parsed.valueCrc }
      position = offset + parsed.valueLength
    }
  }

  /** beginRead registers a reader (an engine read or iterator) that may hold pointers; pass its token to endRead. */
  beginRead(): number {
    const token = ++this.#readerSeq
    this.#readers.add(token)
    return token
  }

  endRead(token: number): void {
    this.#readers.delete(token)
    if (this.#retired.length > 0) this.unlinkRetired()
  }

  /** retire unlinks `file` once every reader that began before now has ended (no pointer into it is left in the engine). */
  retire(file: number): void {
    if (file === this.#active || !this.#files.has(file) || this.#retired.some((r) => 'file' in r && r.file === file)) return
    this.#retired.push({ file, after: this.#readerSeq })
    this.unlinkRetired()
  }

  /**
   * afterReaders runs `work` (on the unlink chain: unlinked() and close() wait for it) once every
   * reader that began before now has ended: retire's rule for a file this log does not own (the
   * engine's kept Raft log files, which the same readers read). A failing `work` is ignored.
   */
  afterReaders(work: () => Promise<void>): void {
    this.#retired.push({ work, after: this.#readerSeq })
    this.unlinkRetired()
  }

  /** unlinked resolves once every unlink started so far is done (unlinks run on the thread pool). */
  unlinked(): Promise<void> {
    return this.#unlinking
  }

  /** pendingUnlinks: retired files (and afterReaders' work) still waiting for older readers. */
  get pendingUnlinks(): number {
    return this.#retired.length
  }

  private unlinkRetired(): void {
    let oldest = Infinity
    for (const token of this.#readers) oldest = Math.min(oldest, token)
    for (let i = this.#retired.length - 1; i >= 0; i--) {
      const retired = this.#retired[i]!
      if (oldest <= retired.after) continue
      this.#retired.splice(i, 1)
      if ('work' in retired) {
        this.#unlinking = this.#unlinking.then(() => retired.work()).catch(() => undefined)
        continue
      }
      const file = retired.file
      const handle = this.#files.get(file)
      if (handle === undefined) continue
      this.#files.delete(file)
      this.#dirty.delete(file)
      for (const record of handle.held) this.powerLossStats.heldBytes -= record.bytes.length
      handle.held = []
      closeSync(handle.fd)
      this.#unlinking = this.#unlinking.then(() => unlinkAsync(this.path(file))).catch(() => undefined)
    }
  }

  /** create starts file `file` as the active one (its directory entry is synced by the next sync()). */
  private create(file: number): BlobFile {
    if (this.#files.size >= blobFilesMax) throw new KvError(ErrorCode.UNAVAILABLE, `blob log holds blobFilesMax (${blobFilesMax}) files`, { dir: this.dir })
    const fd = openSync(this.path(file), 'wx+')
    const handle: BlobFile = { fd, size: 0, held: [] }
    this.#files.set(file, handle)
    this.#active = file
    this.#dirNeedsSync = true
    return handle
  }

  /**
   * pread reads `length` bytes of `file` at `position` (fewer only at its end), the power-loss
   * model's held records laid over what the file holds.
   */
  private async pread(file: BlobFile, length: number, position: number): Promise<Buffer> {
    if (file.held.length === 0) return preadFully(file.fd, length, position)
    // Snapshot first: a sync during the read below may write these back and drop them; their bytes are the same either way.
    const held = file.held.slice()
    const heldFrom = held[0]!.at
    const end = Math.min(position + length, file.size)
    if (end <= position) return Buffer.alloc(0)
    const out = Buffer.alloc(end - position)
    if (position < heldFrom) {
      const onDisk = await preadFully(file.fd, Math.min(end, heldFrom) - position, position)
      onDisk.copy(out, 0)
      if (onDisk.length < Math.min(end, heldFrom) - position) return out.subarray(0, onDisk.length)
    }
    for (const { at, bytes } of held) {
      if (at >= end || at + bytes.length <= position) continue
      const from = Math.max(at, position)
      bytes.copy(out, from - position, from - at, Math.min(at + bytes.length, end) - at)
    }
    return out
  }

  /** writeBack writes the held records of `files` that start before `end` to them (power-loss model), unsynced; kept held if a write fails (positional writes may be repeated). */
  private writeBack(files: number[], end = Infinity): void {
    for (const number of files) {
      const file = this.#files.get(number)
      if (file === undefined) continue
      while (file.held.length > 0 && file.held[0]!.at < end) {
        const { at, bytes } = file.held[0]!
        writeFully(file.fd, [bytes], bytes.length, at)
        file.held.shift()
        this.powerLossStats.heldBytes -= bytes.length
        this.powerLossStats.writtenBack++
      }
    }
  }

  /** recoverActive truncates the active file at its first torn record (short, or failing a checksum). */
  private async recoverActive(): Promise<void> {
    const handle = this.#files.get(this.#active)!
    let good = 0
    for await (const record of this.walk(this.#active)) {
      const value = await preadFully(handle.fd, record.length, record.offset)
      if (value.length !== record.length || crc32(value) !== record.crc) break
      good = record.offset + record.length
    }
    if (good < handle.size) {
      this.truncatedBytes = handle.size - good
      ftruncateSync(handle.fd, good)
      handle.size = good
      await fdatasyncAsync(handle.fd)
    }
  }
}
