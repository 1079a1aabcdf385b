/**
 * LinkProxy: a TCP proxy standing on one directed link of the test cluster (node i dialing node
 * j, or the clients dialing node j). Every connection node i opens to node j goes through the
 * proxy of link i->j, so the nemesis can cut, slow or break that link alone.
 *
 * Fault model, per direction of the link (`forward` = dialer to listener, `backward` = replies):
 * - blocked: bytes are no longer read from the sender (the kernel buffers fill, the sender's
 *   writes stall) and new connections are accepted but not forwarded: what a TCP peer sees
 *   during a partition where packets are lost and retransmitted. On heal, forwarding resumes
 *   and nothing is reordered; connections the endpoints gave up on in between are simply gone.
 * - delay: each chunk is delivered `delayMs` after it arrived, in order.
 * - refused (the whole link, `refuse()`): open connections are reset and new ones are reset as
 *   soon as they arrive: a partition where the far side's host rejects with a TCP RST (a
 *   firewall's REJECT rule, a host that lost the route answering with ICMP unreachable), so the
 *   endpoints learn at once instead of waiting out timeouts.
 * - drop: each chunk is lost with probability `dropRate`; a TCP stream cannot lose a chunk and
 *   stay a valid stream, so a loss resets the connection (both sides), which is what a real
 *   endpoint eventually does after unacknowledged retransmissions. In-flight messages are lost.
 *
 * Bounded: at most `connectionsMax` connections per link, and a delayed direction stops reading
 * once `delayBytesMax` bytes are queued.
 */
import { createServer, connect as tcpConnect, type Server, type Socket } from 'node:net'
import { ErrorCode, KvError } from '../../src/errors.js'

/** connectionsMax: connections one link proxy holds at once. */
export const connectionsMax = 256
/** delayBytesMax: bytes one delayed direction queues before it stops reading its sender. */
export const delayBytesMax = 4 * 1024 * 1024

/** Direction of a link: dialer to listener, or back. */
export type Direction = 'forward' | 'backward'

/** LinkState is what the nemesis sets on one direction. */
export interface LinkState {
  blocked: boolean
  delayMs: number
  dropRate: number
}

interface Pipe {
  from: Socket
  to: Socket
  direction: Direction
  queued: number
  chain: Promise<void>
}

/** healthy is the state of a link without faults. */
export function healthy(): LinkState {
  return { blocked: false, delayMs: 0, dropRate: 0 }
}

/** LinkProxy forwards one directed link and applies its fault state. */
export class LinkProxy {
  private server: Server | undefined
  private readonly pipes = new Set<Pipe>()
  private readonly state: Record<Direction, LinkState> = { forward: healthy(), backward: healthy() }
  private refusing = false
  /** port is the proxy's listening port on 127.0.0.1 (0 before start). */
  port = 0

  constructor(
    readonly name: string,
    private readonly targetPort: number,
    private readonly random: () => number,
  ) {}

  /** address is 'host:port' of the proxy. */
  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  /** start listens on an ephemeral loopback port. */
  async start(): Promise<void> {
    const server = createServer((socket) => this.accept(socket))
    this.server = server
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject)
      server.listen(0, '127.0.0.1', () => resolve())
    })
    this.port = (server.address() as { port: number }).port
  }

  /** set changes one direction's state; unblocking resumes every paused pipe of that direction. */
  set(direction: Direction, change: Partial<LinkState>): void {
    const next = { ...this.state[direction], ...change }
    if (!(next.delayMs >= 0 && next.dropRate >= 0 && next.dropRate <= 1)) throw new KvError(ErrorCode.INVALID, `link ${this.name}: bad state ${JSON.stringify(next)}`)
    this.state[direction] = next
    for (const pipe of this.pipes) if (pipe.direction === direction) this.flow(pipe)
  }

  /** refuse resets every connection of the link and every new one until heal (see the module comment). */
  refuse(): void {
    this.refusing = true
    this.resetAll()
  }

  /** heal clears every fault on both directions. */
  heal(): void {
    this.refusing = false
    this.set('forward', healthy())
    this.set('backward', healthy())
  }

  /** resetAll cuts every open connection (used when a node is killed: its sockets die with it). */
  resetAll(): void {
    for (const pipe of this.pipes) this.cut(pipe)
  }

  /** close stops listening and cuts every connection. */
  async close(): Promise<void> {
    this.resetAll()
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()))
  }

  private accept(client: Socket): void {
    if (this.refusing) {
      client.resetAndDestroy()
      return
    }
    if (this.pipes.size >= connectionsMax * 2) {
      client.destroy()
      return
    }
    const upstream = tcpConnect(this.targetPort, '127.0.0.1')
    client.setNoDelay(true)
    upstream.setNoDelay(true)
    const forward: Pipe = { from: client, to: upstream, direction: 'forward', queued: 0, chain: Promise.resolve() }
    const backward: Pipe = { from: upstream, to: client, direction: 'backward', queued: 0, chain: Promise.resolve() }
    for (const pipe of [forward, backward]) {
      this.pipes.add(pipe)
      pipe.from.on('data', (chunk: Buffer) => this.carry(pipe, chunk))
      pipe.from.on('end', () => void pipe.chain.then(() => pipe.to.end()))
      pipe.from.on('error', () => this.cut(pipe))
      pipe.from.on('close', () => {
        this.pipes.delete(pipe)
        pipe.to.destroy()
      })
      this.flow(pipe)
    }
  }

  private flow(pipe: Pipe): void {
    const state = this.state[pipe.direction]
    if (state.blocked || pipe.queued >= delayBytesMax) pipe.from.pause()
    else pipe.from.resume()
  }

  private carry(pipe: Pipe, chunk: Buffer): void {
    const state = this.state[pipe.direction]
    if (state.dropRate > 0 && this.random() < state.dropRate) {
      this.cut(pipe)
      return
    }
    if (state.delayMs === 0 && pipe.queued === 0) {
      pipe.to.write(chunk)
      return
    }
    pipe.queued += chunk.length
    this.flow(pipe)
    const due = Date.now() + state.delayMs
    pipe.chain = pipe.chain.then(async () => {
      const wait = due - Date.now()
      if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait))
      if (!pipe.to.destroyed) pipe.to.write(chunk)
      pipe.queued -= chunk.length
      this.flow(pipe)
    })
  }

  private cut(pipe: Pipe): void {
    if (this.refusing) {
      pipe.from.resetAndDestroy()
      pipe.to.resetAndDestroy()
      return
    }
    pipe.from.destroy()
    pipe.to.destroy()
  }
}
