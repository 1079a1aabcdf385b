/**
 * Frame layer of the distkv wire protocol: the fixed header, frame encoding and a streaming
 * decoder that turns arbitrary socket chunks into whole frames.
 *
 * Fault model: the peer may send anything (garbage, truncated frames, absurd lengths). The
 * decoder never throws on input; it returns a typed error, and it checks each declared
 * length against `frameBytesMax` before buffering or allocating the frame, so a hostile
 * length costs no memory. After an error the decoder is poisoned: the caller closes.
 *
 * Header (little endian, 24 bytes):
 *   0  u32  bodyBytes      length of the body that follows the header
 *   4  u8   type           FrameType
 *   5  u8   flags          reserved, must be 0 in version 1
 *   6  u16  reserved       must be 0 in version 1
 *   8  16B  requestId      raw UUID bytes; all zero for connection-level frames
 */
import { ErrorCode, KvError } from '../errors.js'

/** HEADER_BYTES is the size of the fixed frame header. */
export const HEADER_BYTES = 24

/** FrameType names every frame of protocol version 1. */
export const FrameType = {
  /** HELLO: client -> server, first frame; body {version, clientId, name, pid, token}. */
  HELLO: 1,
  /** HELLO_OK: server -> client; body serverInfo. */
  HELLO_OK: 2,
  /** REQUEST: client -> server; body [method, params]. */
  REQUEST: 3,
  /** RESPONSE: server -> client; body result. */
  RESPONSE: 4,
  /** ERROR: server -> client; body {code, message, details}; zero id = connection error. */
  ERROR: 5,
  /** STREAM_OPEN: client -> server; body [method, params, windowPages]. */
  STREAM_OPEN: 6,
  /** STREAM_PAGE: server -> client; body one page. */
  STREAM_PAGE: 7,
  /** STREAM_END: server -> client; empty body, the stream is complete. */
  STREAM_END: 8,
  /** STREAM_CREDIT: client -> server; body u32 more pages the client can take. */
  STREAM_CREDIT: 9,
  /** CANCEL: client -> server; empty body, abandon the request or stream with this id. */
  CANCEL: 10,
} as const

/** FrameTypeValue is the numeric type byte of a frame. */
export type FrameTypeValue = (typeof FrameType)[keyof typeof FrameType]

const frameTypeMax = FrameType.CANCEL

/** Frame is one decoded frame; `body` may share memory with the socket chunk it came in. */
export interface Frame {
  type: FrameTypeValue
  flags: number
  requestId: Buffer
  body: Buffer
}

/** ZERO_ID is the request id of connection-level frames (hello, fatal errors). */
export const ZERO_ID: Buffer = Buffer.alloc(16)

/** encodeFrameHeader writes a frame header for a body of `bodyBytes` into a new buffer. */
export function encodeFrameHeader(type: FrameTypeValue, requestId: Uint8Array, bodyBytes: number): Buffer {
  const header = Buffer.allocUnsafe(HEADER_BYTES)
  header.writeUInt32LE(bodyBytes, 0)
  header[4] = type
  header[5] = 0
  header.writeUInt16LE(0, 6)
  header.set(requestId.subarray(0, 16), 8)
  return header
}

/** encodeFrame returns header and body as one buffer (used by tests and small frames). */
export function encodeFrame(type: FrameTypeValue, requestId: Uint8Array, body: Uint8Array): Buffer {
  return Buffer.concat([encodeFrameHeader(type, requestId, body.length), body])
}

/** DecodeResult is what FrameDecoder.next returns: a frame, nothing yet, or a typed error. */
export type DecodeResult = { frame: Frame } | { error: KvError } | null

/**
 * FrameDecoder reassembles frames from chunks; its buffered bytes never exceed one frame
 * (at most HEADER_BYTES + frameBytesMax) plus the unread part of the last chunk.
 */
export class FrameDecoder {
  /** frameBytesMax is the largest body accepted; a server lowers it until the hello is accepted. */
  frameBytesMax: number
  private chunks: Buffer[] = []
  // Invariant: firstOffset < chunks[0].length (bytes of the first chunk already consumed), 0 without chunks.
  private firstOffset = 0
  private bufferedBytes = 0
  private failed: KvError | undefined

  constructor(frameBytesMax: number) {
    this.frameBytesMax = frameBytesMax
  }

  /** buffered is the number of bytes held waiting for the rest of a frame. */
  get buffered(): number {
    return this.bufferedBytes
  }

  /** push adds bytes read from the socket; call next() until it returns null. */
  push(chunk: Buffer): void {
    if (this.failed !== undefined || chunk.length === 0) return
    this.chunks.push(chunk)
    this.bufferedBytes += chunk.length
  }

  /** next returns the next whole frame, null when more bytes are needed, or an error (sticky). */
  next(): DecodeResult {
    if (this.failed !== undefined) return { error: this.failed }
    if (this.bufferedBytes < HEADER_BYTES) return null
    // The header is read where it lies when the first chunk holds all of it (the common case).
    let header = this.chunks[0]!
    let at = this.firstOffset
    if (header.length - at < HEADER_BYTES) {
      header = this.gather(HEADER_BYTES, false)
      at = 0
    }
    const bodyBytes = header.readUInt32LE(at)
    const type = header[at + 4]!
    if (bodyBytes > this.frameBytesMax) {
      return this.fail(
        new KvError(ErrorCode.FRAME_TOO_LARGE, `frame of ${bodyBytes} bytes exceeds frameBytesMax (${this.frameBytesMax})`, {
          frameBytes: bodyBytes,
          frameBytesMax: this.frameBytesMax,
        }),
      )
    }
    if (type < 1 || type > frameTypeMax || header[at + 5] !== 0 || header.readUInt16LE(at + 6) !== 0) {
      return this.fail(new KvError(ErrorCode.PROTOCOL, `malformed frame header (type ${type}, flags ${header[at + 5]})`))
    }
    const frameBytes = HEADER_BYTES + bodyBytes
    if (this.bufferedBytes < frameBytes) return null
    return { frame: this.takeFrame(type as FrameTypeValue, frameBytes) }
  }

  private fail(error: KvError): DecodeResult {
    this.failed = error
    this.chunks = []
    this.firstOffset = 0
    this.bufferedBytes = 0
    return { error }
  }

  /**
   * takeFrame consumes one whole frame of `frameBytes` bytes. A frame inside the first chunk
   * is viewed where it lies: only its id and body views are made, the chunk is not re-sliced
   * (that was two more Buffer objects per frame); a frame across chunks is copied together.
   */
  private takeFrame(type: FrameTypeValue, frameBytes: number): Frame {
    const first = this.chunks[0]!
    let whole = first
    let at = this.firstOffset
    if (first.length - at >= frameBytes) {
      this.firstOffset = at + frameBytes
      this.bufferedBytes -= frameBytes
      if (this.firstOffset === first.length) {
        this.chunks.shift()
        this.firstOffset = 0
      }
    } else {
      whole = this.gather(frameBytes, true)
      at = 0
    }
    return { type, flags: 0, requestId: whole.subarray(at + 8, at + HEADER_BYTES), body: whole.subarray(at + HEADER_BYTES, at + frameBytes) }
  }

  /** gather copies the first n buffered bytes (n <= buffered) into a new buffer, consuming them if asked. */
  private gather(n: number, consume: boolean): Buffer {
    const out = Buffer.allocUnsafe(n)
    let copied = 0
    let index = 0
    let offset = this.firstOffset
    while (copied < n) {
      const chunk = this.chunks[index]!
      const part = Math.min(chunk.length - offset, n - copied)
      chunk.copy(out, copied, offset, offset + part)
      copied += part
      if (consume && offset + part === chunk.length) {
        this.chunks.shift()
        offset = 0
      } else if (consume) {
        offset += part
      } else {
        index++
        offset = 0
      }
    }
    if (consume) {
      this.firstOffset = offset
      this.bufferedBytes -= n
    }
    return out
  }
}
