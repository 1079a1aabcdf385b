/**
 * `distkv scan`: stream a key range to stdout, one entry per line, and `distkv batch`: apply a
 * JSON list of puts and deletes atomically. Both use the same JSON shape for binary data, so
 * `scan --json` output can be edited and fed back to `batch`.
 */
import type { BatchOp, QueryRange } from '../client/types.js'
import { ErrorCode, KvError } from '../errors.js'
import { Limits } from '../limits.js'
import { decodeText, integerFlag, keyEncoding, keyEncodingOption, positionalCount, stringFlag, targetOptions, type Parsed } from './args.js'
import { ExitCode, keyHelp, targetHelp, type Command, type Io } from './command.js'
import { formatEntry, readSource, write, type OutputFormat } from './io.js'
import { targetOf, withDatabase } from './target.js'

/** batchInputBytesMax: the most JSON `batch` reads (room for base64 of batchBytesMax and JSON overhead). */
export const batchInputBytesMax = 4 * Limits.batchBytesMax

/** scanCommand prints a range of entries, streamed in pages. */
export const scanCommand: Command = {
  name: 'scan',
  summary: 'print the entries of a key range, one per line',
  help: `usage: distkv scan (--db DIR | --endpoint HOST:PORT) [range] [output]

Range (bytewise key order; bounds combine):
  --prefix P            keys starting with P
  --gt K --gte K --lt K --lte K
  --limit N             at most N entries
  --reverse             descending order
Output (one entry per line):
  default               KEY<TAB>VALUE as UTF-8 text; \\\\, tab, newline, CR, other control
                        bytes and bytes that are not valid UTF-8 are written as \\\\, \\t, \\n,
                        \\r and \\xNN, so every entry is exactly one line
  --hex                 KEY<TAB>VALUE in hex
  --json                {"key": ..., "value": ...} per line; a key or value that is not valid
                        UTF-8 is given as "keyBase64" / "valueBase64" instead (batch reads this)
  --keys-only           keys only (values are not transferred)

${targetHelp}
${keyHelp}`,
  options: {
    ...targetOptions,
    ...keyEncodingOption,
    prefix: { type: 'string' },
    gt: { type: 'string' },
    gte: { type: 'string' },
    lt: { type: 'string' },
    lte: { type: 'string' },
    limit: { type: 'string' },
    reverse: { type: 'boolean' },
    'keys-only': { type: 'boolean' },
    hex: { type: 'boolean' },
    json: { type: 'boolean' },
  },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('scan', parsed, 0, 0)
    const range = rangeOf(parsed)
    const format = outputFormat(parsed)
    const keysOnly = parsed.values['keys-only'] === true
    await withDatabase(targetOf('scan', parsed, io.env), async (db) => {
      for await (const [key, value] of db.query(range)) {
        await write(io.stdout, formatEntry(key, keysOnly ? undefined : value, format) + '\n')
      }
    })
    return ExitCode.ok
  },
}

function rangeOf(parsed: Parsed): QueryRange {
  const encoding = keyEncoding(parsed)
  const range: QueryRange = {}
  for (const name of ['prefix', 'gt', 'gte', 'lt', 'lte'] as const) {
    const text = stringFlag(parsed, name)
    if (text !== undefined) range[name] = decodeText(text, encoding, `--${name}`)
  }
  const limit = integerFlag(parsed, 'limit', { min: 0, max: Number.MAX_SAFE_INTEGER })
  if (limit !== undefined) range.limit = limit
  if (parsed.values.reverse === true) range.reverse = true
  if (parsed.values['keys-only'] === true) range.values = false
  return range
}

function outputFormat(parsed: Parsed): OutputFormat {
  if (parsed.values.hex === true && parsed.values.json === true) throw new KvError(ErrorCode.INVALID, 'scan: --hex and --json exclude each other')
  return parsed.values.hex === true ? 'hex' : parsed.values.json === true ? 'json' : 'text'
}

/** batchCommand applies the ops of a JSON document atomically. */
export const batchCommand: Command = {
  name: 'batch',
  summary: 'apply JSON put/del ops from FILE or stdin, atomically',
  help: `usage: distkv batch [FILE|-] (--db DIR | --endpoint HOST:PORT) [options]

Reads JSON from FILE, or stdin when FILE is - or absent: an array of ops, or {"ops": [...]}.
Each op is {"type": "put", "key": K, "value": V} or {"type": "del", "key": K}; K and V are
UTF-8 strings, or give "keyBase64" / "valueBase64" for binary (the shape scan --json prints).
All ops apply or none do. At most batchOpsMax (${Limits.batchOpsMax}) ops and
batchInputBytesMax (${batchInputBytesMax}) bytes of JSON.

${targetHelp}
  --no-sync             return before the batch is on disk (default: durable on return)`,
  options: { ...targetOptions, 'no-sync': { type: 'boolean' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('batch', parsed, 0, 1)
    const target = targetOf('batch', parsed, io.env)
    const source = parsed.positionals[0] ?? '-'
    const input = await readSource(source === '-' ? '-' : `@${source}`, io.stdin, batchInputBytesMax, ErrorCode.BATCH_TOO_LARGE, 'batchInputBytesMax')
    const ops = parseBatch(input)
    await withDatabase(target, (db) => db.batch(ops, { sync: parsed.values['no-sync'] !== true }))
    return ExitCode.ok
  },
}

/** parseBatch turns batch JSON into ops, naming the first bad op and field. */
export function parseBatch(input: Buffer): BatchOp[] {
  let document: unknown
  try {
    document = JSON.parse(input.toString('utf8'))
  } catch (error) {
    throw new KvError(ErrorCode.INVALID, `batch: input is not JSON: ${(error as Error).message}`)
  }
  const list = Array.isArray(document) ? document : (document as { ops?: unknown } | null)?.ops
  if (!Array.isArray(list)) throw new KvError(ErrorCode.INVALID, 'batch: expected a JSON array of ops or {"ops": [...]}')
  if (list.length > Limits.batchOpsMax) {
    throw new KvError(ErrorCode.BATCH_TOO_LARGE, `batch: ${list.length} ops is more than batchOpsMax (${Limits.batchOpsMax})`, { batchOpsMax: Limits.batchOpsMax })
  }
  return list.map((op, index) => parseOp(op, index))
}

function parseOp(op: unknown, index: number): BatchOp {
  if (op === null || typeof op !== 'object') throw new KvError(ErrorCode.INVALID, `batch: ops[${index}] must be an object`)
  const record = op as Record<string, unknown>
  const key = bytesField(record, 'key', index)
  if (record.type === 'del') return { type: 'del', key }
  if (record.type === 'put') return { type: 'put', key, value: bytesField(record, 'value', index) }
  throw new KvError(ErrorCode.INVALID, `batch: ops[${index}].type must be "put" or "del"`)
}

function bytesField(record: Record<string, unknown>, field: string, index: number): Buffer {
  const text = record[field]
  const base64 = record[`${field}Base64`]
  if (typeof text === 'string' && base64 === undefined) return Buffer.from(text, 'utf8')
  if (typeof base64 === 'string' && text === undefined) return decodeText(base64, 'base64', `ops[${index}].${field}Base64`)
  throw new KvError(ErrorCode.INVALID, `batch: ops[${index}] needs exactly one of "${field}" (string) or "${field}Base64"`)
}
