/**
 * The file routes: GET|HEAD|PUT|DELETE /v1/files/{name} and GET /v1/files (list with paging).
 * GET honours If-None-Match (304) and a single `Range: bytes=` range (206, or 416 when it is
 * outside the file). PUT streams the body into the file store; a body over fileBytesMax gets
 * 413 as soon as Content-Length says so, or as soon as a chunked body passes the limit.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { pipeline } from 'node:stream/promises'
import { ErrorCode, KvError } from '../../errors.js'
import type { FileInfo, FileStore } from '../../files/index.js'
import type { ByteRange } from '../../files/reader.js'
import { declaredLength, notFound, readBody, sendJson } from './respond.js'

/** fileHeaders are the headers every file reply carries. */
function fileHeaders(info: FileInfo): Record<string, string> {
  return {
    'content-type': info.contentType,
    etag: info.etag,
    'last-modified': new Date(info.created).toUTCString(),
    'accept-ranges': 'bytes',
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    // Uploaded content is served from the UI's origin: never let it run script there.
    'content-security-policy': "sandbox; default-src 'none'; img-src 'self' data:; media-src 'self'; style-src 'unsafe-inline'",
  }
}

/** parseRange reads a single `bytes=` range; undefined means "send it all" (no header, or one we do not serve). */
export function parseRange(header: string | undefined, size: number): ByteRange | 'unsatisfiable' | undefined {
  if (header === undefined) return undefined
  const match = /^bytes=(\d*)-(\d*)$/.exec(header.trim())
  // Multiple ranges and other units may be ignored (RFC 9110 §14.2): the full body is a valid reply.
  if (match === null || (match[1] === '' && match[2] === '')) return undefined
  if (match[1] === '') {
    const suffix = Number(match[2])
    if (suffix === 0 || size === 0) return 'unsatisfiable'
    return { start: Math.max(0, size - suffix), end: size - 1 }
  }
  const start = Number(match[1])
  const end = match[2] === '' ? size - 1 : Math.min(Number(match[2]), size - 1)
  if (start >= size || end < start) return 'unsatisfiable'
  return { start, end }
}

function etagMatches(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false
  if (header.trim() === '*') return true
  return header.split(',').some((candidate) => candidate.trim().replace(/^W\//, '') === etag)
}

function contentDisposition(name: string): string {
  const base = name.split('/').pop() || 'file'
  return `attachment; filename="${base.replace(/[^\x20-\x7e]|["\\]/g, '_')}"; filename*=UTF-8''${encodeURIComponent(base)}`
}

/** CountBytes records file content moved through the front end (the metrics' file byte counter). */
export type CountBytes = (direction: 'in' | 'out', bytes: number) => void

async function getFile(files: FileStore, name: string, req: IncomingMessage, res: ServerResponse, url: URL, count: CountBytes): Promise<void> {
  // One manifest read serves the headers and the body, so both describe the same version.
  const file = await files.openFile(name)
  if (file === undefined) throw notFound(`file '${name}'`)
  const info = file.info
  const headers = fileHeaders(info)
  if (url.searchParams.get('download') === '1') headers['content-disposition'] = contentDisposition(name)
  if (etagMatches(req.headers['if-none-match'], info.etag)) {
    res.writeHead(304, headers).end()
    return
  }
  const ifRange = req.headers['if-range']
  const range = ifRange === undefined || ifRange === info.etag ? parseRange(req.headers.range, info.size) : undefined
  if (range === 'unsatisfiable') {
    const error = new KvError(ErrorCode.INVALID, `range ${req.headers.range} is outside the file (size ${info.size})`, { size: info.size })
    sendJson(res, 416, { error: error.toJSON() }, { 'content-range': `bytes */${info.size}` })
    return
  }
  const length = range === undefined ? info.size : range.end - range.start + 1
  headers['content-length'] = String(length)
  if (range !== undefined) headers['content-range'] = `bytes ${range.start}-${range.end}/${info.size}`
  if (req.method === 'HEAD') {
    res.writeHead(range === undefined ? 200 : 206, headers).end()
    return
  }
  res.writeHead(range === undefined ? 200 : 206, headers)
  if (file.inline !== undefined) {
    // A small file came with its manifest: one write, no stream to build and pipe.
    res.end(range === undefined ? file.inline : file.inline.subarray(range.start, range.end + 1))
  } else {
    await pipeline(file.read(range), res)
  }
  count('out', length)
}

/** checkFileLength refuses a PUT whose Content-Length is over fileBytesMax, before its body is read. */
export function checkFileLength(req: IncomingMessage, fileBytesMax: number): void {
  const length = req.method === 'PUT' ? declaredLength(req) : undefined
  if (length !== undefined && length > fileBytesMax) {
    throw new KvError(ErrorCode.FILE_TOO_LARGE, `file is ${length} bytes, more than fileBytesMax (${fileBytesMax})`, { bytes: length, fileBytesMax })
  }
}

async function putFile(files: FileStore, name: string, req: IncomingMessage, res: ServerResponse, count: CountBytes): Promise<void> {
  checkFileLength(req, files.config.fileBytesMax)
  const length = declaredLength(req)
  const contentType = req.headers['content-type']
  // A body that fits inline is read whole, with no async iterator or chunking per request; a
  // larger one streams. Stopping early must not destroy the socket: the 413 (or other error)
  // still has to be sent on it.
  const body =
    length !== undefined && length <= files.config.inlineBytesMax
      ? await readBody(req, length, (bytes) => new KvError(ErrorCode.INVALID, `body of ${bytes} bytes or more, Content-Length said ${length}`))
      : (req.iterator({ destroyOnReturn: false }) as AsyncIterable<Uint8Array>)
  const info = await files.putFile(name, body, contentType === undefined ? {} : { contentType })
  if (length !== undefined && info.size !== length) {
    // Node already refuses a body shorter than Content-Length; this guards the invariant anyway.
    throw new KvError(ErrorCode.INVALID, `body was ${info.size} bytes, Content-Length said ${length}`)
  }
  count('in', info.size)
  sendJson(res, 201, info, { etag: info.etag })
}

/** handleFile serves one file: GET, HEAD, PUT, DELETE. */
export async function handleFile(
  files: FileStore,
  name: string,
  req: IncomingMessage,
  res: ServerResponse,
  url: URL,
  count: CountBytes = () => undefined,
): Promise<void> {
  switch (req.method) {
    case 'GET':
    case 'HEAD':
      return getFile(files, name, req, res, url, count)
    case 'PUT':
      return putFile(files, name, req, res, count)
    case 'DELETE':
      if (!(await files.deleteFile(name))) throw notFound(`file '${name}'`)
      res.writeHead(204).end()
      return
    default:
      throw new KvError(ErrorCode.UNKNOWN_METHOD, `method ${req.method} is not allowed on /v1/files/{name}`)
  }
}

/** handleFileList serves GET /v1/files?prefix=&after=&limit=: `{ items: [FileInfo], next? }`. */
export async function handleFileList(files: FileStore, res: ServerResponse, url: URL): Promise<void> {
  const params = url.searchParams
  const limitText = params.get('limit')
  const limit = limitText === null ? undefined : Number(limitText)
  if (limitText !== null && !/^\d+$/.test(limitText)) throw new KvError(ErrorCode.INVALID, `limit must be a positive integer, got ${limitText}`)
  const page = await files.listFiles({
    prefix: params.get('prefix') ?? '',
    ...(params.get('after') !== null ? { after: params.get('after')! } : {}),
    ...(limit !== undefined ? { limit } : {}),
  })
  sendJson(res, 200, page)
}
