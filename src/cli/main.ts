/**
 * The distkv command (CONTRACT.md "Command line"): dispatches to one subcommand, answers
 * `--help` for each, and turns every failure into exit status 2 with one line on stderr that
 * starts with the KV_ERR code. bin/distkv.js calls `main(argv)` and exits with its result.
 */
import { ErrorCode, isKvError, type ErrorCodeName } from '../errors.js'
import { firstLine, parse } from './args.js'
import { ExitCode, type Command, type Io } from './command.js'
import { flush, OutputClosed, write } from './io.js'

/**
 * CommandEntry names a command and loads its module only when it runs: loading every module
 * (cluster, HTTP, files) for every `distkv get` would double the command's start-up time.
 * `summary` repeats the command's own for `distkv --help` (a test checks they agree).
 */
export interface CommandEntry {
  name: string
  summary: string
  load(): Promise<Command>
}

/** commands lists every subcommand, in the order `distkv --help` shows them. */
export const commands: readonly CommandEntry[] = [
  { name: 'get', summary: 'print the value of KEY (raw bytes); exit 1 if absent', load: async () => (await import('./kv.js')).getCommand },
  { name: 'put', summary: 'store VALUE (text, @FILE or - for stdin) under KEY', load: async () => (await import('./kv.js')).putCommand },
  { name: 'del', summary: 'delete KEY (absent keys are not an error)', load: async () => (await import('./kv.js')).delCommand },
  { name: 'has', summary: 'print true/false; exit 0 if KEY exists, 1 if not', load: async () => (await import('./kv.js')).hasCommand },
  { name: 'size', summary: "print the byte length of KEY's value; exit 1 if absent", load: async () => (await import('./kv.js')).sizeCommand },
  { name: 'scan', summary: 'print the entries of a key range, one per line', load: async () => (await import('./scan.js')).scanCommand },
  { name: 'batch', summary: 'apply JSON put/del ops from FILE or stdin, atomically', load: async () => (await import('./scan.js')).batchCommand },
  { name: 'upload', summary: 'store a file, or every file of a directory, as distkv files', load: async () => (await import('./files.js')).uploadCommand },
  { name: 'download', summary: 'write a distkv file to a local file (or stdout)', load: async () => (await import('./files.js')).downloadCommand },
  { name: 'clients', summary: 'list the clients registered with a local server', load: async () => (await import('./clients.js')).clientsCommand },
  { name: 'dev', summary: 'run a whole cluster on loopback (what npm start runs)', load: async () => (await import('../cluster/cli.js')).clusterDevCommand },
  { name: 'server', summary: 'run a cluster node (roles meta, store, proxy)', load: async () => (await import('../cluster/command.js')).serverCommand },
  { name: 'status', summary: 'show nodes, shards, leaders and slot ranges of a cluster', load: async () => (await import('../cluster/cli.js')).statusCommand },
  {
    name: 'admin',
    summary: 'change placement: add-shard, move-slots, transfer-leader, replace-replica, remove-node',
    load: async () => (await import('../cluster/cli.js')).adminCommand,
  },
  { name: 'local-server', summary: 'run the server that owns database directory DIR', load: async () => (await import('./servers.js')).localServerCommand },
  { name: 'local-dev', summary: 'run one local server with TCP and a generated token (no cluster)', load: async () => (await import('./servers.js')).localDevCommand },
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
    const entry = commands.find((candidate) => candidate.name === topic)
    if (topic === undefined || entry !== undefined) {
      await write(io.stdout, entry !== undefined ? `${(await entry.load()).help}\n` : overview())
      return ExitCode.ok
    }
  }
  const entry = commands.find((candidate) => candidate.name === (name === 'help' ? args[0] : name))
  if (entry === undefined) {
    await write(io.stderr, `distkv: ${ErrorCode.INVALID}: unknown command '${name === 'help' ? args[0] : name}' (see distkv --help)\n`)
    return ExitCode.error
  }
  const command = await entry.load()
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
