/**
 * Input and output for the distkv command: values from an argument, a file or stdin (each read
 * with a bound, never whole-and-then-checked), raw or escaped bytes to stdout with
 * backpressure, and the text forms of binary keys and values that `scan` prints.
 */
import { open as openFile } from 'node:fs/promises'
import type { Readable, Writable } from 'node:stream'
import { ErrorCode, KvError, type ErrorCodeName } from '../errors.js'

/** readBounded reads a stream to its end, failing with `code` as soon as it exceeds `bytesMax`. */
export async function readBounded(stream: Readable, bytesMax: number, what: string, code: ErrorCodeName, boundName: string): Promise<Buffer> {
  const chunks: Buffer[] = []
  let total = 0
  for await (const chunk of stream) {
    const buffer = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as string)
    total += buffer.length
    if (total > bytesMax) {
      stream.destroy()
      throw new KvError(code, `${what} is larger than ${boundName} (${bytesMax} bytes)`, { [boundName]: bytesMax })
    }
    chunks.push(buffer)
  }
  return Buffer.concat(chunks, total)
}

/** readFileBounded reads FILE, checking its size against `bytesMax` before reading it. */
export async function readFileBounded(path: string, bytesMax: number, code: ErrorCodeName, boundName: string): Promise<Buffer> {
  let handle
  try {
    handle = await openFile(path, 'r')
  } catch (error) {
    throw new KvError(ErrorCode.INVALID, `cannot read ${path}: ${(error as NodeJS.ErrnoException).code ?? (error as Error).message}`)
  }
  try {
    const { size } = await handle.stat()
    if (size > bytesMax) throw new KvError(code, `${path} is larger than ${boundName} (${bytesMax} bytes)`, { [boundName]: bytesMax })
    // The size is re-checked while reading: the file may grow, and /dev/stdin-like files report 0.
    return await readBounded(handle.createReadStream(), bytesMax, path, code, boundName)
  } finally {
    await handle.close().catch(() => undefined)
  }
}

/** readSource reads `-` (stdin), `@FILE`, or returns the argument's own UTF-8 bytes. */
export async function readSource(source: string, stdin: Readable, bytesMax: number, code: ErrorCodeName, boundName: string): Promise<Buffer> {
  if (source === '-') return readBounded(stdin, bytesMax, 'stdin', code, boundName)
  if (source.startsWith('@')) return readFileBounded(source.slice(1), bytesMax, code, boundName)
  const bytes = Buffer.from(source, 'utf8')
  if (bytes.length > bytesMax) throw new KvError(code, `value is larger than ${boundName} (${bytesMax} bytes)`, { [boundName]: bytesMax })
  return bytes
}

/** OutputClosed is thrown by `write` when the reader went away (EPIPE): the command stops quietly. */
export class OutputClosed extends Error {}

/** write writes to `stream`, waiting for it to drain when its buffer is full. */
export async function write(stream: Writable, data: string | Buffer): Promise<void> {
  if (stream.destroyed || stream.writableEnded) throw new OutputClosed('output closed')
  const ok = stream.write(data)
  if (ok) return
  await new Promise<void>((resolve, reject) => {
    const cleanup = () => {
      stream.off('drain', onDrain)
      stream.off('error', onError)
      stream.off('close', onClose)
    }
    const onDrain = () => (cleanup(), resolve())
    const onError = () => (cleanup(), reject(new OutputClosed('output closed')))
    const onClose = () => (cleanup(), reject(new OutputClosed('output closed')))
    stream.on('drain', onDrain)
    stream.on('error', onError)
    stream.on('close', onClose)
  })
}

/** flush resolves once everything written to `stream` so far has been handed to the OS. */
export async function flush(stream: Writable): Promise<void> {
  if (stream.destroyed) return
  await new Promise<void>((resolve) => stream.write('', () => resolve()))
}

/** OutputFormat is how scan shows keys and values: escaped text, hex, or JSON lines. */
export type OutputFormat = 'text' | 'hex' | 'json'

/** isUtf8 tells whether bytes decode as UTF-8 without replacement characters. */
export function isUtf8(bytes: Buffer): boolean {
  return Buffer.from(bytes.toString('utf8'), 'utf8').equals(bytes)
}

/**
 * escapeText shows bytes as UTF-8 text with `\\`, `\t`, `\n`, `\r`, other control bytes and
 * every byte of an invalid UTF-8 sequence written as `\xNN`, so one entry is always one line.
 */
export function escapeText(bytes: Buffer): string {
  const text = bytes.toString('utf8')
  if (isUtf8(bytes)) return text.replace(/[\\\x00-\x1f\x7f]/g, escapeCharacter)
  let out = ''
  let start = 0
  // Invalid sequences: decode byte by byte so only the bad bytes are escaped.
  for (let i = 0; i < bytes.length; ) {
    const length = utf8SequenceLength(bytes, i)
    if (length === 0) {
      out += escapeText(bytes.subarray(start, i)) + `\\x${bytes[i]!.toString(16).padStart(2, '0')}`
      i += 1
      start = i
    } else {
      i += length
    }
  }
  return out + escapeText(bytes.subarray(start))
}

function escapeCharacter(character: string): string {
  if (character === '\\') return '\\\\'
  if (character === '\t') return '\\t'
  if (character === '\n') return '\\n'
  if (character === '\r') return '\\r'
  return `\\x${character.charCodeAt(0).toString(16).padStart(2, '0')}`
}

/** utf8SequenceLength returns the length of the valid UTF-8 sequence at `i`, or 0 if invalid. */
function utf8SequenceLength(bytes: Buffer, i: number): number {
  const first = bytes[i]!
  const length = first < 0x80 ? 1 : first >= 0xc2 && first < 0xe0 ? 2 : first >= 0xe0 && first < 0xf0 ? 3 : first >= 0xf0 && first < 0xf5 ? 4 : 0
  if (length <= 1) return length
  if (i + length > bytes.length) return 0
  return isUtf8(bytes.subarray(i, i + length)) ? length : 0
}

/** formatEntry renders one scan entry as a line (without the newline). */
export function formatEntry(key: Buffer, value: Buffer | undefined, format: OutputFormat): string {
  if (format === 'json') {
    const record: Record<string, string> = {}
    put(record, 'key', key)
    if (value !== undefined) put(record, 'value', value)
    return JSON.stringify(record)
  }
  const show = format === 'hex' ? (bytes: Buffer) => bytes.toString('hex') : escapeText
  return value === undefined ? show(key) : `${show(key)}\t${show(value)}`
}

function put(record: Record<string, string>, field: string, bytes: Buffer): void {
  if (isUtf8(bytes)) record[field] = bytes.toString('utf8')
  else record[`${field}Base64`] = bytes.toString('base64')
}
