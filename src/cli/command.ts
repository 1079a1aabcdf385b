/**
 * The shape of one distkv subcommand: its option table, its help text, and its body. main.ts
 * parses the arguments with the table, answers `--help` from the text, and runs the body.
 */
import type { Readable, Writable } from 'node:stream'
import type { OptionSpec, Parsed } from './args.js'

/** Io is what a command reads and writes; main passes the process's own streams. */
export interface Io {
  stdin: Readable
  stdout: Writable
  stderr: Writable
  env: NodeJS.ProcessEnv
}

/** ExitCode: 0 success, 1 "not found" for get/has/size, 2 error (CONTRACT.md "Command line"). */
export const ExitCode = { ok: 0, notFound: 1, error: 2 } as const

/** Command is one subcommand of distkv. */
export interface Command {
  name: string
  /** summary: one line for `distkv --help`. */
  summary: string
  /** help: the full text `distkv NAME --help` prints. */
  help: string
  options: OptionSpec
  run(parsed: Parsed, io: Io): Promise<number>
}

/** targetHelp documents the options every data command shares. */
export const targetHelp = `Database (exactly one):
  --db DIR              local mode: the database directory (its server starts if none runs)
  --endpoint HOST:PORT  a server's TCP listener
  --token T             the server's token (or set DISTKV_TOKEN, which keeps it out of ps)
  --timeout SECONDS     give up (KV_ERR_TIMEOUT / KV_ERR_UNAVAILABLE) after this long (default 10)`

/** keyHelp documents --key-encoding. */
export const keyHelp = `  --key-encoding E      how KEY arguments and bounds are written: utf8 (default), hex, base64`
