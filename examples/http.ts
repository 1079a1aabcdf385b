/**
 * Example: serve a database over the HTTP API (and its web UI), then use it with fetch the
 * way curl would. `distkv local-server DIR --http 127.0.0.1:7700` does the same from a shell.
 * Run: node dist/examples/http.js [DIR]
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { open } from '../src/index.js'
import { startHttpServer } from '../src/proxy/http/index.js'

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'distkv-example-'))
const kv = await open(dir, { idleTimeoutSeconds: 2 })
const http = await startHttpServer({ kv, host: '127.0.0.1', port: 0 })
console.log(`web UI at ${http.url}/`)

await fetch(`${http.url}/v1/kv/greeting`, { method: 'PUT', body: 'hello over HTTP' })
console.log(`GET /v1/kv/greeting -> ${await (await fetch(`${http.url}/v1/kv/greeting`)).text()}`)
const put = await fetch(`${http.url}/v1/files/notes/today.txt`, { method: 'PUT', body: 'a small file', headers: { 'content-type': 'text/plain' } })
const { etag } = (await put.json()) as { etag: string }
const again = await fetch(`${http.url}/v1/files/notes/today.txt`, { headers: { 'if-none-match': etag } })
console.log(`PUT /v1/files/notes/today.txt -> etag ${etag}; GET with If-None-Match -> ${again.status}`)
const part = await fetch(`${http.url}/v1/files/notes/today.txt`, { headers: { range: 'bytes=2-6' } })
console.log(`GET with Range: bytes=2-6 -> ${part.status} '${await part.text()}'`)

await http.close()
await kv.close()
