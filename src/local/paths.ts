/**
 * Where a local server's files live. Inside the database directory DIR:
 *
 *   DIR/db/                  the engine's files
 *   DIR/local-server.json    pointer file: pid, socket path, TCP address of the running server
 *   DIR/local-server.spawn   lock held by the opener that is starting a server
 *   DIR/local-server.log     one line per server start/stop/error (also lists every server pid)
 *
 * The Unix socket cannot live in DIR: socket paths are limited to about 107 bytes. It lives in
 * a private directory (mode 0700, owned by this user) under $XDG_RUNTIME_DIR or the OS temp
 * directory, named by a hash of DIR's real path, so every opener finds the same socket.
 */
import { createHash } from 'node:crypto'
import { lstatSync, mkdirSync, realpathSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { ErrorCode, KvError } from '../errors.js'

/** socketPathBytesMax: the portable limit on a Unix socket path (sun_path is 108 bytes on Linux, 104 on macOS). */
export const socketPathBytesMax = 103

/** LocalPaths are the files of one database directory's local server. */
export interface LocalPaths {
  dir: string
  engineDir: string
  pointerFile: string
  spawnLock: string
  logFile: string
  socketDir: string
  socketPath: string
}

/** localPaths resolves DIR (which must exist) to its server's paths, creating the private socket directory. */
export function localPaths(dir: string): LocalPaths {
  const realDir = realpathSync(dir)
  const hash = createHash('sha256').update(realDir).digest('hex').slice(0, 24)
  const socketDir = privateSocketDir()
  const socketPath = join(socketDir, `${hash}.sock`)
  if (Buffer.byteLength(socketPath) > socketPathBytesMax) {
    throw new KvError(ErrorCode.INVALID, `socket path ${socketPath} is longer than socketPathBytesMax (${socketPathBytesMax}); set TMPDIR shorter`, {
      socketPathBytesMax,
    })
  }
  return {
    dir: realDir,
    engineDir: join(realDir, 'db'),
    pointerFile: join(realDir, 'local-server.json'),
    spawnLock: join(realDir, 'local-server.spawn'),
    logFile: join(realDir, 'local-server.log'),
    socketDir,
    socketPath,
  }
}

function privateSocketDir(): string {
  const uid = typeof process.getuid === 'function' ? process.getuid() : 0
  const candidates = [process.env.XDG_RUNTIME_DIR, tmpdir(), '/tmp'].filter((base): base is string => !!base)
  for (const base of candidates) {
    const dir = join(base, `distkv-${uid}`)
    // Leave room for "/<24 hex>.sock".
    if (Buffer.byteLength(dir) + 30 > socketPathBytesMax) continue
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 })
      const stat = lstatSync(dir)
      // Refuse a directory someone else created or loosened: anyone able to enter it could
      // connect to the socket and bypass the "only this user" rule.
      if (!stat.isDirectory() || (stat.mode & 0o077) !== 0 || (typeof process.getuid === 'function' && stat.uid !== uid)) {
        throw new KvError(ErrorCode.AUTH, `socket directory ${dir} is not a private (0700) directory owned by uid ${uid}`)
      }
      return dir
    } catch (error) {
      if (error instanceof KvError) throw error
    }
  }
  throw new KvError(ErrorCode.UNAVAILABLE, `no usable socket directory among ${candidates.join(', ')}`)
}
