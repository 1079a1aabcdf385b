/**
 * Who may talk to a local server. The Unix socket is protected by the file system (a 0600
 * socket inside a 0700 directory), so its clients need no token; TCP clients must present the
 * server's token. Tokens are compared through their SHA-256 digests in constant time, so
 * neither the token nor its length leaks through timing.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto'
import { ErrorCode, KvError } from '../errors.js'
import type { HelloInfo } from '../wire/index.js'

function digest(text: string): Buffer {
  return createHash('sha256').update(text, 'utf8').digest()
}

/** authenticator returns the WireServer hook that admits Unix clients and TCP clients with `token`. */
export function authenticator(token: string | undefined): (hello: HelloInfo, transport: 'unix' | 'tcp') => void {
  const expected = token === undefined ? undefined : digest(token)
  return (hello, transport) => {
    if (transport === 'unix') return
    if (expected === undefined) throw new KvError(ErrorCode.AUTH, 'this server accepts no TCP clients')
    if (typeof hello.token !== 'string' || hello.token.length === 0) {
      throw new KvError(ErrorCode.AUTH, 'a token is required on TCP connections')
    }
    if (!timingSafeEqual(digest(hello.token), expected)) throw new KvError(ErrorCode.AUTH, 'wrong token')
  }
}

/**
 * newToken returns a random token: 24 bytes in base64url, re-drawn while it starts with '-'.
 * A token that starts with a dash cannot follow `--token` as its own argument (the parser
 * takes it for a flag), so one generated token in 64 broke every command line printed for it.
 */
export function newToken(): string {
  for (;;) {
    const token = randomBytes(24).toString('base64url')
    if (!token.startsWith('-')) return token
  }
}
