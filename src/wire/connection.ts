/**
 * FrameConnection: one socket speaking frames, shared by server and client sides.
 *
 * Writes are coalesced: frames queued during one turn of the event loop are written together
 * from a `setImmediate`, in one write (or one writev), so a burst of replies costs one syscall
 * instead of one per frame. Each frame is written into the connection's outgoing slab when it
 * is sent: its header, a small body copied, or a body encoded in place (pack-into.ts); large
 * bodies are queued by reference between slab regions. Between turns a connection keeps at
 * most one slab (slabBytes, 64 KiB), and only while it has room left worth writing into.
 *
 * Backpressure: when the bytes waiting to go out (queued plus the socket's own buffer) pass
 * `writeBufferBytesMax`, the connection pauses reading, so a peer that never reads cannot
 * make us buffer more than that bound plus the replies already being computed; reading
 * resumes on 'drain'.
 */
import type { Socket } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import { FrameDecoder, HEADER_BYTES, type Frame, type FrameTypeValue } from './frame.js'
import { PACK_FAILED, type InPlaceEncoder } from './pack-into.js'
import { writeRequestId } from './codec.js'

/** FrameConnectionOptions bound one connection's memory. */
export interface FrameConnectionOptions {
  frameBytesMax: number
  writeBufferBytesMax: number
  onFrame: (frame: Frame) => void
  /** onFatal gets a decode error; the connection is unusable afterwards. */
  onFatal: (error: KvError) => void
  onClose: (error?: Error) => void
}

/** bodyCopyBytesMax: frame bodies at least this large are written by reference, not copied. */
const bodyCopyBytesMax = 16 * 1024

/** FrameBody is a frame's body as one buffer, or as parts sent one after another (large ones by reference). */
export type FrameBody = Uint8Array | readonly Uint8Array[]

/** RequestIdRef is a frame's request id as its 16 bytes or as their requestIdKey (a 16-character latin1 string). */
export type RequestIdRef = Uint8Array | string

/** bodyLength is the byte length of a body given as one buffer or as parts. */
export function bodyLength(body: FrameBody): number {
  if (body instanceof Uint8Array) return body.length
  let length = 0
  for (const part of body) length += part.length
  return length
}

/** slabBytes is the size of each outgoing buffer frames are written into as they are sent. */
const slabBytes = 64 * 1024
/** slabTailBytesMin: after a flush, a slab with less room than this left is replaced rather than written on. */
const slabTailBytesMin = 4 * 1024

const emptySlab = Buffer.alloc(0)

/** FrameConnection frames a socket: decodes incoming frames and coalesces outgoing ones. */
export class FrameConnection {
  readonly socket: Socket
  private readonly decoder: FrameDecoder
  private readonly options: FrameConnectionOptions
  // Outgoing frames are written into `slab` as they are sent (headers, small bodies, bodies
  // encoded in place); the bytes from slabStart to slabAt are what this turn added and not yet
  // queued. `chunks` holds, in order, earlier slab regions and large bodies by reference.
  // Invariant: slabStart <= slabAt <= slab.length; bytes before slabStart are never written
  // again (the socket may still hold them), so a slab is only ever filled forward.
  private slab = emptySlab
  private slabStart = 0
  private slabAt = 0
  private chunks: Uint8Array[] = []
  private queuedBytes = 0
  private flushScheduled = false
  // Invariant: true only while sendInPlace's encoder runs; no other frame is written meanwhile.
  private encoding = false
  private readPaused = false
  private closed = false

  constructor(socket: Socket, options: FrameConnectionOptions) {
    this.socket = socket
    this.options = options
    this.decoder = new FrameDecoder(options.frameBytesMax)
    socket.setNoDelay?.(true)
    socket.on('data', (chunk: Buffer) => this.receive(chunk))
    socket.on('drain', () => this.updateReading())
    socket.on('error', () => {
      // 'close' follows every 'error'; the error itself is passed on there.
    })
    socket.on('close', (hadError: boolean) => this.handleClose(hadError))
  }

  /** isClosed tells whether the socket has closed or close() was called. */
  get isClosed(): boolean {
    return this.closed
  }

  /** outgoingBytes is what waits to be sent: queued frames plus the socket's buffer. */
  get outgoingBytes(): number {
    return this.queuedBytes + this.socket.writableLength
  }

  /** bufferedIncomingBytes is what the decoder holds for a partial frame. */
  get bufferedIncomingBytes(): number {
    return this.decoder.buffered
  }

  /** setFrameBytesMax changes the largest incoming frame accepted from now on. */
  setFrameBytesMax(frameBytesMax: number): void {
    this.decoder.frameBytesMax = frameBytesMax
  }

  /**
   * send queues one frame; it goes out with everything else queued in this turn. The header and
   * small bodies are copied now (`requestId` may be reused as soon as this returns); bodies of
   * bodyCopyBytesMax or more are read when the frame is written.
   */
  send(type: FrameTypeValue, requestId: RequestIdRef, body: FrameBody): void {
    if (this.closed) return
    const length = bodyLength(body)
    this.writeHeader(type, requestId, length)
    if (body instanceof Uint8Array) this.place(body)
    else for (const part of body) this.place(part)
    this.queued(HEADER_BYTES + length)
  }

  /**
   * sendInPlace queues one frame whose body `encode` writes straight into the outgoing buffer
   * (no body buffer of its own). Returns the body's length, or PACK_FAILED when the encoder
   * cannot write this value or it does not fit in one slab (the caller encodes it the usual way
   * and calls send). A body over `bodyBytesMax` is not sent: its length is returned for the
   * caller's error. Nothing is queued when the connection is closed.
   */
  sendInPlace(type: FrameTypeValue, requestId: RequestIdRef, bodyBytesMax: number, encode: InPlaceEncoder, a: unknown, b: unknown): number {
    if (this.closed) return 0
    if (this.slab.length - this.slabAt < slabTailBytesMin) this.newSlab(slabBytes)
    // The header goes first (its length patched after), so the id is copied before the
    // encoder runs any code of the value's (a getter may reuse the caller's id buffer).
    this.writeHeader(type, requestId, 0)
    let at = this.slabAt - HEADER_BYTES
    this.slabAt = at // the frame is not queued until its body is written
    let end: number
    // NB: the encoder reads the value's properties, so a getter could run code that sends on
    // this connection while the slab past slabAt is being written; writeHeader refuses that.
    this.encoding = true
    try {
      end = encode(this.slab, at + HEADER_BYTES, this.slab.length, a, b)
      if (end === PACK_FAILED && at >= slabBytes / 2) {
        // Perhaps only this slab's tail was too short: once more on a fresh one.
        const header = this.slab.subarray(at, at + HEADER_BYTES)
        this.newSlab(slabBytes)
        this.slab.set(header, 0)
        at = 0
        end = encode(this.slab, HEADER_BYTES, this.slab.length, a, b)
      }
    } finally {
      this.encoding = false
    }
    if (end === PACK_FAILED) return PACK_FAILED
    const length = end - at - HEADER_BYTES
    if (length > bodyBytesMax) return length
    this.slab.writeUInt32LE(length, at)
    this.slabAt = end
    this.queued(HEADER_BYTES + length)
    return length
  }

  /** sendFinal writes a last frame now and ends the socket (used for fatal errors). */
  sendFinal(type: FrameTypeValue, requestId: RequestIdRef, body: Uint8Array): void {
    if (this.closed) return
    this.send(type, requestId, body)
    this.flush()
    this.closed = true
    this.socket.end()
    // A peer that never reads would keep a half-closed socket forever.
    setTimeout(() => this.socket.destroy(), 1000).unref()
  }

  /** close ends the connection at once, dropping anything queued. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.dropQueued()
    this.socket.destroy()
  }

  private queued(bytes: number): void {
    this.queuedBytes += bytes
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
  }

  private writeHeader(type: FrameTypeValue, requestId: RequestIdRef, length: number): void {
    this.refuseWhileEncoding()
    if (this.slab.length - this.slabAt < HEADER_BYTES) this.newSlab(slabBytes)
    const out = this.slab
    const at = this.slabAt
    out[at] = length & 0xff
    out[at + 1] = (length >>> 8) & 0xff
    out[at + 2] = (length >>> 16) & 0xff
    out[at + 3] = length >>> 24
    out[at + 4] = type
    out[at + 5] = 0
    out[at + 6] = 0
    out[at + 7] = 0
    writeRequestId(out, at + 8, requestId)
    this.slabAt = at + HEADER_BYTES
  }

  /** refuseWhileEncoding throws when a frame is sent from inside another's in-place encoding (it would write over it). */
  private refuseWhileEncoding(): void {
    if (this.encoding) throw new Error('a frame was sent on this connection from inside the encoding of another (a getter of its value)')
  }

  /** place copies a small body (part) into the slab, or queues a large one by reference. */
  private place(part: Uint8Array): void {
    if (part.length < bodyCopyBytesMax) {
      if (this.slab.length - this.slabAt < part.length) this.newSlab(slabBytes)
      this.slab.set(part, this.slabAt)
      this.slabAt += part.length
      return
    }
    this.takeSlabRegion()
    this.chunks.push(part)
  }

  /** takeSlabRegion moves the slab's pending bytes to the chunk list. */
  private takeSlabRegion(): void {
    if (this.slabStart === this.slabAt) return
    this.chunks.push(this.slab.subarray(this.slabStart, this.slabAt))
    this.slabStart = this.slabAt
  }

  private newSlab(bytes: number): void {
    this.takeSlabRegion()
    this.slab = bytes === 0 ? emptySlab : Buffer.allocUnsafeSlow(bytes)
    this.slabStart = 0
    this.slabAt = 0
  }

  private dropQueued(): void {
    this.chunks = []
    this.slabStart = this.slabAt
    this.queuedBytes = 0
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.socket.destroyed) return this.dropQueued()
    this.takeSlabRegion()
    const chunks = this.chunks
    if (chunks.length === 0) return
    this.chunks = []
    this.queuedBytes = 0
    // An idle connection keeps at most one slab, with room left to be worth keeping.
    if (this.slab.length - this.slabAt < slabTailBytesMin) this.newSlab(0)
    // One write, or one writev for a slab region with large bodies between (no copy of those).
    if (chunks.length === 1) {
      this.socket.write(chunks[0]!)
    } else {
      this.socket.cork()
      for (const chunk of chunks) this.socket.write(chunk)
      this.socket.uncork()
    }
    this.updateReading()
  }

  private receive(chunk: Buffer): void {
    if (this.closed) return
    this.decoder.push(chunk)
    for (;;) {
      const result = this.decoder.next()
      if (result === null) break
      if ('error' in result) {
        this.options.onFatal(result.error)
        return
      }
      this.options.onFrame(result.frame)
      if (this.closed) return
    }
    this.updateReading()
  }

  /**
   * updateReading pauses or resumes reading from the outgoing byte count. A pause caused by
   * the socket's buffer always ends with 'drain', because writeBufferBytesMax is at least the
   * socket's high-water mark; a pause caused by queued frames ends at the next flush.
   */
  private updateReading(): void {
    const over = this.outgoingBytes > this.options.writeBufferBytesMax
    if (over && !this.readPaused) {
      this.readPaused = true
      this.socket.pause()
    } else if (!over && this.readPaused) {
      this.readPaused = false
      if (!this.closed) this.socket.resume()
    }
  }

  private handleClose(hadError: boolean): void {
    this.closed = true
    this.dropQueued()
    this.options.onClose(hadError ? new KvError(ErrorCode.CLOSED, 'connection closed with an error') : undefined)
  }
}
