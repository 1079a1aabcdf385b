// LinkProxy on loopback against an echo server: bytes pass through, a blocked direction holds
// them until healed (nothing lost or reordered), a delayed link delivers late, and a dropping
// link resets the connection; a refused link resets every connection, old and new, until healed.
import assert from 'node:assert/strict'
import { once } from 'node:events'
import { createServer, connect, type Server, type Socket } from 'node:net'
import { test } from 'node:test'
import { LinkProxy } from './proxy.js'

async function echoServer(): Promise<{ server: Server; port: number }> {
  const server = createServer((socket) => socket.pipe(socket))
  server.listen(0, '127.0.0.1')
  await once(server, 'listening')
  return { server, port: (server.address() as { port: number }).port }
}

async function setup(): Promise<{ proxy: LinkProxy; socket: Socket; received: () => string; close: () => Promise<void> }> {
  const { server, port } = await echoServer()
  const proxy = new LinkProxy('t', port, () => 0)
  await proxy.start()
  const socket = connect(proxy.port, '127.0.0.1')
  await once(socket, 'connect')
  let text = ''
  socket.on('data', (chunk: Buffer) => (text += chunk.toString()))
  socket.on('error', () => undefined)
  return {
    proxy, socket, received: () => text,
    close: async () => {
      socket.destroy()
      await proxy.close()
      await new Promise((resolve) => server.close(resolve))
    },
  }
}

const until = async (check: () => boolean, ms = 5_000) => {
  const deadline = Date.now() + ms
  while (!check() && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 10))
  return check()
}

test('bytes pass; a blocked direction holds them until healed, in order', async () => {
  const t = await setup()
  try {
    t.socket.write('one ')
    assert.ok(await until(() => t.received() === 'one '))
    t.proxy.set('backward', { blocked: true })
    t.socket.write('two ')
    t.socket.write('three')
    await new Promise((resolve) => setTimeout(resolve, 200))
    assert.equal(t.received(), 'one ')
    t.proxy.heal()
    assert.ok(await until(() => t.received() === 'one two three'))
  } finally {
    await t.close()
  }
})

test('a delayed link delivers later; a dropping link resets the connection', async () => {
  const t = await setup()
  try {
    t.proxy.set('forward', { delayMs: 300 })
    const sent = Date.now()
    t.socket.write('late')
    assert.ok(await until(() => t.received() === 'late'))
    assert.ok(Date.now() - sent >= 250)
    t.proxy.set('forward', { delayMs: 0, dropRate: 1 })
    const closed = once(t.socket, 'close')
    t.socket.write('lost')
    await closed
    assert.equal(t.received(), 'late')
  } finally {
    await t.close()
  }
})

test('a refused link resets open connections and each new one with ECONNRESET until healed', { timeout: 10_000 }, async () => {
  const t = await setup()
  try {
    const errorOf = (socket: Socket) => new Promise<string>((resolve) => {
      socket.once('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? 'error'))
      socket.once('close', () => resolve('closed'))
    })
    const open = errorOf(t.socket)
    t.proxy.refuse()
    assert.equal(await open, 'ECONNRESET')
    const late = connect(t.proxy.port, '127.0.0.1')
    late.write('hello')
    assert.equal(await errorOf(late), 'ECONNRESET')
    t.proxy.heal()
    const healed = connect(t.proxy.port, '127.0.0.1')
    let text = ''
    healed.on('data', (chunk: Buffer) => (text += chunk.toString()))
    healed.write('back')
    assert.ok(await until(() => text === 'back'))
    healed.destroy()
  } finally {
    await t.close()
  }
})
