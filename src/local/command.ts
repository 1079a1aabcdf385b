/**
 * The `distkv local-server DIR [--port P --token T] [--host H] [--idle-timeout S] [--engine E]`
 * command: what open() starts detached, also runnable by hand. Exit status: 0 after a clean
 * stop, `alreadyRunningExitCode` when DIR already has a server, 2 on any other error (the
 * reason goes to stderr and, when DIR is usable, to DIR/local-server.log).
 */
import { ErrorCode, KvError, isKvError } from '../errors.js'
import { alreadyRunningExitCode } from './launcher.js'
import { runLocalServer, type LocalServerOptions } from './server.js'

const usage = 'usage: distkv local-server DIR [--port P --token T] [--host H] [--idle-timeout SECONDS] [--engine rocksdb|leveldb]'

/** parseLocalServerArgs turns the command's arguments into LocalServerOptions. */
export function parseLocalServerArgs(args: string[]): LocalServerOptions {
  const options: Partial<LocalServerOptions> = {}
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!
    const value = (): string => {
      const next = args[++i]
      if (next === undefined) throw new KvError(ErrorCode.INVALID, `${arg} needs a value; ${usage}`)
      return next
    }
    const number = (text: string): number => {
      const parsed = Number(text)
      if (text.trim() === '' || !Number.isFinite(parsed)) throw new KvError(ErrorCode.INVALID, `${arg} must be a number, got ${text}`)
      return parsed
    }
    if (arg === '--port') options.port = number(value())
    else if (arg === '--host') options.host = value()
    else if (arg === '--token') options.token = value()
    else if (arg === '--idle-timeout') options.idleTimeoutSeconds = number(value())
    else if (arg === '--engine') {
      const engine = value()
      if (engine !== 'rocksdb' && engine !== 'leveldb') throw new KvError(ErrorCode.INVALID, `--engine must be rocksdb or leveldb, got ${engine}`)
      options.engine = engine
    } else if (arg.startsWith('-')) throw new KvError(ErrorCode.INVALID, `unknown option ${arg}; ${usage}`)
    else if (options.dir === undefined) options.dir = arg
    else throw new KvError(ErrorCode.INVALID, `unexpected argument ${arg}; ${usage}`)
  }
  if (options.dir === undefined) throw new KvError(ErrorCode.INVALID, usage)
  return options as LocalServerOptions
}

/** localServerCommand runs `distkv local-server` and resolves to its exit status. */
export async function localServerCommand(args: string[]): Promise<number> {
  try {
    await runLocalServer(parseLocalServerArgs(args))
    return 0
  } catch (error) {
    if (isKvError(error) && error.details?.alreadyRunning === true) return alreadyRunningExitCode
    process.stderr.write(`distkv local-server: ${(error as Error).message}\n`)
    return 2
  }
}
