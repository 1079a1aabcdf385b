/**
 * The distkv command (CONTRACT.md "Command line"): dispatches to one subcommand, answers
 * `--help` for each, and turns every failure into exit status 2 with one line on stderr that
 * starts with the KV_ERR code. bin/distkv.js calls `main(argv)` and exits with its result.
 */
import { ErrorCode, isKvError, type ErrorCodeName } from '../errors.js'
import { firstLine, parse } from './args.js'
import { clientsCommand } from './clients.js'
import { ExitCode, type Command, type Io } from './command.js'
import { flush, OutputClosed, write } from './io.js'
import { delCommand, getCommand, hasCommand, putCommand, sizeCommand } from './kv.js'
import { batchCommand, scanCommand } from './scan.js'
import { downloadCommand, uploadCommand } from './files.js'
import { localDevCommand, localServerCommand } from './servers.js'
import { adminCommand, clusterDevCommand, statusCommand } from '../cluster/cli.js'
import { serverCommand } from '../cluster/command.js'

/** commands lists every subcommand, in the order `distkv --help` shows them. */
export const commands: readonly Command[] = [
  getCommand,
  putCommand,
  delCommand,
  hasCommand,
  sizeCommand,
  scanCommand,
  batchCommand,
  uploadCommand,
  downloadCommand,
  clientsCommand,
  clusterDevCommand,
  serverCommand,
  statusCommand,
  adminCommand,
  localServerCommand,
  localDevCommand,
]

function overview(): string {
  const width = Math.max(...commands.map((command) => command.name.length))
  const lines = commands.map((command) => `  ${command.name.padEnd(width)}  ${command.summary}`)
  return [
    'usage: distkv COMMAND [arguments] [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `distkv COMMAND --help` for the options of one command.',
    'Exit status: 0 success, 1 key absent (get, has, size), 2 error (one line on stderr).',
    '',
  ].join('\n')
}

/** main runs the distkv command with its arguments and resolves to the exit status. */
export async function main(argv: string[], io: Io = processIo()): Promise<number> {
  try {
    return await dispatch(argv, io)
  } catch (error) {
    if (error instanceof OutputClosed) return ExitCode.ok
    const code: ErrorCodeName = isKvError(error) ? error.code : ErrorCode.INTERNAL
    const message = firstLine((error as Error)?.message ?? String(error))
    await write(io.stderr, `distkv: ${code}: ${message}\n`).catch(() => undefined)
    return ExitCode.error
  } finally {
    await flush(io.stdout)
  }
}

async function dispatch(argv: string[], io: Io): Promise<number> {
  const [name, ...args] = argv
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' ? args[0] : undefined
    const command = commands.find((candidate) => candidate.name === topic)
    await write(io.stdout, command?.help ? `${command.help}\n` : overview())
    return topic === undefined || command !== undefined ? ExitCode.ok : ExitCode.error
  }
  const command = commands.find((candidate) => candidate.name === name)
  if (command === undefined) {
    await write(io.stderr, `distkv: ${ErrorCode.INVALID}: unknown command '${name}' (see distkv --help)\n`)
    return ExitCode.error
  }
  const parsed = parse(command.name, args, command.options)
  if (parsed.values.help === true) {
    await write(io.stdout, `${command.help}\n`)
    return ExitCode.ok
  }
  return command.run(parsed, io)
}

function processIo(): Io {
  // A reader that goes away (`distkv scan | head`) must end the command, not crash it.
  process.stdout.on('error', () => undefined)
  return { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr, env: process.env }
}
