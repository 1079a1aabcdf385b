/**
 * A 200 MiB upload and download through a server in its own process keep that process's
 * memory flat: its resident set, sampled from /proc while the bytes flow, stays within a
 * bound far below the file size (the file is streamed, never held).
 */
import { test, after } from 'node:test'
import assert from 'node:assert/strict'
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import { request as httpRequest } from 'node:http'
import { rssBytes, startChildServer, type ChildServer } from './helpers.js'

const mib = 1024 * 1024
const fileBytes = 200 * mib
/** growthBytesMax: how much the server's RSS may grow while moving the file (half the file: holding the file would take all of it). */
const growthBytesMax = 100 * mib

let server: ChildServer | undefined

after(async () => {
  await server?.close()
})

/** pattern is deterministic content, generated piece by piece so the test holds no whole file either. */
function piece(index: number): Buffer {
  const buffer = Buffer.alloc(mib)
  buffer.writeUInt32BE(index, 0)
  buffer.fill(index % 251, 4)
  return buffer
}

function sampler(pid: number): { peak: () => number; stop: () => void } {
  let peak = 0
  const sample = (): void => {
    peak = Math.max(peak, rssBytes(pid, (path) => readFileSync(path, 'utf8')))
  }
  sample()
  const timer = setInterval(sample, 25)
  return { peak: () => (sample(), peak), stop: () => clearInterval(timer) }
}

function upload(url: string): Promise<{ status: number; sha256: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'PUT', headers: { 'content-length': String(fileBytes), 'content-type': 'application/octet-stream' } })
    req.on('response', (res) => {
      let body = ''
      res.on('data', (part: Buffer) => (body += part))
      res.on('end', () => resolve({ status: res.statusCode!, sha256: (JSON.parse(body) as { sha256: string }).sha256 }))
    })
    req.on('error', reject)
    let index = 0
    const pump = (): void => {
      while (index < fileBytes / mib) {
        if (!req.write(piece(index++))) return void req.once('drain', pump)
      }
      req.end()
    }
    pump()
  })
}

function download(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    httpRequest(url, (res) => {
      const hash = createHash('sha256')
      res.on('data', (part: Buffer) => hash.update(part))
      res.on('end', () => resolve(hash.digest('hex')))
      res.on('error', reject)
    })
      .on('error', reject)
      .end()
  })
}

test('200 MiB up and down with the server process RSS growing far less than the file', async () => {
  server = await startChildServer(512 * mib)
  const url = `${server.url}/v1/files/big.bin`
  // Warm up the code paths (and the engine's buffers) so the baseline is the steady state.
  await fetch(`${server.url}/v1/files/warm.bin`, { method: 'PUT', body: Buffer.alloc(8 * mib, 1) })
  await download(`${server.url}/v1/files/warm.bin`)
  const baseline = rssBytes(server.pid, (path) => readFileSync(path, 'utf8'))
  const expected = createHash('sha256')
  for (let i = 0; i < fileBytes / mib; i++) expected.update(piece(i))
  const digest = expected.digest('hex')

  const up = sampler(server.pid)
  const stored = await upload(url)
  up.stop()
  assert.equal(stored.status, 201)
  assert.equal(stored.sha256, digest)
  const down = sampler(server.pid)
  assert.equal(await download(url), digest)
  down.stop()
  const growth = Math.max(up.peak(), down.peak()) - baseline
  process.stdout.write(`# server RSS: baseline ${(baseline / mib).toFixed(0)} MiB, peak growth ${(growth / mib).toFixed(1)} MiB for a ${fileBytes / mib} MiB file\n`)
  assert.ok(growth < growthBytesMax, `server RSS grew ${(growth / mib).toFixed(1)} MiB, more than ${growthBytesMax / mib} MiB`)
})
