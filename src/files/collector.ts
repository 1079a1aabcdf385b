/**
 * The collector: deletes the chunks of uploads that failed, were abandoned, or were replaced
 * or deleted, found through their upload records (keys.ts).
 *
 * Why it is safe without cross-key transactions: a record is read before the manifest it is
 * compared with, and an uploader marks its record 'done' only after writing its manifest. So
 * a 'done' record whose id is not the manifest's was superseded for good (a manifest never
 * goes back to an older upload). An 'uploading' record is touched only after its deadline
 * plus clockSkewMarginMs, and an uploader never commits later than its deadline minus that
 * margin. Superseded uploads are first marked 'garbage' and their chunks deleted only
 * `garbageGraceMs` later, so a reader that fetched the old manifest can finish.
 * NB: an uploader paused for longer than 2 * clockSkewMarginMs between its deadline check and
 * its manifest write could commit a manifest whose chunks are being collected; its readers
 * then fail with KV_ERR_NOT_FOUND rather than see wrong bytes.
 */
import type { DistKV } from '../client/types.js'
import { allRecordsPrefix, chunkPrefix, manifestKey, parseRecordKey, recordKey, recordPrefix } from './keys.js'
import { decodeManifest, decodeRecord, type UploadRecord } from './manifest.js'

/** clockSkewMarginMs: how far apart the clocks of an uploader and a collector may be. */
export const clockSkewMarginMs = 60_000

/** recordsPerNameMax: most upload records of one name looked at in one pass. */
export const recordsPerNameMax = 1024

/** chunkDeleteBatchMax: most chunk keys deleted by one batch. */
export const chunkDeleteBatchMax = 256

/** CollectorOptions: the clock and the grace period. */
export interface CollectorOptions {
  garbageGraceMs: number
  now: () => number
}

/** currentUploadId reads the upload id the manifest of `name` points at, if any. */
export async function currentUploadId(kv: DistKV, name: string): Promise<string | undefined> {
  const bytes = await kv.get(manifestKey(name))
  return bytes === undefined ? undefined : decodeManifest(bytes).uploadId
}

/** deleteChunks removes every chunk of one upload, a bounded batch at a time. */
export async function deleteChunks(kv: DistKV, uploadId: string): Promise<number> {
  let deleted = 0
  for (;;) {
    const keys: Buffer[] = []
    for await (const [key] of kv.query({ prefix: chunkPrefix(uploadId), limit: chunkDeleteBatchMax, values: false })) keys.push(key)
    if (keys.length === 0) return deleted
    await kv.batch(
      keys.map((key) => ({ type: 'del' as const, key })),
      { atomic: false },
    )
    deleted += keys.length
  }
}

/** collectName collects the garbage uploads of one file name; returns how many uploads it removed. */
export async function collectName(kv: DistKV, name: string, options: CollectorOptions): Promise<number> {
  const records: Array<{ uploadId: string; record: UploadRecord }> = []
  for await (const [key, value] of kv.query({ prefix: recordPrefix(name), limit: recordsPerNameMax })) {
    const parsed = parseRecordKey(key)
    if (parsed !== undefined) records.push({ uploadId: parsed.uploadId, record: decodeRecord(value)! })
  }
  if (records.length === 0) return 0
  // Read after the records: see the module comment for why this order matters.
  const current = await currentUploadId(kv, name)
  const now = options.now()
  let removed = 0
  for (const { uploadId, record } of records) {
    if (uploadId === current) continue
    if (record.state === 'uploading' && now <= record.deadline + clockSkewMarginMs) continue
    let since = record.since ?? now
    if (record.state !== 'garbage') {
      since = now
      await kv.put(recordKey(name, uploadId), JSON.stringify({ ...record, state: 'garbage', since }), { sync: false })
    }
    if (now < since + options.garbageGraceMs) continue
    await deleteChunks(kv, uploadId)
    // The record goes last: while it exists, its chunks can still be found.
    await kv.del(recordKey(name, uploadId))
    removed++
  }
  return removed
}

/** SweepResult reports one pass of collectAll: uploads removed and where the next pass starts. */
export interface SweepResult {
  removed: number
  names: number
  next?: string
}

/** collectAll visits up to `namesMax` file names that have upload records, from `after`, collecting each. */
export async function collectAll(
  kv: DistKV,
  options: CollectorOptions & { namesMax: number; after?: string | undefined },
): Promise<SweepResult> {
  const names: string[] = []
  const pastName = (name: string): Buffer => Buffer.concat([recordPrefix(name), Buffer.from([0xff])])
  // Every live file keeps one record, so jump from name to name instead of reading all records.
  let cursor: Buffer | undefined = options.after === undefined ? undefined : pastName(options.after)
  let probes = 0
  while (names.length < options.namesMax && probes++ < options.namesMax * 2) {
    let key: Buffer | undefined
    for await (const [found] of kv.query({ prefix: allRecordsPrefix, ...(cursor ? { gt: cursor } : {}), limit: 1, values: false })) key = found
    if (key === undefined) break
    const parsed = parseRecordKey(key)
    if (parsed === undefined) {
      cursor = key
      continue
    }
    names.push(parsed.name)
    cursor = pastName(parsed.name)
  }
  let removed = 0
  for (const name of names) removed += await collectName(kv, name, options)
  const result: SweepResult = { removed, names: names.length }
  if (names.length === options.namesMax) result.next = names[names.length - 1]!
  return result
}
