/**
 * Example: key/value basics through the client library in local mode.
 * Run: node dist/examples/kv.js [DIR]   (DIR defaults to a fresh temporary directory)
 */
import { mkdtempSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { open } from '../src/index.js'

const dir = process.argv[2] ?? mkdtempSync(join(tmpdir(), 'distkv-example-'))
// The first open() of a directory starts its server; every other process shares it.
const kv = await open(dir, { idleTimeoutSeconds: 2 })

await kv.put('user:1', JSON.stringify({ name: 'Ada', lang: 'en' }))
await kv.put('user:2', JSON.stringify({ name: 'Grace', lang: 'en' }))
// An atomic batch: both writes happen, or neither does.
await kv.batch([
  { type: 'put', key: 'user:3', value: JSON.stringify({ name: 'Linus', lang: 'fi' }) },
  { type: 'del', key: 'user:2' },
])

const ada = JSON.parse(String(await kv.get('user:1'))) as { name: string }
console.log(`user:1 is ${ada.name}`)
console.log(`user:2 exists: ${await kv.has('user:2')}`)
for await (const [key, value] of kv.query({ prefix: 'user:' })) console.log(`${key} = ${value}`)

await kv.close()
