/**
 * Example: store an image as a file and stream it back, through the client library.
 * Files are chunked (1 MiB) behind a manifest written last, so readers never see half a file.
 * Run: node dist/examples/images.js [DIR] [IMAGE]   (IMAGE defaults to the web UI's icon)
 */
import { createReadStream, createWriteStream, mkdtempSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { pipeline } from 'node:stream/promises'
import { fileURLToPath } from 'node:url'
import { files, open } from '../src/index.js'

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'distkv-example-'))
const image = process.argv[3] ?? fileURLToPath(new URL('../../src/ui/icon.svg', import.meta.url))
const kv = await open(dir, { idleTimeoutSeconds: 2 })
const store = files(kv)

// Upload: a stream in, never held whole in memory.
const name = `images/${basename(image)}`
const info = await store.putFile(name, createReadStream(image), { contentType: image.endsWith('.svg') ? 'image/svg+xml' : 'image/png' })
console.log(`stored ${info.name}: ${info.size} bytes, ${info.contentType}, etag ${info.etag}`)

// Download: a stream out, written to a local file.
const copy = join(dir, `copy-${basename(image)}`)
const file = await store.getFile(name)
if (file === undefined) throw new Error(`${name} vanished`)
await pipeline(file.stream, createWriteStream(copy))
console.log(`downloaded to ${copy}: ${statSync(copy).size} bytes`)

const { items } = await store.listFiles({ prefix: 'images/' })
console.log(`files under images/: ${items.map((item) => item.name).join(', ')}`)
await store.deleteFile(name)
console.log(`deleted ${name}; still there: ${(await store.statFile(name)) !== undefined}`)
await kv.close()
