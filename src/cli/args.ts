/**
 * Argument parsing for the distkv command: a thin layer over node:util parseArgs that turns
 * every bad flag or value into a KvError(KV_ERR_INVALID) naming the flag, and the options
 * shared by the data commands (where the database is, and how to encode keys).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { ErrorCode, KvError } from '../errors.js'

/** OptionSpec is parseArgs' option table. */
export type OptionSpec = NonNullable<ParseArgsConfig['options']>

/** Parsed is the result of `parse`: flag values by name and the positional arguments. */
export interface Parsed {
  values: Record<string, string | boolean | undefined>
  positionals: string[]
}

/** helpOption is accepted by every command. */
export const helpOption: OptionSpec = { help: { type: 'boolean', short: 'h' } }

/** targetOptions select the database: a directory (local mode) or a server endpoint. */
export const targetOptions: OptionSpec = {
  db: { type: 'string' },
  endpoint: { type: 'string' },
  token: { type: 'string' },
  timeout: { type: 'string' },
}

/** keyEncodingOption: how KEY arguments (and range bounds) are written on the command line. */
export const keyEncodingOption: OptionSpec = { 'key-encoding': { type: 'string' } }

/** parse runs parseArgs strictly; an unknown flag or a missing value becomes KV_ERR_INVALID. */
export function parse(command: string, args: string[], options: OptionSpec): Parsed {
  try {
    const { values, positionals } = parseArgs({ args, options: { ...helpOption, ...options }, allowPositionals: true, strict: true })
    return { values: values as Parsed['values'], positionals }
  } catch (error) {
    throw new KvError(ErrorCode.INVALID, `${command}: ${firstLine((error as Error).message)} (see distkv ${command} --help)`)
  }
}

/** stringFlag returns a string flag's value, or undefined. */
export function stringFlag(parsed: Parsed, name: string): string | undefined {
  const value = parsed.values[name]
  return typeof value === 'string' ? value : undefined
}

/** booleanFlag reads a `true|false` flag, naming the flag when it is neither; undefined when absent. */
export function booleanFlag(parsed: Parsed, name: string): boolean | undefined {
  const text = stringFlag(parsed, name)
  if (text === undefined) return undefined
  if (text !== 'true' && text !== 'false') throw new KvError(ErrorCode.INVALID, `--${name} must be true or false, got '${text}'`)
  return text === 'true'
}

/** integerFlag parses an integer flag and checks it is within min..max, naming the flag when not. */
export function integerFlag(parsed: Parsed, name: string, range: { min: number; max: number }): number | undefined {
  const text = stringFlag(parsed, name)
  if (text === undefined) return undefined
  const value = Number(text)
  if (text.trim() === '' || !Number.isInteger(value) || value < range.min || value > range.max) {
    throw new KvError(ErrorCode.INVALID, `--${name} must be an integer in ${range.min}..${range.max}, got '${text}'`)
  }
  return value
}

/** positionalCount checks how many positional arguments a command got. */
export function positionalCount(command: string, parsed: Parsed, min: number, max: number): void {
  const count = parsed.positionals.length
  if (count < min || count > max) {
    const expected = min === max ? `${min}` : `${min} to ${max}`
    throw new KvError(ErrorCode.INVALID, `${command}: expected ${expected} argument(s), got ${count} (see distkv ${command} --help)`)
  }
}

/** KeyEncoding names how binary keys are written as command-line text. */
export type KeyEncoding = 'utf8' | 'hex' | 'base64'

/** keyEncoding reads --key-encoding (default utf8). */
export function keyEncoding(parsed: Parsed): KeyEncoding {
  const value = stringFlag(parsed, 'key-encoding') ?? 'utf8'
  if (value !== 'utf8' && value !== 'hex' && value !== 'base64') {
    throw new KvError(ErrorCode.INVALID, `--key-encoding must be utf8, hex or base64, got '${value}'`)
  }
  return value
}

/** decodeText turns command-line text into bytes, rejecting text that is not valid in `encoding`. */
export function decodeText(text: string, encoding: KeyEncoding, what: string): Buffer {
  if (encoding === 'hex' && !/^(?:[0-9a-fA-F]{2})*$/.test(text)) {
    throw new KvError(ErrorCode.INVALID, `${what} is not hex: '${text}'`)
  }
  if (encoding === 'base64' && !/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) {
    throw new KvError(ErrorCode.INVALID, `${what} is not base64: '${text}'`)
  }
  return Buffer.from(text, encoding)
}

/** firstLine keeps error messages to the one line the CLI contract promises. */
export function firstLine(text: string): string {
  return text.split('\n')[0]!.trim()
}
