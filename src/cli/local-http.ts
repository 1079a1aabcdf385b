/**
 * `distkv local-server DIR --http HOST:PORT`: the local server plus the HTTP API and web UI
 * over it, in one process. The HTTP side calls the store directly (InProcessKV), with the same
 * validation and exactly-once writes as wire clients but no socket hop. HTTP traffic does not
 * count as a connected client, so the idle timeout defaults to 0 (never) here.
 */
import { InProcessKV } from '../client/in-process.js'
import { ErrorCode, KvError } from '../errors.js'
import { startLocalServer, type LocalServerOptions } from '../local/index.js'
import { startHttpServer } from '../proxy/http/index.js'
import { localClusterView } from '../proxy/http/cluster.js'
import { write } from './io.js'
import type { Io } from './command.js'

/** parseHttpAddress reads HOST:PORT (or just PORT, on 127.0.0.1) for --http. */
export function parseHttpAddress(text: string): { host: string; port: number } {
  const match = /^(?:(.*):)?(\d{1,5})$/.exec(text)
  const port = Number(match?.[2])
  if (match === null || port > 65535) throw new KvError(ErrorCode.INVALID, `--http must be HOST:PORT or PORT, got '${text}'`)
  const host = (match[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? '127.0.0.1' : host, port }
}

/** runLocalServerWithHttp runs DIR's server and an HTTP front end until SIGTERM or Ctrl-C. */
export async function runLocalServerWithHttp(options: LocalServerOptions, http: string, io: Io): Promise<void> {
  const address = parseHttpAddress(http)
  // Signals are ours: HTTP stops before the server, so no request meets a closed store.
  const handle = await startLocalServer({ ...options, idleTimeoutSeconds: options.idleTimeoutSeconds ?? 0, handleSignals: false })
  const kv = new InProcessKV(handle.store)
  let url = ''
  const cluster = () => localClusterView(kv, { http: url }, { ...handle.info, stats: handle.store.stats })
  const front = await startHttpServer({ kv, ...address, cluster, ...(options.token !== undefined ? { token: options.token } : {}) })
  url = front.url
  const stop = (): void => {
    void front
      .close()
      .then(() => kv.close())
      .catch(() => undefined)
      .then(() => handle.stop('signal'))
  }
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  await write(io.stdout, `distkv local-server: HTTP API and web UI at ${front.url}/\n`)
  await handle.stopped
  process.off('SIGTERM', stop)
  process.off('SIGINT', stop)
  await front.close()
  await kv.close().catch(() => undefined)
}
