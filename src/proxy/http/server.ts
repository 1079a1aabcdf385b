/**
 * The HTTP front end (CONTRACT.md "HTTP"): keys, batch, files, cluster view, health,
 * Prometheus metrics, the OpenAPI description and the web UI, over any DistKV, so the same
 * code serves a local-mode database today and sits in every cluster proxy.
 *
 * Limits: request headers (headerBytesMax), time to receive a whole request
 * (requestTimeoutMs) and its headers (headersTimeoutMs), idle sockets (idleTimeoutMs),
 * connections (connectionsMax), and per-route body sizes (value, batch, file). A request
 * refused before its body was read closes its connection, so the unread body is never parsed.
 */
import { createHash, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import type { DistKV } from '../../client/types.js'
import { ErrorCode, KvError } from '../../errors.js'
import { FileStore, type FileStoreOptions } from '../../files/index.js'
import { checkFileName } from '../../files/keys.js'
import { uiAssets, type UiAsset } from '../../ui/assets.js'
import { localClusterView, type ClusterView } from './cluster.js'
import { HttpMetrics, type RaftMetricsSource } from './metrics.js'
import { openApiDocument } from './openapi.js'
import { decodeSegment, notFound, sendError, sendJson, statusOf } from './respond.js'
import { checkFileLength, handleFile, handleFileList } from './routes-files.js'
import { checkValueLength, handleBatch, handleKey, handleList } from './routes-kv.js'

/** HttpServerOptions configures startHttpServer; only `kv` is required. */
export interface HttpServerOptions {
  kv: DistKV
  /** host: address to listen on (default 127.0.0.1). */
  host?: string
  /** port: 0 (the default) picks a free port; see the handle's `url`. */
  port?: number
  /** cluster: the body of GET /v1/cluster; defaults to a one-node local description. */
  cluster?: () => Promise<ClusterView | object>
  /** health: resolves when this node can serve, rejects (with the reason) when not; default: a read through kv. */
  health?: () => Promise<void>
  /** raftMetrics: Raft and shard figures for /metrics, pulled at each scrape. */
  raftMetrics?: RaftMetricsSource
  /** token: when set, /v1/* requires `Authorization: Bearer <token>`. */
  token?: string
  files?: FileStoreOptions
  headerBytesMax?: number
  requestTimeoutMs?: number
  headersTimeoutMs?: number
  idleTimeoutMs?: number
  connectionsMax?: number
  /** uploadsMax / downloadsMax: file transfers in flight at once (each holds a few chunks); more get 429. */
  uploadsMax?: number
  downloadsMax?: number
  /** sweepIntervalMs: how often the file collector runs a bounded pass; 0 = never (default 60 s). */
  sweepIntervalMs?: number
  /** log: where unexpected errors go (default: stderr). */
  log?: (line: string) => void
}

/** httpDefaults are the defaults of the HttpServerOptions limits. */
export const httpDefaults = Object.freeze({
  headerBytesMax: 16 * 1024,
  requestTimeoutMs: 10 * 60_000,
  headersTimeoutMs: 20_000,
  idleTimeoutMs: 60_000,
  connectionsMax: 1024,
  sweepIntervalMs: 60_000,
  healthTimeoutMs: 2_000,
  uploadsMax: 32,
  downloadsMax: 128,
})

/** HttpServerHandle is a running HTTP front end. */
export interface HttpServerHandle {
  /** url: the base URL, e.g. http://127.0.0.1:7700 */
  readonly url: string
  readonly port: number
  readonly server: Server
  readonly metrics: HttpMetrics
  readonly files: FileStore
  close(): Promise<void>
}

interface Context {
  kv: DistKV
  files: FileStore
  metrics: HttpMetrics
  options: HttpServerOptions
  url: () => string
  tokenDigest: Buffer | undefined
  assets: Map<string, UiAsset>
  /** transfers counts file uploads and downloads in flight, against their maxima. */
  transfers: { uploads: number; downloads: number; uploadsMax: number; downloadsMax: number }
}

function positive(value: number | undefined, field: string, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isInteger(value) || value < 0) throw new KvError(ErrorCode.INVALID, `${field} must be an integer >= 0, got ${value}`, { field })
  return value
}

/** startHttpServer listens and resolves once the server accepts connections. */
export async function startHttpServer(options: HttpServerOptions): Promise<HttpServerHandle> {
  if (options?.kv === undefined) throw new KvError(ErrorCode.INVALID, 'startHttpServer needs a kv')
  const headerBytesMax = positive(options.headerBytesMax, 'headerBytesMax', httpDefaults.headerBytesMax)
  const files = new FileStore(options.kv, options.files)
  const metrics = new HttpMetrics(options.raftMetrics)
  let base = ''
  const context: Context = {
    kv: options.kv,
    files,
    metrics,
    options,
    url: () => base,
    tokenDigest: options.token === undefined ? undefined : createHash('sha256').update(options.token).digest(),
    assets: await uiAssets(),
    transfers: {
      uploads: 0,
      downloads: 0,
      uploadsMax: positive(options.uploadsMax, 'uploadsMax', httpDefaults.uploadsMax),
      downloadsMax: positive(options.downloadsMax, 'downloadsMax', httpDefaults.downloadsMax),
    },
  }
  const server = createServer({ maxHeaderSize: headerBytesMax }, (req, res) => void serve(context, req, res))
  server.requestTimeout = positive(options.requestTimeoutMs, 'requestTimeoutMs', httpDefaults.requestTimeoutMs)
  server.headersTimeout = positive(options.headersTimeoutMs, 'headersTimeoutMs', httpDefaults.headersTimeoutMs)
  server.timeout = positive(options.idleTimeoutMs, 'idleTimeoutMs', httpDefaults.idleTimeoutMs)
  server.maxConnections = positive(options.connectionsMax, 'connectionsMax', httpDefaults.connectionsMax)
  server.on('checkContinue', (req, res) => void serve(context, req, res, true))
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })
  const address = server.address() as AddressInfo
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address
  base = `http://${host}:${address.port}`
  const stopSweeper = startSweeper(files, positive(options.sweepIntervalMs, 'sweepIntervalMs', httpDefaults.sweepIntervalMs), log(options))
  return {
    url: base,
    port: address.port,
    server,
    metrics,
    files,
    close: async () => {
      await stopSweeper()
      await new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      })
    },
  }
}

function log(options: HttpServerOptions): (line: string) => void {
  return options.log ?? ((line) => process.stderr.write(`distkv http: ${line}\n`))
}

function startSweeper(files: FileStore, intervalMs: number, report: (line: string) => void): () => Promise<void> {
  if (intervalMs === 0) return async () => undefined
  let after: string | undefined
  let running: Promise<void> | undefined
  let stopped = false
  const timer = setInterval(() => {
    if (running !== undefined) return
    running = files
      .sweep({ ...(after !== undefined ? { after } : {}) })
      .then((result) => void (after = result.next))
      .catch((error: unknown) => {
        if (!stopped) report(`file sweep failed: ${(error as Error).message}`)
      })
      .finally(() => (running = undefined))
  }, intervalMs)
  timer.unref()
  // Stopping waits for a pass in progress, so the caller may close the DistKV right after.
  return async () => {
    stopped = true
    clearInterval(timer)
    await running
  }
}

/** noQuery stands for the URL of a request without a query string (handlers only read `searchParams`). */
const noQuery: URL = new URL('http://localhost/')

/** serve answers one request and records its metrics; `expectsContinue` is set for `Expect: 100-continue`. */
async function serve(context: Context, req: IncomingMessage, res: ServerResponse, expectsContinue = false): Promise<void> {
  const started = process.hrtime.bigint()
  const rawPath = (req.url ?? '/').split('?')[0]!
  let route = 'unknown'
  res.once('finish', () => context.metrics.observe(route, req.method ?? '', res.statusCode, Number(process.hrtime.bigint() - started) / 1e9))
  try {
    // Handlers read only the query string: a request without one (every upload) skips the URL parse.
    const url = req.url !== undefined && req.url.includes('?') ? new URL(req.url, 'http://localhost') : noQuery
    const handler = resolveRoute(context, rawPath, req, res, url)
    route = handler.route
    if (handler.route.startsWith('v1_')) checkToken(context, req)
    // Refuse an over-long body before the client sends it (with Expect: 100-continue) or before reading it.
    handler.precheck?.()
    if (expectsContinue) res.writeContinue()
    await handler.run()
  } catch (error) {
    // A client that went away mid-request is not a server fault: there is nobody to answer.
    if (req.destroyed && !req.complete) return
    if (statusOf(error) === 500) log(context.options)(`${req.method} ${rawPath}: ${(error as Error)?.stack ?? String(error)}`)
    // A body we did not read to its end must not be parsed as the next request.
    const unread = !req.complete
    sendError(res, error, unread ? { connection: 'close' } : {})
    if (unread) res.once('finish', () => req.socket.destroySoon())
  }
}

function checkToken(context: Context, req: IncomingMessage): void {
  if (context.tokenDigest === undefined) return
  const header = req.headers.authorization ?? ''
  const given = header.startsWith('Bearer ') ? header.slice(7) : ''
  const digest = createHash('sha256').update(given).digest()
  if (!timingSafeEqual(digest, context.tokenDigest)) throw new KvError(ErrorCode.AUTH, 'missing or wrong token (Authorization: Bearer TOKEN)')
}

interface Route {
  route: string
  run: () => Promise<void>
  /** precheck throws when the request can be refused from its headers alone. */
  precheck?: () => void
}

function only(method: string | string[], req: IncomingMessage, what: string): void {
  const allowed = Array.isArray(method) ? method : [method]
  if (!allowed.includes(req.method ?? '')) throw new KvError(ErrorCode.UNKNOWN_METHOD, `method ${req.method} is not allowed on ${what}`)
}

/** resolveRoute matches the raw (not normalized) path, so '..' in a file name is a name, never a path step. */
function resolveRoute(context: Context, path: string, req: IncomingMessage, res: ServerResponse, url: URL): Route {
  const { kv, files } = context
  if (path.startsWith('/v1/kv/')) {
    const segment = path.slice('/v1/kv/'.length)
    if (segment.includes('/')) throw new KvError(ErrorCode.INVALID, 'a key is one path segment: percent-encode "/" as %2F')
    const key = decodeSegment(segment, 'key')
    return { route: 'v1_kv_key', run: () => handleKey(kv, key, req, res, url), precheck: () => checkValueLength(req) }
  }
  if (path.startsWith('/v1/files/')) {
    const name = checkFileName(decodeSegment(path.slice('/v1/files/'.length), 'file name'))
    const run = (): Promise<void> => handleFile(files, name, req, res, url, (direction, bytes) => context.metrics.countFileBytes(direction, bytes))
    return { route: 'v1_files_name', run: () => bounded(context, req, run), precheck: () => checkFileLength(req, files.config.fileBytesMax) }
  }
  switch (path) {
    case '/v1/kv':
      only('GET', req, path)
      return { route: 'v1_kv_list', run: () => handleList(kv, res, url) }
    case '/v1/batch':
      return { route: 'v1_batch', run: () => handleBatch(kv, req, res, url) }
    case '/v1/files':
      only('GET', req, path)
      return { route: 'v1_files_list', run: () => handleFileList(files, res, url) }
    case '/v1/cluster':
      only('GET', req, path)
      return { route: 'v1_cluster', run: async () => sendJson(res, 200, await clusterView(context), { 'cache-control': 'no-store' }) }
    case '/v1/openapi.json':
      only('GET', req, path)
      return { route: 'openapi', run: async () => sendJson(res, 200, openApiDocument(context.url())) }
    case '/healthz':
      only(['GET', 'HEAD'], req, path)
      return { route: 'healthz', run: () => health(context, res) }
    case '/metrics':
      only('GET', req, path)
      return { route: 'metrics', run: () => sendMetrics(context, res) }
  }
  const asset = context.assets.get(path)
  if (asset !== undefined) {
    only(['GET', 'HEAD'], req, path)
    return { route: 'ui', run: async () => sendAsset(asset, req, res) }
  }
  return { route: 'unknown', run: async () => Promise.reject(notFound(`route ${path}`)) }
}

/** bounded runs a file transfer if one of its kind is free, so memory stays within (uploadsMax + downloadsMax) x a few chunks. */
async function bounded(context: Context, req: IncomingMessage, run: () => Promise<void>): Promise<void> {
  const kind = req.method === 'PUT' ? 'uploads' : req.method === 'GET' ? 'downloads' : undefined
  if (kind === undefined) return run()
  const t = context.transfers
  const max = kind === 'uploads' ? t.uploadsMax : t.downloadsMax
  if (t[kind] >= max) {
    throw new KvError(ErrorCode.TOO_MANY_REQUESTS, `too many file ${kind} in flight: ${kind}Max (${max}); retry later`, { [`${kind}Max`]: max })
  }
  t[kind]++
  try {
    await run()
  } finally {
    t[kind]--
  }
}

async function clusterView(context: Context): Promise<object> {
  const frontEnd = { url: context.url(), requestsTotal: context.metrics.requestsTotal }
  if (context.options.cluster === undefined) return { ...(await localClusterView(context.kv, { http: frontEnd.url, opsTotal: frontEnd.requestsTotal })), frontEnd }
  // The dashboard turns this front end's request count into ops/s when the nodes carry none.
  return { ...(await context.options.cluster()), frontEnd }
}

async function health(context: Context, res: ServerResponse): Promise<void> {
  const probe = context.options.health ?? (async () => void (await context.kv.getSize('distkv:healthz')))
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new KvError(ErrorCode.UNAVAILABLE, `no answer within ${httpDefaults.healthTimeoutMs} ms`)), httpDefaults.healthTimeoutMs)
  })
  try {
    await Promise.race([probe(), timeout])
    sendJson(res, 200, { ok: true }, { 'cache-control': 'no-store' })
  } catch (error) {
    const reason = error instanceof KvError ? error : new KvError(ErrorCode.UNAVAILABLE, (error as Error)?.message ?? 'unhealthy')
    sendJson(res, 503, { ok: false, error: reason.toJSON() }, { 'cache-control': 'no-store' })
  } finally {
    clearTimeout(timer)
  }
}

async function sendMetrics(context: Context, res: ServerResponse): Promise<void> {
  const text = await context.metrics.registry.metrics()
  res.writeHead(200, { 'content-type': context.metrics.registry.contentType, 'cache-control': 'no-store' })
  res.end(text)
}

function sendAsset(asset: UiAsset, req: IncomingMessage, res: ServerResponse): void {
  const headers = {
    'content-type': asset.contentType,
    etag: asset.etag,
    'cache-control': 'no-cache',
    'x-content-type-options': 'nosniff',
    'content-security-policy': "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; script-src 'self'; connect-src 'self'",
    'referrer-policy': 'no-referrer',
  }
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers).end()
    return
  }
  res.writeHead(200, { ...headers, 'content-length': String(asset.body.length) })
  res.end(req.method === 'HEAD' ? undefined : asset.body)
}
