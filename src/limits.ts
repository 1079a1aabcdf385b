/**
 * Default limits, named so that the error that enforces each can say which bound was hit.
 * Every queue, frame and payload in distkv is bounded by one of these (or a per-instance option).
 */
export const Limits = {
  /** keyBytesMax: largest key accepted by any API. */
  keyBytesMax: 4 * 1024,
  /** valueBytesMax: largest value accepted by put/batch (files are chunked below this). */
  valueBytesMax: 1024 * 1024,
  /** batchOpsMax: most operations in one batch. */
  batchOpsMax: 10_000,
  /** batchBytesMax: most key+value bytes in one batch. */
  batchBytesMax: 16 * 1024 * 1024,
  /** frameBytesMax: largest wire frame; checked before the frame is allocated. */
  frameBytesMax: 20 * 1024 * 1024,
  /** connectionsMax: most concurrent connections one server accepts. */
  connectionsMax: 1024,
  /** inflightRequestsMax: most requests one connection may have outstanding at the server. */
  inflightRequestsMax: 4096,
  /** getManyKeysMax: most keys in one getMany. */
  getManyKeysMax: 10_000,
  /** queryPageBytesMax: target size of one streamed query page. */
  queryPageBytesMax: 256 * 1024,
  /** queryPageItemsMax: most entries in one streamed query page. */
  queryPageItemsMax: 1024,
} as const
