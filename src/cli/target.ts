/**
 * Where a data command's database is: `--db DIR` (local mode, through open(), which starts
 * DIR's server when none runs) or `--endpoint HOST:PORT` (a server's TCP listener, through
 * connect()). The token may come from `--token` or, to keep it out of `ps`, DISTKV_TOKEN.
 */
import { connect, open } from '../client/index.js'
import type { DistKV } from '../client/types.js'
import { ErrorCode, KvError } from '../errors.js'
import { integerFlag, stringFlag, type Parsed } from './args.js'

/** cliTimeoutSecondsDefault: how long one CLI request may take (across reconnects) unless --timeout says otherwise. */
export const cliTimeoutSecondsDefault = 10

/** Target is a parsed --db or --endpoint choice, with the request timeout. */
export type Target = ({ dir: string } | { endpoint: string; token?: string }) & { timeoutMs?: number }

/** targetOf reads --db / --endpoint / --token (and DISTKV_TOKEN); exactly one of db and endpoint. */
export function targetOf(command: string, parsed: Parsed, env: NodeJS.ProcessEnv): Target {
  const dir = stringFlag(parsed, 'db')
  const endpoint = stringFlag(parsed, 'endpoint')
  const token = stringFlag(parsed, 'token') ?? (env.DISTKV_TOKEN || undefined)
  const timeoutMs = 1000 * (integerFlag(parsed, 'timeout', { min: 1, max: 3600 }) ?? cliTimeoutSecondsDefault)
  if ((dir === undefined) === (endpoint === undefined)) {
    throw new KvError(ErrorCode.INVALID, `${command}: give exactly one of --db DIR or --endpoint HOST:PORT`)
  }
  if (dir !== undefined) {
    if (dir === '') throw new KvError(ErrorCode.INVALID, '--db must not be empty')
    if (stringFlag(parsed, 'token') !== undefined) throw new KvError(ErrorCode.INVALID, '--token goes with --endpoint; --db needs none')
    return { dir, timeoutMs }
  }
  return token === undefined ? { endpoint: endpoint!, timeoutMs } : { endpoint: endpoint!, token, timeoutMs }
}

/** withDatabase connects to `target`, runs `body`, and always closes the connection. */
export async function withDatabase<T>(target: Target, body: (db: DistKV) => Promise<T>): Promise<T> {
  const name = `distkv-cli ${process.pid}`
  const requestTimeoutMs = target.timeoutMs ?? cliTimeoutSecondsDefault * 1000
  const db =
    'dir' in target
      ? await open(target.dir, { name, requestTimeoutMs })
      : await connect(target.endpoint, { name, requestTimeoutMs, ...(target.token !== undefined ? { token: target.token } : {}) })
  try {
    return await body(db)
  } finally {
    await db.close()
  }
}
