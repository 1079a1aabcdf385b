/**
 * InProcessKV: the DistKV interface straight over a LocalStore in the same process, for a
 * front end that runs inside the server that owns the database (`distkv local-server DIR
 * --http`): no socket, no encoding, the same validation and the same exactly-once writes.
 * Fault model: it lives and dies with its server; after the store closes, calls fail with
 * KV_ERR_CLOSED (the store's own error).
 */
import { randomUUID } from 'node:crypto'
import { ErrorCode, KvError } from '../errors.js'
import type { LocalStore } from '../local/store.js'
import { checkKey, checkKeys, checkOps, checkRange, checkSync, checkValue } from '../local/validate.js'
import type { BatchOp, BatchOptions, DistKV, KeyLike, QueryRange, ValueLike, WriteOptions } from './types.js'

/** InProcessKV forwards each DistKV call to a LocalStore of this process. */
export class InProcessKV implements DistKV {
  /** clientId identifies this in-process client (it is not registered over the wire). */
  readonly clientId: string = randomUUID()
  private closed = false

  constructor(private readonly store: LocalStore) {}

  private check(): void {
    if (this.closed) throw new KvError(ErrorCode.CLOSED, 'this DistKV client is closed')
  }

  async get(key: KeyLike): Promise<Buffer | undefined> {
    this.check()
    return this.store.get(checkKey(key))
  }

  async getMany(keys: KeyLike[]): Promise<Array<Buffer | undefined>> {
    this.check()
    return this.store.getMany(checkKeys(keys))
  }

  async put(key: KeyLike, value: ValueLike, options?: WriteOptions): Promise<void> {
    this.check()
    await this.store.write(randomUUID(), [{ type: 'put', key: checkKey(key), value: checkValue(value) }], checkSync(options))
  }

  async del(key: KeyLike, options?: WriteOptions): Promise<void> {
    this.check()
    await this.store.write(randomUUID(), [{ type: 'del', key: checkKey(key) }], checkSync(options))
  }

  async batch(ops: BatchOp[], options?: BatchOptions): Promise<void> {
    this.check()
    // One engine: every batch is atomic whatever `atomic` says.
    await this.store.write(randomUUID(), checkOps(ops), checkSync(options))
  }

  async has(key: KeyLike): Promise<boolean> {
    return (await this.get(key)) !== undefined
  }

  async getSize(key: KeyLike): Promise<number | undefined> {
    return (await this.get(key))?.length
  }

  async *query(range?: QueryRange): AsyncGenerator<[Buffer, Buffer]> {
    this.check()
    for await (const page of this.store.query(checkRange(range))) {
      for (let i = 0; i < page.keys.length; i++) yield [page.keys[i]!, page.values[i]!]
    }
  }

  async sync(): Promise<void> {
    this.check()
    await this.store.sync()
  }

  async close(): Promise<void> {
    this.closed = true
  }
}
