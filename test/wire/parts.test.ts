/**
 * A frame body given as parts (large ones written by reference) arrives as the one body they
 * make up, between the frames queued before and after it, over a real socket.
 */
import assert from 'node:assert/strict'
import { createServer, connect, type Socket } from 'node:net'
import { test } from 'node:test'
import { FrameConnection, bodyLength } from '../../src/wire/connection.js'
import { FrameType, type Frame } from '../../src/wire/frame.js'

function connectionOn(socket: Socket, frames: Frame[], errors: Error[] = []): FrameConnection {
  return new FrameConnection(socket, {
    frameBytesMax: 8 * 1024 * 1024,
    writeBufferBytesMax: 64 * 1024 * 1024,
    onFrame: (frame) => frames.push(frame),
    onFatal: (error) => errors.push(error),
    onClose: () => undefined,
  })
}

test('a body sent as parts (small ones copied, large ones by reference) arrives whole and in order', async () => {
  const received: Frame[] = []
  const errors: Error[] = []
  let serverSide: FrameConnection | undefined
  const server = createServer((socket) => {
    serverSide = connectionOn(socket, received, errors)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as { port: number }).port
  const socket = connect(port, '127.0.0.1')
  await new Promise<void>((resolve) => socket.once('connect', resolve))
  const client = connectionOn(socket, [])
  try {
    const id = (n: number) => Buffer.alloc(16, n)
    const large = Buffer.alloc(1024 * 1024)
    for (let i = 0; i < large.length; i++) large[i] = (i * 31) & 0xff
    const parts = [Buffer.from('head'), large.subarray(100), Buffer.from('middle'), Buffer.alloc(40_000, 9), Buffer.from('tail')]
    assert.equal(bodyLength(parts), parts.reduce((sum, part) => sum + part.length, 0))
    client.send(FrameType.REQUEST, id(1), Buffer.from('before'))
    client.send(FrameType.REQUEST, id(2), parts)
    client.send(FrameType.REQUEST, id(3), [Buffer.from('only small '), Buffer.from('parts')])
    client.send(FrameType.REQUEST, id(4), [])
    client.send(FrameType.REQUEST, id(5), large)
    for (let waited = 0; received.length < 5 && errors.length === 0 && waited < 10_000; waited += 10) await new Promise((resolve) => setTimeout(resolve, 10))
    assert.deepEqual(errors, [], 'the frames decode')
    assert.deepEqual(received.map((frame) => frame.requestId[0]), [1, 2, 3, 4, 5])
    assert.equal(received[0]!.body.toString(), 'before')
    assert.ok(received[1]!.body.equals(Buffer.concat(parts)))
    assert.equal(received[2]!.body.toString(), 'only small parts')
    assert.equal(received[3]!.body.length, 0)
    assert.ok(received[4]!.body.equals(large))
    assert.deepEqual(errors, [])
  } finally {
    client.close()
    serverSide?.close()
    await new Promise((resolve) => server.close(resolve))
  }
})
