/**
 * `distkv upload FILE|DIR [NAME]` and `distkv download NAME [FILE]`: files between the local
 * disk and distkv, streamed, with a progress bar on a terminal. A directory uploads every
 * regular file below it as NAME/relative/path. A download goes to a temporary file that is
 * renamed into place when complete, so an interrupted download leaves no partial FILE.
 */
import { createReadStream, createWriteStream } from 'node:fs'
import { lstat, readdir, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join, relative, resolve, sep } from 'node:path'
import { Transform, type Readable, type Writable } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { ErrorCode, KvError } from '../errors.js'
import { positionalCount, stringFlag, targetOptions, type Parsed } from './args.js'
import { ExitCode, targetHelp, type Command, type Io } from './command.js'
import { httpTarget, isHttpEndpoint, libraryTarget, type FileTarget } from './file-target.js'
import { write } from './io.js'
import { targetOf, withDatabase } from './target.js'

/** uploadFilesMax: most files one directory upload takes (the walk stops with an error past it). */
export const uploadFilesMax = 100_000

const contentTypes: Record<string, string> = {
  png: 'image/png', jpg: 'image/jpeg', jpeg: 'image/jpeg', gif: 'image/gif', webp: 'image/webp', svg: 'image/svg+xml',
  avif: 'image/avif', ico: 'image/x-icon', txt: 'text/plain; charset=utf-8', md: 'text/markdown; charset=utf-8',
  html: 'text/html; charset=utf-8', css: 'text/css', js: 'text/javascript', json: 'application/json', pdf: 'application/pdf',
  mp4: 'video/mp4', webm: 'video/webm', mp3: 'audio/mpeg', zip: 'application/zip', gz: 'application/gzip',
}

/** contentTypeOf guesses a content type from a file name's extension. */
export function contentTypeOf(path: string): string {
  const extension = /\.([^./]+)$/.exec(path)?.[1]?.toLowerCase() ?? ''
  return contentTypes[extension] ?? 'application/octet-stream'
}

const endpointHelp = `  (--endpoint also takes the HTTP API's base URL, e.g. http://127.0.0.1:7700)`

async function withFiles<T>(parsed: Parsed, io: Io, command: string, body: (target: FileTarget) => Promise<T>): Promise<T> {
  const endpoint = stringFlag(parsed, 'endpoint')
  if (endpoint !== undefined && isHttpEndpoint(endpoint)) {
    if (stringFlag(parsed, 'db') !== undefined) throw new KvError(ErrorCode.INVALID, `${command}: give exactly one of --db DIR or --endpoint`)
    return body(httpTarget(endpoint, stringFlag(parsed, 'token') ?? (io.env.DISTKV_TOKEN || undefined)))
  }
  return withDatabase(targetOf(command, parsed, io.env), (db) => body(libraryTarget(db)))
}

async function listFiles(root: string): Promise<string[]> {
  const out: string[] = []
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1))) {
      const path = join(dir, entry.name)
      if (entry.isDirectory()) await walk(path)
      else if (entry.isFile()) {
        if (out.length === uploadFilesMax) throw new KvError(ErrorCode.INVALID, `${root} holds more than uploadFilesMax (${uploadFilesMax}) files`)
        out.push(path)
      }
    }
  }
  await walk(root)
  return out
}

/** Progress draws one bar on a terminal; elsewhere it prints one line per finished file. */
class Progress {
  private lastDrawMs = 0
  constructor(
    private readonly stream: Writable,
    private readonly tty: boolean,
  ) {}

  meter(label: string, total: number): Transform {
    let done = 0
    return new Transform({
      transform: (chunk: Buffer, _encoding, callback) => {
        done += chunk.length
        if (this.tty && Date.now() - this.lastDrawMs > 100) {
          this.lastDrawMs = Date.now()
          this.draw(label, done, total)
        }
        callback(null, chunk)
      },
    })
  }

  private draw(label: string, done: number, total: number): void {
    const fraction = total > 0 ? Math.min(1, done / total) : 1
    const width = 30
    const filled = Math.round(fraction * width)
    const name = label.length > 40 ? `…${label.slice(-39)}` : label
    this.stream.write(`\r\x1b[K${name} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(fraction * 100).toFixed(0)}% ${mib(done)}/${mib(total)}`)
  }

  async finish(line: string): Promise<void> {
    await write(this.stream, `${this.tty ? '\r\x1b[K' : ''}${line}\n`)
  }
}

const mib = (bytes: number): string => (bytes < 1024 * 1024 ? `${(bytes / 1024).toFixed(1)} KiB` : `${(bytes / 1024 / 1024).toFixed(1)} MiB`)

/** uploadCommand stores a file, or every file of a directory. */
export const uploadCommand: Command = {
  name: 'upload',
  summary: 'store a file, or every file of a directory, as distkv files',
  help: `usage: distkv upload FILE|DIR [NAME] (--db DIR | --endpoint HOST:PORT|URL) [--content-type T]

Stores FILE as NAME (default: FILE's base name), or every file below DIR as
NAME/relative/path (NAME defaults to DIR's base name). Streams; shows a progress bar on a
terminal and prints one line per stored file.

  --content-type T      content type (default: guessed from the extension)
${targetHelp}
${endpointHelp}`,
  options: { ...targetOptions, 'content-type': { type: 'string' } },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('upload', parsed, 1, 2)
    const source = resolve(parsed.positionals[0]!)
    const given = parsed.positionals[1]
    const info = await stat(source).catch(() => {
      throw new KvError(ErrorCode.INVALID, `cannot read ${parsed.positionals[0]}`)
    })
    const isDir = info.isDirectory()
    const paths = isDir ? await listFiles(source) : [source]
    const prefix = given ?? basename(source)
    const progress = new Progress(io.stderr, (io.stderr as { isTTY?: boolean }).isTTY === true)
    const contentType = stringFlag(parsed, 'content-type')
    await withFiles(parsed, io, 'upload', async (target) => {
      for (const path of paths) {
        const name = isDir ? `${prefix}/${relative(source, path).split(sep).join('/')}` : prefix
        const size = (await lstat(path)).size
        const body = createReadStream(path).pipe(progress.meter(name, size))
        const stored = await target.put(name, body as Readable, size, contentType ?? contentTypeOf(path))
        await progress.finish(`${stored.name}  ${mib(stored.size)}  ${stored.contentType}  ${stored.etag}`)
      }
    })
    return ExitCode.ok
  },
}

/** checkDestination refuses destinations derived from a name that would leave the directory. */
function destinationOf(name: string, given: string | undefined): string {
  if (given !== undefined) return given
  const base = name.split('/').pop() ?? ''
  if (base === '' || base === '.' || base === '..') {
    throw new KvError(ErrorCode.INVALID, `cannot derive a file name from '${name}': give FILE`)
  }
  return base
}

/** downloadCommand writes a stored file to FILE (default: NAME's last path segment; '-' = stdout). */
export const downloadCommand: Command = {
  name: 'download',
  summary: 'write a distkv file to a local file (or stdout)',
  help: `usage: distkv download NAME [FILE] (--db DIR | --endpoint HOST:PORT|URL)

Writes file NAME to FILE (default: the last '/' segment of NAME, in the current
directory; '-' writes to stdout). FILE appears only when complete. Exit status 1 when
there is no such file.
${targetHelp}
${endpointHelp}`,
  options: { ...targetOptions },
  async run(parsed: Parsed, io: Io): Promise<number> {
    positionalCount('download', parsed, 1, 2)
    const name = parsed.positionals[0]!
    const destination = destinationOf(name, parsed.positionals[1])
    const progress = new Progress(io.stderr, (io.stderr as { isTTY?: boolean }).isTTY === true && destination !== '-')
    return withFiles(parsed, io, 'download', async (target) => {
      const file = await target.get(name)
      if (file === undefined) {
        await write(io.stderr, `distkv: ${ErrorCode.NOT_FOUND}: no file '${name}'\n`)
        return ExitCode.notFound
      }
      const meter = progress.meter(name, file.size)
      if (destination === '-') {
        await pipeline(file.stream, meter, io.stdout, { end: false })
        return ExitCode.ok
      }
      const temporary = join(dirname(resolve(destination)), `.${basename(destination)}.distkv-${process.pid}.part`)
      try {
        await pipeline(file.stream, meter, createWriteStream(temporary, { flags: 'wx' }))
        await rename(temporary, destination)
      } catch (error) {
        await rm(temporary, { force: true })
        throw error
      }
      await progress.finish(`${destination}  ${mib(file.size)}`)
      return ExitCode.ok
    })
  },
}
