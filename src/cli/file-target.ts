/**
 * Where `distkv upload` and `distkv download` send and fetch files: through the client
 * library (`--db DIR`, or `--endpoint HOST:PORT` of an RPC listener) or through the HTTP API
 * (`--endpoint http://HOST:PORT`). Both stream: neither holds a whole file.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http'
import { request as httpsRequest } from 'node:https'
import { Readable } from 'node:stream'
import type { DistKV } from '../client/types.js'
import { ErrorCode, KvError, kvErrorFrom } from '../errors.js'
import { files, type FileInfo } from '../files/index.js'

/** FileTarget is the file half of a database, as the two commands need it. */
export interface FileTarget {
  put(name: string, body: Readable, size: number, contentType: string): Promise<FileInfo>
  /** get resolves to undefined when there is no such file. */
  get(name: string): Promise<{ size: number; stream: Readable } | undefined>
}

/** libraryTarget uses the file store over a DistKV connection. */
export function libraryTarget(kv: DistKV): FileTarget {
  const store = files(kv)
  return {
    put: (name, body, _size, contentType) => store.putFile(name, body, { contentType }),
    get: async (name) => {
      const file = await store.getFile(name)
      return file === undefined ? undefined : { size: file.info.size, stream: file.stream }
    },
  }
}

/** isHttpEndpoint tells an HTTP base URL from a host:port RPC endpoint. */
export function isHttpEndpoint(endpoint: string): boolean {
  return /^https?:\/\//i.test(endpoint)
}

async function errorOf(res: IncomingMessage): Promise<KvError> {
  let text = ''
  for await (const part of res) {
    text += String(part)
    if (text.length > 64 * 1024) break
  }
  try {
    return kvErrorFrom((JSON.parse(text) as { error: Record<string, unknown> }).error)
  } catch {
    return new KvError(res.statusCode === 404 ? ErrorCode.NOT_FOUND : ErrorCode.UNAVAILABLE, `HTTP ${res.statusCode} from the server`)
  }
}

/** httpTarget uses the HTTP API at `base` (e.g. http://127.0.0.1:7700). */
export function httpTarget(base: string, token: string | undefined): FileTarget {
  const root = new URL(base)
  const url = (name: string): URL => new URL(`/v1/files/${encodeURIComponent(name)}`, root)
  const send = root.protocol === 'https:' ? httpsRequest : httpRequest
  const auth: Record<string, string> = token === undefined ? {} : { authorization: `Bearer ${token}` }
  const call = (target: URL, method: string, headers: Record<string, string>, body?: Readable): Promise<IncomingMessage> =>
    new Promise((resolve, reject) => {
      const req = send(target, { method, headers: { ...auth, ...headers } }, resolve)
      req.on('error', (error) => reject(new KvError(ErrorCode.UNAVAILABLE, `cannot reach ${root.origin}: ${error.message}`)))
      if (body === undefined) req.end()
      else body.on('error', (error) => req.destroy(error)).pipe(req)
    })
  return {
    async put(name, body, size, contentType) {
      const res = await call(url(name), 'PUT', { 'content-type': contentType, 'content-length': String(size) }, body)
      if (res.statusCode !== 201) throw await errorOf(res)
      let text = ''
      for await (const part of res) text += String(part)
      return JSON.parse(text) as FileInfo
    },
    async get(name) {
      const res = await call(url(name), 'GET', {})
      if (res.statusCode === 404) {
        res.resume()
        return undefined
      }
      if (res.statusCode !== 200) throw await errorOf(res)
      return { size: Number(res.headers['content-length']), stream: res }
    },
  }
}
