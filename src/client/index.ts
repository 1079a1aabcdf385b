/**
 * The public client: `open(dir)` for local mode, `connect(endpoint)` for a server's TCP
 * listener; both return the same DistKV interface.
 */
export { open, connect } from './open.js'
export { parseEndpoint } from '../local/validate.js'
export { RemoteKV, requestTimeoutMsMax, defaultRequestTimeoutMs } from './remote.js'
export type * from './types.js'
export { files, FileStore } from '../files/index.js'
export type { FileStoreOptions, FileInfo, FileRead, FileList, ListFilesOptions, PutFileOptions } from '../files/index.js'
