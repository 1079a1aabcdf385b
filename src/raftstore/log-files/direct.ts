/**
 * Direct writes of large synced log records (O_DIRECT | O_DSYNC), past the page cache.
 *
 * Why: a buffered write copies every byte into page-cache pages, and a log that keeps growing
 * (chunks of files stay in it as values) needs new pages all the time. On this project's host
 * (a VM whose free memory is handed back to the hypervisor) a page the guest has not touched
 * lately costs a fault outside the guest on first touch: buffered 1 MiB O_DSYNC writes took
 * 0.5 ms of system CPU per MiB while the page cache was small and 2.9-3.9 ms per MiB once ~1 GiB
 * of new pages had been taken, and perf put copy_folio_from_iter_atomic at ~20-35% of every
 * node's CPU during 4 MiB uploads. A direct write is DMA from a reused buffer: 0.16 ms per MiB.
 *
 * How: O_DIRECT needs the file offset, the length and the memory aligned to the device's
 * logical block; DIRECT_ALIGN (4096) covers 512-byte and 4Kn disks. A record starts wherever
 * the last one ended, so a direct write starts at the aligned offset below it and carries the
 * file's bytes from there (`tail`, kept in memory: already durable, rewritten unchanged), and
 * ends padded with zeros to the next aligned offset. The zeros are past the last record, where
 * replay reads zeros as the end of the last file (as in a preallocated file); the next write
 * overwrites them, and a file sealed with them is cut to its records first. Rewriting the
 * durable head again is safe under a torn write: its bytes do not change.
 * Memory: Buffers from Node's allocator are 16-byte aligned at best; a WebAssembly.Memory is
 * page-aligned by V8 (its own mmap'd reservation), so the staging buffer is a view of one.
 * A file system without O_DIRECT (tmpfs) or a device with larger alignment refuses with EINVAL
 * before any I/O: the caller then writes buffered, as before, and stops trying.
 */
import { constants as fsConstants } from 'node:fs'
import { writeAllAsync } from './fs.js'

/** directWritesEnv: set to 'off' to write every log record through the page cache (LogFilesOptions.directWrites is the per-log switch). */
export const directWritesEnv = 'DISTKV_LOG_DIRECT_WRITES'
/** DIRECT_ALIGN: the alignment of a direct write's offset, length and memory. */
export const DIRECT_ALIGN = 4096
/** directWriteBytesMin: a synced write of this many held bytes or more is written directly (file chunks; small records stay buffered). */
export const directWriteBytesMin = 256 * 1024
/** directStageBytesMax: the largest direct write (staging memory); a larger one is written buffered. */
export const directStageBytesMax = 16 * 1024 * 1024
/** WASM_PAGE: WebAssembly's page size, the unit its memory grows by. */
const WASM_PAGE = 64 * 1024

/** directOpenFlags: the flags of a file's direct descriptor (durable with its size when a write returns, like the O_DSYNC one). */
export const directOpenFlags = fsConstants.O_WRONLY | fsConstants.O_DIRECT | fsConstants.O_DSYNC

/** isAlignmentRefusal tells whether an error is the kernel refusing O_DIRECT itself (no I/O was done). */
export function isAlignmentRefusal(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'EINVAL'
}

/** alignDown rounds `n` down to a multiple of DIRECT_ALIGN. */
export function alignDown(n: number): number {
  return n - (n % DIRECT_ALIGN)
}

/**
 * tailAfter returns the bytes of a file from alignDown(end) to `end` after `parts` were written
 * at `end - total(parts)`, given `tail` (the same for the old end; undefined if unknown), or
 * undefined when they are not known (a file found at open, before a write crossed a boundary).
 */
export function tailAfter(tail: Buffer | undefined, parts: readonly Buffer[], end: number): Buffer | undefined {
  const need = end % DIRECT_ALIGN
  const out = Buffer.allocUnsafe(need)
  let at = need
  for (let i = parts.length - 1; i >= 0 && at > 0; i--) {
    const part = parts[i]!
    const take = Math.min(at, part.length)
    part.copy(out, at - take, part.length - take)
    at -= take
  }
  if (at === 0) return out
  if (tail === undefined || tail.length < at) return undefined
  tail.copy(out, 0, tail.length - at)
  return out
}

/** WasmMemory: the part of WebAssembly.Memory used here (the project's TypeScript libs carry no WebAssembly types). */
interface WasmMemory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}
const WasmMemory = (globalThis as unknown as { WebAssembly: { Memory: new (descriptor: { initial: number; maximum: number }) => WasmMemory } }).WebAssembly.Memory

/** alignedBuffer returns `bytes` (a multiple of 64 KiB) of zeroed, page-aligned memory, fit for O_DIRECT. */
export function alignedBuffer(bytes: number): Buffer {
  const pages = bytes / WASM_PAGE
  return Buffer.from(new WasmMemory({ initial: pages, maximum: pages }).buffer)
}

/** DirectStage is the page-aligned staging memory of direct writes (one at a time: the log's writes are serialized). */
export class DirectStage {
  #memory = new WasmMemory({ initial: 1, maximum: directStageBytesMax / WASM_PAGE })

  /**
   * write writes `tail` then `parts` at alignDown(`end`), as one direct write through `fd`,
   * zero-padded to DIRECT_ALIGN. `end` is where the file's records end (tail.length === end % DIRECT_ALIGN).
   * Returns false, having written nothing, when the write is larger than the staging memory.
   */
  async write(fd: number, tail: Buffer, parts: readonly Buffer[], total: number, end: number): Promise<boolean> {
    const start = alignDown(end)
    const length = Math.ceil((tail.length + total) / DIRECT_ALIGN) * DIRECT_ALIGN
    if (length > directStageBytesMax) return false
    const pages = Math.ceil(length / WASM_PAGE)
    const have = this.#memory.buffer.byteLength / WASM_PAGE
    if (pages > have) this.#memory.grow(pages - have)
    const stage = Buffer.from(this.#memory.buffer, 0, length)
    let at = tail.copy(stage, 0)
    for (const part of parts) at += part.copy(stage, at)
    stage.fill(0, at)
    await writeAllAsync(fd, stage, start)
    return true
  }
}
