/**
 * The single-key commands: get, put, del, has, size. Values go in as an argument, `@FILE` or
 * `-` (stdin) and come out as raw bytes, so binary data round-trips through a pipe unchanged.
 */
import { ErrorCode } from '../errors.js'
import { Limits } from '../limits.js'
import { decodeText, keyEncoding, keyEncodingOption, positionalCount, targetOptions, type Parsed } from './args.js'
import { ExitCode, keyHelp, targetHelp, type Command, type Io } from './command.js'
import { flush, readSource, write } from './io.js'
import { targetOf, withDatabase } from './target.js'

const writeOptions = { 'no-sync': { type: 'boolean' } } as const
const writeHelp = `  --no-sync             return before the write is on disk (default: durable on return)`

function keyArgument(parsed: Parsed, index = 0): Buffer {
  return decodeText(parsed.positionals[index]!, keyEncoding(parsed), 'KEY')
}

/** getCommand writes a value's raw bytes to stdout; exit 1 when the key is absent. */
export const getCommand: Command = {
  name: 'get',
  summary: 'print the value of KEY (raw bytes); exit 1 if absent',
  help: `usage: distkv get KEY (--db DIR | --endpoint HOST:PORT) [options]

Writes the value's bytes to stdout exactly as stored (no newline added).
Exit status: 0 found, 1 absent, 2 error.

${targetHelp}
${keyHelp}
  --hex                 print the value as hex, followed by a newline`,
  options: { ...targetOptions, ...keyEncodingOption, hex: { type: 'boolean' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('get', parsed, 1, 1)
    const key = keyArgument(parsed)
    const value = await withDatabase(targetOf('get', parsed, io.env), (db) => db.get(key))
    if (value === undefined) return ExitCode.notFound
    await write(io.stdout, parsed.values.hex === true ? `${value.toString('hex')}\n` : value)
    await flush(io.stdout)
    return ExitCode.ok
  },
}

/** putCommand stores a value given as an argument, @FILE, or - for stdin. */
export const putCommand: Command = {
  name: 'put',
  summary: 'store VALUE (text, @FILE or - for stdin) under KEY',
  help: `usage: distkv put KEY VALUE|@FILE|- (--db DIR | --endpoint HOST:PORT) [options]

VALUE is stored as its UTF-8 bytes; @FILE stores the file's bytes; - reads stdin to its end.
A KEY or VALUE that starts with - goes after --, which ends the options:
  distkv put counter --db DIR -- -5
Values larger than valueBytesMax (${Limits.valueBytesMax} bytes) are refused before sending.

${targetHelp}
${keyHelp}
${writeHelp}`,
  options: { ...targetOptions, ...keyEncodingOption, ...writeOptions },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('put', parsed, 2, 2)
    const key = keyArgument(parsed)
    const target = targetOf('put', parsed, io.env)
    const value = await readSource(parsed.positionals[1]!, io.stdin, Limits.valueBytesMax, ErrorCode.VALUE_TOO_LARGE, 'valueBytesMax')
    await withDatabase(target, (db) => db.put(key, value, { sync: parsed.values['no-sync'] !== true }))
    return ExitCode.ok
  },
}

/** delCommand removes a key; removing an absent key succeeds. */
export const delCommand: Command = {
  name: 'del',
  summary: 'delete KEY (absent keys are not an error)',
  help: `usage: distkv del KEY (--db DIR | --endpoint HOST:PORT) [options]

${targetHelp}
${keyHelp}
${writeHelp}`,
  options: { ...targetOptions, ...keyEncodingOption, ...writeOptions },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('del', parsed, 1, 1)
    const key = keyArgument(parsed)
    await withDatabase(targetOf('del', parsed, io.env), (db) => db.del(key, { sync: parsed.values['no-sync'] !== true }))
    return ExitCode.ok
  },
}

/** hasCommand prints true or false; exit 1 when the key is absent, so scripts can test it. */
export const hasCommand: Command = {
  name: 'has',
  summary: 'print true/false; exit 0 if KEY exists, 1 if not',
  help: `usage: distkv has KEY (--db DIR | --endpoint HOST:PORT) [options]

Prints "true" or "false". Exit status: 0 present, 1 absent, 2 error.

${targetHelp}
${keyHelp}`,
  options: { ...targetOptions, ...keyEncodingOption },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('has', parsed, 1, 1)
    const key = keyArgument(parsed)
    const present = await withDatabase(targetOf('has', parsed, io.env), (db) => db.has(key))
    await write(io.stdout, `${present}\n`)
    return present ? ExitCode.ok : ExitCode.notFound
  },
}

/** sizeCommand prints a value's length in bytes without fetching it. */
export const sizeCommand: Command = {
  name: 'size',
  summary: "print the byte length of KEY's value; exit 1 if absent",
  help: `usage: distkv size KEY (--db DIR | --endpoint HOST:PORT) [options]

Prints the value's length in bytes (the value itself is not transferred).
Exit status: 0 found, 1 absent, 2 error.

${targetHelp}
${keyHelp}`,
  options: { ...targetOptions, ...keyEncodingOption },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('size', parsed, 1, 1)
    const key = keyArgument(parsed)
    const size = await withDatabase(targetOf('size', parsed, io.env), (db) => db.getSize(key))
    if (size === undefined) return ExitCode.notFound
    await write(io.stdout, `${size}\n`)
    return ExitCode.ok
  },
}
