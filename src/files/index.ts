/**
 * Files: chunked file storage on top of any DistKV (docs/files.md). `files(kv)` is the entry point.
 */
export { FileStore, files, fileStoreDefaults, listFilesLimitMax } from './store.js'
export type { FileStoreOptions, PutFileOptions, GetFileOptions, FileRead, OpenFile, ListFilesOptions, FileList } from './store.js'
export type { FileInfo } from './manifest.js'
export type { FileSource } from './chunker.js'
export type { ByteRange } from './reader.js'
export { checkFileName, fileNameBytesMax, userKeysEnd, fileNamespace } from './keys.js'
