/**
 * ClientStream: the client end of one flow-controlled stream, as an async iterator.
 *
 * The server may send at most `window` pages beyond what the consumer has taken; the
 * stream grants credit back in batches of half a window as pages are consumed, so a slow
 * consumer holds at most `window` pages in memory and the server produces no further ahead.
 */
import { ErrorCode, KvError } from '../errors.js'

/** StreamControl is how a ClientStream talks back to its connection. */
export interface StreamControl {
  grant(pages: number): void
  cancel(): void
}

/** ClientStream buffers at most `window` pages and grants credit as they are consumed. */
export class ClientStream implements AsyncIterator<unknown>, AsyncIterable<unknown> {
  private readonly window: number
  private readonly control: StreamControl | undefined
  private readonly pages: unknown[] = []
  private consumedSinceGrant = 0
  private finished = false
  private failure: KvError | undefined
  private waiter: { resolve: (result: IteratorResult<unknown>) => void; reject: (error: KvError) => void } | undefined

  constructor(window: number, control: StreamControl | undefined) {
    this.window = window
    this.control = control
  }

  /** failed returns a stream that rejects its first next() with `error`. */
  static failed(error: KvError): ClientStream {
    const stream = new ClientStream(1, undefined)
    stream.error(error)
    return stream
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  /** push adds a page from the server; false if it exceeds the window (a protocol violation). */
  push(page: unknown): boolean {
    if (this.finished) return true
    if (this.waiter !== undefined) {
      const waiter = this.waiter
      this.waiter = undefined
      this.consumed()
      waiter.resolve({ value: page, done: false })
      return true
    }
    if (this.pages.length >= this.window) return false
    this.pages.push(page)
    return true
  }

  /** end marks the stream complete after its buffered pages. */
  end(): void {
    this.finished = true
    this.settleWaiter()
  }

  /** error fails the stream after its buffered pages. */
  error(error: KvError): void {
    if (this.failure === undefined) this.failure = error
    this.finished = true
    this.settleWaiter()
  }

  next(): Promise<IteratorResult<unknown>> {
    if (this.pages.length > 0) {
      this.consumed()
      return Promise.resolve({ value: this.pages.shift(), done: false })
    }
    if (this.failure !== undefined) {
      const failure = this.failure
      this.failure = undefined // reported once, then the stream is simply done
      return Promise.reject(failure)
    }
    if (this.finished) return Promise.resolve({ value: undefined, done: true })
    if (this.waiter !== undefined) return Promise.reject(new KvError(ErrorCode.INVALID, 'next() called again before the previous next() settled'))
    return new Promise((resolve, reject) => (this.waiter = { resolve, reject }))
  }

  /** return is called when the consumer breaks out of its loop: the server is told to stop. */
  return(): Promise<IteratorResult<unknown>> {
    if (!this.finished) {
      this.finished = true
      this.control?.cancel()
    }
    this.pages.length = 0
    this.failure = undefined
    this.settleWaiter()
    return Promise.resolve({ value: undefined, done: true })
  }

  private consumed(): void {
    if (this.finished || this.control === undefined) return
    this.consumedSinceGrant++
    if (this.consumedSinceGrant * 2 >= this.window) {
      this.control.grant(this.consumedSinceGrant)
      this.consumedSinceGrant = 0
    }
  }

  private settleWaiter(): void {
    const waiter = this.waiter
    if (waiter === undefined) return
    this.waiter = undefined
    if (this.failure !== undefined) {
      const failure = this.failure
      this.failure = undefined
      waiter.reject(failure)
    } else {
      waiter.resolve({ value: undefined, done: true })
    }
  }
}
