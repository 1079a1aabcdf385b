/**
 * The web UI's files (index.html, app.js, style.css, icon.svg in this folder's source
 * directory, shipped with the package), read once and served from memory with ETags.
 * No CDN and no build step: the page is plain JavaScript and CSS.
 */
import { createHash } from 'node:crypto'
import { readFile } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'

/** UiAsset is one file of the page, ready to send. */
export interface UiAsset {
  body: Buffer
  contentType: string
  etag: string
}

const files: Array<[path: string, file: string, contentType: string]> = [
  ['/', 'index.html', 'text/html; charset=utf-8'],
  ['/ui/app.js', 'app.js', 'text/javascript; charset=utf-8'],
  ['/ui/style.css', 'style.css', 'text/css; charset=utf-8'],
  ['/ui/icon.svg', 'icon.svg', 'image/svg+xml'],
]

/** uiDirectory: compiled code runs from dist/src/ui, the assets stay in src/ui. */
export const uiDirectory = fileURLToPath(new URL('../../../src/ui/', import.meta.url))

let loaded: Promise<Map<string, UiAsset>> | undefined

/** uiAssets maps each URL path of the page to its content (loaded once per process). */
export function uiAssets(): Promise<Map<string, UiAsset>> {
  loaded ??= Promise.all(
    files.map(async ([path, file, contentType]): Promise<[string, UiAsset]> => {
      const body = await readFile(uiDirectory + file)
      return [path, { body, contentType, etag: `"${createHash('sha256').update(body).digest('hex').slice(0, 16)}"` }]
    }),
  ).then((entries) => new Map(entries))
  return loaded
}
