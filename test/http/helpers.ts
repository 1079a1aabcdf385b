/**
 * Test helpers for the HTTP front end: a server over a fresh local database, in this process
 * or in a child process (when the server's own memory is what is measured).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { open, type DistKV } from '../../src/index.js'
import { startHttpServer, type HttpServerHandle, type HttpServerOptions } from '../../src/proxy/http/index.js'
import { cleanup, killServers, makeTempDir } from '../local/helpers.js'

/** TestServer is an HTTP server over a fresh local database. */
export interface TestServer {
  url: string
  kv: DistKV
  http: HttpServerHandle
  dir: string
  close(): Promise<void>
}

/** startTestServer opens a fresh database and serves it over HTTP in this process. */
export async function startTestServer(options: Partial<HttpServerOptions> = {}): Promise<TestServer> {
  const dir = makeTempDir('distkv-http-')
  const kv = await open(dir, { name: 'http-test', idleTimeoutSeconds: 0 })
  const http = await startHttpServer({ kv, sweepIntervalMs: 0, ...options, files: { garbageGraceMs: 0, ...options.files } })
  return {
    url: http.url,
    kv,
    http,
    dir,
    close: async () => {
      await http.close()
      await kv.close()
      await cleanup(dir)
    },
  }
}

/** ChildServer is an HTTP server running in its own process (fixtures/server.ts). */
export interface ChildServer {
  url: string
  pid: number
  close(): Promise<void>
}

const fixture = fileURLToPath(new URL('./fixtures/server.js', import.meta.url))

/** startChildServer runs the fixture server on a fresh database and waits for its address. */
export async function startChildServer(fileBytesMax?: number): Promise<ChildServer> {
  const dir = makeTempDir('distkv-http-child-')
  const child: ChildProcess = spawn(process.execPath, [fixture, dir, ...(fileBytesMax ? [String(fileBytesMax)] : [])], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const line = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).once('line', resolve)
    child.once('exit', (code) => reject(new Error(`fixture server exited with ${code}`)))
  })
  const { url, pid } = JSON.parse(line) as { url: string; pid: number }
  return {
    url,
    pid,
    close: async () => {
      const exited = new Promise((resolve) => child.once('exit', resolve))
      if (child.exitCode === null) child.kill('SIGKILL')
      await exited
      await killServers(dir)
      await cleanup(dir)
    },
  }
}

/** RawReply is a reply read whole. */
export interface RawReply {
  status: number
  headers: IncomingMessage['headers']
  body: Buffer
}

/** raw sends one request with node:http (full control over headers and body) and reads the whole reply. */
export function raw(
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: Buffer | string; path?: string } = {},
): Promise<RawReply> {
  return new Promise((resolve, reject) => {
    // `path` is sent as given: a URL would have its '..' segments normalized away by the client.
    const target = new URL(url)
    const path = options.path ?? target.pathname + target.search
    const request = { host: target.hostname, port: target.port, path, method: options.method ?? 'GET', headers: options.headers ?? {} }
    const req = httpRequest(request, (res) => {
      const parts: Buffer[] = []
      res.on('data', (part: Buffer) => parts.push(part))
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }))
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end(options.body)
  })
}

/** rssBytes reads a process's resident set size from /proc. */
export function rssBytes(pid: number, readFile: (path: string) => string): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFile(`/proc/${pid}/status`))
  if (match === null) throw new Error(`no VmRSS for pid ${pid}`)
  return Number(match[1]) * 1024
}
