/**
 * Small HTTP helpers shared by the routes: JSON replies, errors as `{ error: { code, message } }`
 * with the status that matches the KV_ERR code, and request bodies read with a byte bound that
 * is checked against Content-Length before anything is read.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { ErrorCode, KvError, isKvError, type ErrorCodeName } from '../../errors.js'

const statusOfCode: Partial<Record<ErrorCodeName, number>> = {
  [ErrorCode.INVALID]: 400,
  [ErrorCode.PROTOCOL]: 400,
  [ErrorCode.CROSS_SHARD_BATCH]: 400,
  [ErrorCode.AUTH]: 401,
  [ErrorCode.NOT_FOUND]: 404,
  [ErrorCode.UNKNOWN_METHOD]: 405,
  [ErrorCode.KEY_TOO_LARGE]: 413,
  [ErrorCode.VALUE_TOO_LARGE]: 413,
  [ErrorCode.BATCH_TOO_LARGE]: 413,
  [ErrorCode.FRAME_TOO_LARGE]: 413,
  [ErrorCode.FILE_TOO_LARGE]: 413,
  [ErrorCode.TOO_MANY_REQUESTS]: 429,
  [ErrorCode.TOO_MANY_CONNECTIONS]: 503,
  [ErrorCode.UNAVAILABLE]: 503,
  [ErrorCode.NOT_LEADER]: 503,
  [ErrorCode.WRONG_SHARD]: 503,
  [ErrorCode.STALE_EPOCH]: 503,
  [ErrorCode.CLOSED]: 503,
  [ErrorCode.DISK_FULL]: 507,
  [ErrorCode.TIMEOUT]: 504,
}

/** statusOf maps an error to its HTTP status: the table above for KvErrors, 500 for bugs. */
export function statusOf(error: unknown): number {
  return isKvError(error) ? (statusOfCode[error.code] ?? 500) : 500
}

/** sendJson writes a JSON reply. */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  // A string body goes out in one write with the headers (Node prepends them); a Buffer takes a writev.
  const text = JSON.stringify(body)
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': String(Buffer.byteLength(text, 'utf8')), ...headers })
  res.end(text, 'utf8')
}

/** sendError writes `{ error: { code, message } }`; an unexpected error is reported as KV_ERR_INTERNAL without its details. */
export function sendError(res: ServerResponse, error: unknown, headers: Record<string, string> = {}): void {
  const kvError = isKvError(error) ? error : new KvError(ErrorCode.INTERNAL, 'internal error')
  if (res.headersSent) {
    // Too late for a status: cut the stream so the client sees a truncated reply, not a short one.
    res.destroy(kvError)
    return
  }
  sendJson(res, statusOf(kvError), { error: kvError.toJSON() }, headers)
}

/** notFound is the 404 error for a missing key, file or route. */
export function notFound(what: string): KvError {
  return new KvError(ErrorCode.NOT_FOUND, `${what} not found`)
}

/** declaredLength is the request's Content-Length, or undefined for a chunked body. */
export function declaredLength(req: IncomingMessage): number | undefined {
  const header = req.headers['content-length']
  if (header === undefined) return undefined
  const length = Number(header)
  if (!/^\d+$/.test(header) || !Number.isSafeInteger(length)) throw new KvError(ErrorCode.INVALID, 'Content-Length is not a number')
  return length
}

/**
 * readBody reads a whole request body of at most `bytesMax` bytes into one Buffer, refusing
 * early when Content-Length already says more. Plain 'data'/'end' listeners, not an async
 * iterator: small bodies (keys, inline files) are the common case, and the iterator's promise
 * per chunk was a measurable share of a small upload. A connection lost before the end rejects.
 */
export function readBody(req: IncomingMessage, bytesMax: number, tooLarge: (bytes: number) => KvError): Promise<Buffer> {
  let length: number | undefined
  try {
    length = declaredLength(req)
  } catch (error) {
    return Promise.reject(error)
  }
  if (length !== undefined && length > bytesMax) return Promise.reject(tooLarge(length))
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = []
    let total = 0
    const fail = (error: Error): void => {
      done()
      reject(error)
    }
    const onData = (piece: Buffer): void => {
      total += piece.length
      if (total > bytesMax) {
        fail(tooLarge(total))
        req.destroy()
        return
      }
      pieces.push(piece)
    }
    const onEnd = (): void => {
      done()
      // Node's parser ends the body at Content-Length; this guards the invariant anyway.
      if (length !== undefined && total !== length) reject(new KvError(ErrorCode.INVALID, `body was ${total} bytes, Content-Length said ${length}`))
      else resolve(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces, total))
    }
    const onClose = (): void => fail(new KvError(ErrorCode.INVALID, `the connection closed after ${total} body bytes`))
    const done = (): void => {
      req.off('data', onData).off('end', onEnd).off('close', onClose).off('error', fail)
    }
    req.on('data', onData).once('end', onEnd).once('close', onClose).once('error', fail)
  })
}

/** parseJson parses a request body as JSON, as KV_ERR_INVALID when it is not. */
export function parseJson(body: Buffer): unknown {
  try {
    return JSON.parse(body.toString('utf8'))
  } catch {
    throw new KvError(ErrorCode.INVALID, 'request body is not valid JSON')
  }
}

/** decodeSegment percent-decodes one path segment as UTF-8, as KV_ERR_INVALID when it is malformed. */
export function decodeSegment(segment: string, what: string): string {
  try {
    return decodeURIComponent(segment)
  } catch {
    throw new KvError(ErrorCode.INVALID, `${what} is not valid percent-encoded UTF-8`)
  }
}
