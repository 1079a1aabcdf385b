/**
 * Key layout of one shard replica in the node's engine, under the Raft group's prefix (so one
 * engine holds many shards and their logs; suffixes below 0x20 belong to raftstore):
 *   prefix | 'd' | user key        the data
 *   prefix | 'q' | log index (8)   the request ids that entry applied (exactly-once, src/store/request-ids.ts)
 *   prefix | 'r' | request id (16) the log index that applied a write request (the layout before 'q', still read)
 *   prefix | 's'                   the slots this replica owns and has frozen (msgpack)
 * [ids, requestEnd) covers both request-id layouts.
 */
import { GROUP_PREFIX_BYTES, RAFT_KEY_SPACE, groupIdOfKey, groupPrefix } from '../raftstore/records.js'

const DATA = 0x64
const IDS = 0x71
const REQUEST = 0x72
const SLOTS = 0x73

/** FIRST_SHARD_GROUP: shard groups are numbered from 2 (group 1 is meta, whose keys are never data). */
const FIRST_SHARD_GROUP = 2

/**
 * isShardDataKey tells whether an engine key is a shard's data key (prefix | 'd' | user key): the
 * keys whose large values a node keeps in blob files (src/engine/blob-engine.ts). Raft records
 * (suffixes below 0x20), request ids, slot records and meta's keys are never separated.
 */
export function isShardDataKey(key: Buffer): boolean {
  if (key.length <= GROUP_PREFIX_BYTES || key[0] !== RAFT_KEY_SPACE || key[GROUP_PREFIX_BYTES] !== DATA) return false
  return groupIdOfKey(key) >= FIRST_SHARD_GROUP
}

/** ShardKeys builds the engine keys of one shard. */
export class ShardKeys {
  readonly data: Buffer
  readonly dataEnd: Buffer
  readonly ids: Buffer
  readonly request: Buffer
  readonly requestEnd: Buffer
  readonly slots: Buffer

  constructor(readonly shardId: number) {
    const prefix = groupPrefix(shardId)
    const withSuffix = (suffix: number) => Buffer.concat([prefix, Buffer.from([suffix])])
    this.data = withSuffix(DATA)
    this.dataEnd = withSuffix(DATA + 1)
    this.ids = withSuffix(IDS)
    this.request = withSuffix(REQUEST)
    this.requestEnd = withSuffix(REQUEST + 1)
    this.slots = withSuffix(SLOTS)
  }

  /** dataKey is the engine key of a user key. */
  dataKey(key: Buffer): Buffer {
    return Buffer.concat([this.data, key])
  }

  /** userKey strips the data prefix from an engine key. */
  userKey(engineKey: Buffer): Buffer {
    return engineKey.subarray(this.data.length)
  }

  /** idsKey is the engine key of the request-id record of the entry at log `index`. */
  idsKey(index: number): Buffer {
    const key = Buffer.allocUnsafe(this.ids.length + 8)
    this.ids.copy(key, 0)
    key.writeBigUInt64BE(BigInt(index), this.ids.length)
    return key
  }

  /** requestKey is the engine key recording a request id in the layout before 'q' records. */
  requestKey(id: Buffer): Buffer {
    return Buffer.concat([this.request, id])
  }
}
