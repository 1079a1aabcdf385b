/**
 * FrameConnection: one socket speaking frames, shared by server and client sides.
 *
 * Writes are coalesced: frames queued during one turn of the event loop are written together
 * from a `setImmediate`, headers and small bodies copied into one buffer and large bodies by
 * reference, in one writev, so a burst of replies costs one syscall instead of one per frame.
 *
 * Backpressure: when the bytes waiting to go out (queued plus the socket's own buffer) pass
 * `writeBufferBytesMax`, the connection pauses reading, so a peer that never reads cannot
 * make us buffer more than that bound plus the replies already being computed; reading
 * resumes on 'drain'.
 */
import type { Socket } from 'node:net'
import { ErrorCode, KvError } from '../errors.js'
import { FrameDecoder, HEADER_BYTES, type Frame, type FrameTypeValue } from './frame.js'

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

/** bodyLength is the byte length of a body given as one buffer or as parts. */
export function bodyLength(body: FrameBody): number {
  if (body instanceof Uint8Array) return body.length
  let length = 0
  for (const part of body) length += part.length
  return length
}

interface QueuedFrame {
  type: FrameTypeValue
  requestId: Uint8Array
  body: FrameBody
  length: number
}

/** FrameConnection frames a socket: decodes incoming frames and coalesces outgoing ones. */
export class FrameConnection {
  readonly socket: Socket
  private readonly decoder: FrameDecoder
  private readonly options: FrameConnectionOptions
  private queue: QueuedFrame[] = []
  private queuedBytes = 0
  private flushScheduled = false
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

  /** send queues one frame; it goes out with everything else queued in this turn. */
  send(type: FrameTypeValue, requestId: Uint8Array, body: FrameBody): void {
    if (this.closed) return
    const length = bodyLength(body)
    this.queue.push({ type, requestId, body, length })
    this.queuedBytes += HEADER_BYTES + length
    if (!this.flushScheduled) {
      this.flushScheduled = true
      setImmediate(() => this.flush())
    }
  }

  /** sendFinal writes a last frame now and ends the socket (used for fatal errors). */
  sendFinal(type: FrameTypeValue, requestId: Uint8Array, body: Uint8Array): void {
    if (this.closed) return
    this.queue.push({ type, requestId, body, length: body.length })
    this.queuedBytes += HEADER_BYTES + body.length
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
    this.queue = []
    this.queuedBytes = 0
    this.socket.destroy()
  }

  private flush(): void {
    this.flushScheduled = false
    if (this.queue.length === 0 || this.socket.destroyed) return
    // Headers and small bodies are copied into one buffer; large bodies (a page of values, a
    // kv.multi of puts) go out as they are, in the same writev, to spare a copy and an allocation.
    // A body given as parts is copied part by part under the same rule.
    let copiedBytes = 0
    for (const frame of this.queue) {
      copiedBytes += HEADER_BYTES
      if (frame.body instanceof Uint8Array) copiedBytes += frame.body.length < bodyCopyBytesMax ? frame.body.length : 0
      else for (const part of frame.body) copiedBytes += part.length < bodyCopyBytesMax ? part.length : 0
    }
    const out = Buffer.allocUnsafe(copiedBytes)
    const chunks: Uint8Array[] = []
    let start = 0
    let offset = 0
    const place = (part: Uint8Array): void => {
      if (part.length < bodyCopyBytesMax) {
        out.set(part, offset)
        offset += part.length
      } else {
        if (start < offset) chunks.push(out.subarray(start, offset))
        chunks.push(part)
        start = offset
      }
    }
    for (const frame of this.queue) {
      const length = frame.length
      out[offset] = length & 0xff
      out[offset + 1] = (length >>> 8) & 0xff
      out[offset + 2] = (length >>> 16) & 0xff
      out[offset + 3] = length >>> 24
      out[offset + 4] = frame.type
      out[offset + 5] = 0
      out[offset + 6] = 0
      out[offset + 7] = 0
      out.set(frame.requestId, offset + 8)
      offset += HEADER_BYTES
      if (frame.body instanceof Uint8Array) place(frame.body)
      else for (const part of frame.body) place(part)
    }
    if (start < offset) chunks.push(out.subarray(start, offset))
    this.queue = []
    this.queuedBytes = 0
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
    this.queue = []
    this.queuedBytes = 0
    this.options.onClose(hadError ? new KvError(ErrorCode.CLOSED, 'connection closed with an error') : undefined)
  }
}
