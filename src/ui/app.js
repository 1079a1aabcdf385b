// distkv web UI: key browser, file gallery and cluster dashboard over the HTTP API
// (docs/http.md). Plain JavaScript, no dependencies, served by the package itself.
// Errors from the API arrive as { error: { code, message } } and are shown as they are.

const $ = (selector) => document.querySelector(selector)
const el = (tag, props = {}, ...children) => {
  const node = document.createElement(tag)
  for (const [name, value] of Object.entries(props)) {
    if (name === 'class') node.className = value
    else if (name === 'dataset') Object.assign(node.dataset, value)
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value)
    else if (value !== undefined && value !== null && value !== false) node.setAttribute(name, value === true ? '' : value)
  }
  for (const child of children.flat()) if (child !== null && child !== undefined) node.append(child)
  return node
}

// ---------------------------------------------------------------- API access

/** ApiError carries the server's KV_ERR code next to its message. */
class ApiError extends Error {
  constructor(status, code, message) {
    super(message)
    this.status = status
    this.code = code
  }
}

let token = sessionStorage.getItem('distkv-token') ?? ''

function authHeaders(headers = {}) {
  return token ? { ...headers, authorization: `Bearer ${token}` } : headers
}

async function failure(response) {
  let code = `HTTP ${response.status}`
  let message = response.statusText || 'request failed'
  try {
    const body = await response.json()
    if (body?.error) ({ code, message } = body.error)
  } catch {
    // not JSON: keep the status line
  }
  return new ApiError(response.status, code, message)
}

/** api calls the HTTP API; a 401 asks for a token once and retries. */
async function api(path, options = {}, retried = false) {
  let response
  try {
    response = await fetch(path, { ...options, headers: authHeaders(options.headers) })
  } catch (error) {
    throw new ApiError(0, 'NETWORK', `cannot reach the server (${error.message})`)
  }
  if (response.status === 401 && !retried && (await askToken())) return api(path, options, true)
  if (!response.ok && response.status !== 304) throw await failure(response)
  return response
}

const json = async (path, options) => (await api(path, options)).json()
const keyPath = (key) => `/v1/kv/${encodeURIComponent(key)}`
const filePath = (name) => `/v1/files/${encodeURIComponent(name)}`

function askToken() {
  const dialog = $('#token')
  return new Promise((resolve) => {
    dialog.addEventListener(
      'close',
      () => {
        token = $('#token-value').value.trim()
        sessionStorage.setItem('distkv-token', token)
        resolve(token !== '')
      },
      { once: true },
    )
    dialog.showModal()
  })
}

// ---------------------------------------------------------------- messages

function toast(message, { error = false, code } = {}) {
  const node = el('div', { class: `toast${error ? ' error' : ''}` }, code ? el('span', { class: 'code' }, code) : null, message)
  $('#toasts').append(node)
  setTimeout(() => node.remove(), error ? 8000 : 3000)
}

function showError(error, what) {
  const message = what ? `${what}: ${error.message}` : error.message
  toast(message, { error: true, code: error.code })
  console.error(error)
}

/** guard runs an async UI action and turns any failure into a visible message. */
const guard = (what, action) => async (...args) => {
  try {
    await action(...args)
  } catch (error) {
    showError(error, what)
  }
}

// ---------------------------------------------------------------- formatting

function formatBytes(bytes) {
  if (bytes === null || bytes === undefined) return '–'
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB']
  let value = bytes
  let unit = 0
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024
    unit++
  }
  return `${unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`
}

function hexDump(bytes, limit = 64 * 1024) {
  const lines = []
  const shown = Math.min(bytes.length, limit)
  for (let offset = 0; offset < shown; offset += 16) {
    const row = bytes.subarray(offset, Math.min(offset + 16, shown))
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, '0')).join(' ')
    const text = Array.from(row, (b) => (b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '·')).join('')
    lines.push(`${offset.toString(16).padStart(8, '0')}  ${hex.padEnd(47)}  ${text}`)
  }
  if (bytes.length > shown) lines.push(`… ${formatBytes(bytes.length - shown)} more`)
  return lines.join('\n')
}

function sniffImageType(bytes) {
  const starts = (...sig) => sig.every((b, i) => bytes[i] === b)
  if (starts(0x89, 0x50, 0x4e, 0x47)) return 'image/png'
  if (starts(0xff, 0xd8, 0xff)) return 'image/jpeg'
  if (starts(0x47, 0x49, 0x46, 0x38)) return 'image/gif'
  if (starts(0x52, 0x49, 0x46, 0x46) && bytes[8] === 0x57 && bytes[9] === 0x45) return 'image/webp'
  if (new TextDecoder().decode(bytes.subarray(0, 256)).trimStart().startsWith('<svg')) return 'image/svg+xml'
  return undefined
}

// ---------------------------------------------------------------- tabs

const views = ['keys', 'files', 'cluster']
const loaders = {}

function showTab() {
  const name = views.includes(location.hash.slice(1)) ? location.hash.slice(1) : 'keys'
  for (const view of document.querySelectorAll('.view')) view.hidden = view.dataset.view !== name
  for (const tab of document.querySelectorAll('[data-tab]')) tab.classList.toggle('on', tab.dataset.tab === name)
  loaders[name]?.()
}

// ---------------------------------------------------------------- keys

const keys = { prefix: '', cursors: [undefined], page: 0, next: undefined, selected: undefined, bytes: undefined, mode: 'text', pageSize: 50 }

async function loadKeys() {
  const params = new URLSearchParams({ limit: String(keys.pageSize) })
  if (keys.prefix) params.set('prefix', keys.prefix)
  const after = keys.cursors[keys.page]
  if (after !== undefined) params.set('gt', after)
  const { items, next } = await json(`/v1/kv?${params}`)
  keys.next = next
  const rows = items.map((item) =>
    el(
      'tr',
      { class: item.key === keys.selected ? 'on' : '', dataset: { key: item.key }, onclick: () => guard('open key', selectKey)(item.key) },
      el('td', {}, item.key),
      el('td', { class: 'num' }, formatBytes(item.size)),
    ),
  )
  $('#key-rows').replaceChildren(...rows)
  $('#key-empty').hidden = items.length > 0
  $('#key-prev').disabled = keys.page === 0
  $('#key-next').disabled = next === undefined
  $('#key-page').textContent = items.length ? `page ${keys.page + 1}` : ''
}

async function selectKey(key) {
  const response = await api(keyPath(key))
  keys.selected = key
  keys.bytes = new Uint8Array(await response.arrayBuffer())
  keys.mode = sniffImageType(keys.bytes) ? 'image' : 'text'
  for (const row of document.querySelectorAll('#key-rows tr')) row.classList.toggle('on', row.dataset.key === key)
  $('#key-placeholder').hidden = true
  $('#key-detail').hidden = false
  $('#key-name').value = key
  $('#key-name').readOnly = true
  $('#key-size').textContent = formatBytes(keys.bytes.length)
  setEditing(false)
  renderValue()
}

function renderValue() {
  const box = $('#key-value')
  const bytes = keys.bytes
  box.className = 'value'
  for (const button of document.querySelectorAll('#key-modes button')) button.classList.toggle('on', button.dataset.mode === keys.mode)
  if (keys.mode === 'hex') {
    box.classList.add('hex')
    box.textContent = bytes.length ? hexDump(bytes) : ''
  } else if (keys.mode === 'image') {
    const type = sniffImageType(bytes)
    if (!type) return box.replaceChildren(el('span', { class: 'note' }, 'This value is not an image (PNG, JPEG, GIF, WebP or SVG).'))
    const url = URL.createObjectURL(new Blob([bytes], { type }))
    box.replaceChildren(el('img', { src: url, alt: keys.selected, onload: () => URL.revokeObjectURL(url) }))
  } else if (keys.mode === 'json') {
    try {
      box.textContent = JSON.stringify(JSON.parse(new TextDecoder().decode(bytes)), null, 2)
    } catch (error) {
      box.replaceChildren(el('span', { class: 'err' }, `Not valid JSON: ${error.message}`))
    }
  } else {
    box.textContent = new TextDecoder().decode(bytes)
    if (!bytes.length) box.replaceChildren(el('span', { class: 'note' }, '(empty value)'))
  }
}

function setEditing(on) {
  $('#key-editor').hidden = !on
  $('#key-value').hidden = on
  $('#key-modes').hidden = on
  $('#key-edit').hidden = on
  $('#key-save').hidden = !on
  $('#key-cancel').hidden = !on
  if (on) {
    const text = new TextDecoder().decode(keys.bytes)
    $('#key-editor').value = keys.mode === 'json' ? $('#key-value').textContent : text
    $('#key-editor').focus()
  }
}

async function saveKey() {
  const value = $('#key-editor').value
  await api(keyPath(keys.selected), { method: 'PUT', body: value })
  toast(`Saved ${keys.selected}`)
  await selectKey(keys.selected)
  await loadKeys()
}

async function deleteKey() {
  if (!confirm(`Delete key "${keys.selected}"?`)) return
  await api(keyPath(keys.selected), { method: 'DELETE' })
  toast(`Deleted ${keys.selected}`)
  keys.selected = undefined
  $('#key-detail').hidden = true
  $('#key-placeholder').hidden = false
  await loadKeys()
}

function newKey() {
  const dialog = $('#newkey')
  $('#newkey-key').value = keys.prefix
  $('#newkey-value').value = ''
  dialog.showModal()
}

async function createKey() {
  if ($('#newkey').returnValue !== 'ok') return
  const key = $('#newkey-key').value
  if (!key) return
  await api(keyPath(key), { method: 'PUT', body: $('#newkey-value').value })
  toast(`Created ${key}`)
  await loadKeys()
  await selectKey(key)
}

function setupKeys() {
  let timer
  $('#key-prefix').addEventListener('input', (event) => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      keys.prefix = event.target.value
      keys.cursors = [undefined]
      keys.page = 0
      guard('list keys', loadKeys)()
    }, 200)
  })
  $('#key-next').addEventListener('click', guard('list keys', async () => {
    keys.cursors[keys.page + 1] = keys.next
    keys.page++
    await loadKeys()
  }))
  $('#key-prev').addEventListener('click', guard('list keys', async () => {
    keys.page = Math.max(0, keys.page - 1)
    await loadKeys()
  }))
  for (const button of document.querySelectorAll('#key-modes button')) {
    button.addEventListener('click', () => {
      keys.mode = button.dataset.mode
      renderValue()
    })
  }
  $('#key-edit').addEventListener('click', () => setEditing(true))
  $('#key-cancel').addEventListener('click', () => setEditing(false))
  $('#key-save').addEventListener('click', guard('save key', saveKey))
  $('#key-delete').addEventListener('click', guard('delete key', deleteKey))
  $('#key-new').addEventListener('click', newKey)
  $('#newkey').addEventListener('close', guard('create key', createKey))
  loaders.keys = guard('list keys', loadKeys)
}

// ---------------------------------------------------------------- files

const gallery = { prefix: '', next: undefined, items: [] }
const isImage = (info) => info.contentType.startsWith('image/')
const extension = (name) => (/\.([a-z0-9]{1,5})$/i.exec(name)?.[1] ?? 'file')

/** fileUrl gives a URL the browser can load; with a token, <img> cannot send it, so fetch a blob. */
async function fileUrl(name) {
  if (!token) return filePath(name)
  return URL.createObjectURL(await (await api(filePath(name))).blob())
}

async function loadFiles(more = false) {
  const params = new URLSearchParams({ limit: '48' })
  if (gallery.prefix) params.set('prefix', gallery.prefix)
  if (more && gallery.next) params.set('after', gallery.next)
  const { items, next } = await json(`/v1/files?${params}`)
  gallery.items = more ? gallery.items.concat(items) : items
  gallery.next = next
  const cards = await Promise.all(items.map(card))
  if (more) $('#gallery').append(...cards)
  else $('#gallery').replaceChildren(...cards)
  $('#gallery-empty').hidden = gallery.items.length > 0
  $('#file-more').hidden = next === undefined
  $('#file-count').textContent = gallery.items.length ? `${gallery.items.length}${next ? '+' : ''} file${gallery.items.length === 1 ? '' : 's'}` : ''
}

async function card(info) {
  const thumb = el('button', { class: 'thumb', title: `Open ${info.name}`, onclick: () => openFile(info) })
  if (isImage(info)) thumb.append(el('img', { src: await fileUrl(info.name), alt: info.name, loading: 'lazy' }))
  else thumb.append(el('span', { class: 'ext' }, extension(info.name)))
  return el(
    'article',
    { class: 'card', dataset: { name: info.name, testid: 'file-card' } },
    thumb,
    el('div', { class: 'meta' }, el('span', { class: 'ellipsis', title: info.name }, info.name), el('span', { class: 'muted small' }, `${formatBytes(info.size)} · ${info.contentType}`)),
    el(
      'div',
      { class: 'card-actions' },
      el('button', { onclick: () => openFile(info) }, 'Open'),
      el('a', { class: 'button icon', href: `${filePath(info.name)}?download=1`, download: info.name.split('/').pop(), title: `Download ${info.name}`, 'aria-label': 'Download' }, icon(downloadIcon)),
      el('span', { class: 'spacer' }),
      el('button', { class: 'danger icon', title: `Delete ${info.name}`, 'aria-label': 'Delete', onclick: guard('delete file', () => deleteFile(info.name)) }, icon(trashIcon)),
    ),
  )
}

const downloadIcon = 'M5 20h14v-2H5v2Zm7-3 6-6-1.41-1.41L13 13.17V4h-2v9.17l-3.59-3.58L6 11l6 6Z'
const trashIcon = 'M9 3v1H4v2h1v13a2 2 0 0 0 2 2h10a2 2 0 0 0 2-2V6h1V4h-5V3H9Zm-2 3h10v13H7V6Zm2 2v9h2V8H9Zm4 0v9h2V8h-2Z'

function icon(path) {
  const ns = 'http://www.w3.org/2000/svg'
  const svg = document.createElementNS(ns, 'svg')
  svg.setAttribute('viewBox', '0 0 24 24')
  svg.setAttribute('aria-hidden', 'true')
  const shape = document.createElementNS(ns, 'path')
  shape.setAttribute('d', path)
  shape.setAttribute('fill', 'currentColor')
  svg.append(shape)
  return svg
}

let openName

async function openFile(info) {
  openName = info.name
  $('#lightbox-name').textContent = info.name
  $('#lightbox-download').href = `${filePath(info.name)}?download=1`
  $('#lightbox-meta').textContent = `${formatBytes(info.size)} · ${info.contentType} · uploaded ${new Date(info.created).toLocaleString()} · sha256 ${info.sha256.slice(0, 16)}…`
  const image = $('#lightbox-image')
  image.hidden = !isImage(info)
  if (isImage(info)) image.src = await fileUrl(info.name)
  $('#lightbox').showModal()
}

async function deleteFile(name) {
  if (!confirm(`Delete file "${name}"?`)) return false
  await api(filePath(name), { method: 'DELETE' })
  toast(`Deleted ${name}`)
  document.querySelector(`.card[data-name="${CSS.escape(name)}"]`)?.remove()
  gallery.items = gallery.items.filter((item) => item.name !== name)
  $('#gallery-empty').hidden = gallery.items.length > 0
  return true
}

/** upload sends one file with XMLHttpRequest, the one browser API that reports upload progress. */
function upload(file) {
  const bar = el('span')
  const state = el('span', { class: 'state' }, 'waiting…')
  const row = el('li', { class: 'upload', dataset: { name: file.name, testid: 'upload' } }, el('span', { class: 'name ellipsis' }, file.name), state, el('div', { class: 'bar' }, bar))
  $('#uploads').prepend(row)
  return new Promise((resolve) => {
    const xhr = new XMLHttpRequest()
    xhr.open('PUT', filePath(file.name))
    for (const [name, value] of Object.entries(authHeaders({ 'content-type': file.type || 'application/octet-stream' }))) xhr.setRequestHeader(name, value)
    xhr.upload.onprogress = (event) => {
      const fraction = event.lengthComputable ? event.loaded / event.total : 0
      bar.style.width = `${(fraction * 100).toFixed(1)}%`
      state.textContent = `${formatBytes(event.loaded)} of ${formatBytes(file.size)} · ${Math.round(fraction * 100)}%`
    }
    const finish = (ok, message) => {
      row.classList.add(ok ? 'done' : 'failed')
      bar.style.width = '100%'
      state.textContent = message
      if (ok) setTimeout(() => row.remove(), 4000)
      resolve(ok)
    }
    xhr.onload = () => {
      if (xhr.status === 201) return finish(true, `done · ${formatBytes(file.size)}`)
      let message = `HTTP ${xhr.status}`
      try {
        const body = JSON.parse(xhr.responseText)
        message = `${body.error.code}: ${body.error.message}`
      } catch {
        // keep the status
      }
      finish(false, message)
      toast(`${file.name}: ${message}`, { error: true })
    }
    xhr.onerror = () => finish(false, 'network error: the upload did not reach the server')
    xhr.send(file)
  })
}

/** uploadAll sends files a few at a time so a drop of hundreds does not open hundreds of requests. */
async function uploadAll(files) {
  const queue = Array.from(files)
  const workers = Array.from({ length: Math.min(4, queue.length) }, async () => {
    while (queue.length) await upload(queue.shift())
  })
  await Promise.all(workers)
  await loadFiles()
}

function setupFiles() {
  const zone = $('#dropzone')
  zone.addEventListener('dragover', (event) => {
    event.preventDefault()
    zone.classList.add('over')
  })
  zone.addEventListener('dragleave', () => zone.classList.remove('over'))
  zone.addEventListener('drop', (event) => {
    event.preventDefault()
    zone.classList.remove('over')
    guard('upload', uploadAll)(event.dataTransfer.files)
  })
  $('#file-input').addEventListener('change', (event) => {
    guard('upload', uploadAll)(event.target.files)
    event.target.value = ''
  })
  let timer
  $('#file-prefix').addEventListener('input', (event) => {
    clearTimeout(timer)
    timer = setTimeout(() => {
      gallery.prefix = event.target.value
      guard('list files', loadFiles)()
    }, 200)
  })
  $('#file-more').addEventListener('click', guard('list files', () => loadFiles(true)))
  $('#lightbox-close').addEventListener('click', () => $('#lightbox').close())
  $('#lightbox').addEventListener('click', (event) => event.target === $('#lightbox') && $('#lightbox').close())
  $('#lightbox-delete').addEventListener('click', guard('delete file', async () => {
    if (await deleteFile(openName)) $('#lightbox').close()
  }))
  loaders.files = guard('list files', () => loadFiles())
}

// ---------------------------------------------------------------- cluster

const cluster = { samples: [], last: undefined, timer: undefined }
const palette = ['#4f46e5', '#0ea5e9', '#10b981', '#f59e0b', '#ef4444', '#8b5cf6', '#ec4899', '#14b8a6']

function opsTotal(view) {
  return view.nodes.reduce((sum, node) => sum + (typeof node.opsTotal === 'number' ? node.opsTotal : 0), 0)
}

function stat(label, value, testid) {
  return el('div', { class: 'stat', dataset: { testid } }, el('div', { class: 'k' }, label), el('div', { class: 'v' }, String(value)))
}

function nodeRates(view, now) {
  const rates = new Map()
  const previous = cluster.last
  for (const node of view.nodes) {
    const before = previous?.view.nodes.find((n) => n.id === node.id)
    const seconds = previous ? (now - previous.at) / 1000 : 0
    rates.set(node.id, before && seconds > 0 && typeof node.opsTotal === 'number' ? Math.max(0, (node.opsTotal - before.opsTotal) / seconds) : undefined)
  }
  return rates
}

function renderCluster(view) {
  const now = Date.now()
  const rates = nodeRates(view, now)
  const total = [...rates.values()].reduce((sum, rate) => sum + (rate ?? 0), 0)
  if (cluster.last) cluster.samples.push(total)
  cluster.samples = cluster.samples.slice(-60)
  cluster.last = { view, at: now }
  const up = view.nodes.filter((node) => node.health === 'up').length
  const leader = view.meta?.leader
  $('#cluster-cards').replaceChildren(
    stat('Mode', view.mode, 'stat-mode'),
    stat('Nodes up', `${up} / ${view.nodes.length}`, 'stat-nodes'),
    stat('Shards', view.shards.length, 'stat-shards'),
    stat('Meta leader', leader ?? (view.mode === 'local' ? '–' : 'none'), 'stat-meta'),
    stat('ops/s', cluster.samples.length ? Math.round(total) : '…', 'stat-ops'),
  )
  $('#node-rows').replaceChildren(...view.nodes.map((node) => nodeRow(node, rates.get(node.id), leader)))
  renderShards(view)
  renderChart()
  $('#cluster-updated').textContent = `updated ${new Date(now).toLocaleTimeString()}`
}

function nodeRow(node, rate, metaLeader) {
  const roles = (node.roles ?? []).map((role) => el('span', { class: role === 'meta' && node.id === metaLeader ? 'badge leader' : 'badge grey' }, role === 'meta' && node.id === metaLeader ? 'meta ★' : role))
  const health = node.health ?? 'unknown'
  return el(
    'tr',
    { dataset: { testid: 'node-row', node: String(node.id) } },
    el('td', {}, el('b', {}, `#${node.id}`), node.pid ? el('span', { class: 'muted small' }, ` pid ${node.pid}`) : null),
    el('td', {}, el('div', { class: 'roles' }, roles)),
    el('td', {}, el('span', { class: `dot ${health === 'up' ? 'up' : health === 'down' ? 'down' : 'unknown'}` }), ` ${health}`),
    el('td', { class: 'mono' }, [node.http, node.rpc].filter(Boolean).join(' · ') || '–'),
    el('td', { class: 'num', title: rate === undefined && cluster.last ? 'this node reports no operation count' : '' }, rate !== undefined ? rate.toFixed(rate < 10 ? 1 : 0) : cluster.samples.length ? '–' : '…'),
  )
}

function ranges(slots) {
  return slots.map(([from, to]) => (from === to ? `${from}` : `${from}–${to}`)).join(', ')
}

function renderShards(view) {
  const slotCount = view.slotCount ?? Math.max(1, ...view.shards.flatMap((shard) => shard.slots.map(([, to]) => to + 1)))
  const colour = new Map(view.shards.map((shard, i) => [shard.id, palette[i % palette.length]]))
  const segments = view.shards
    .flatMap((shard) => shard.slots.map(([from, to]) => ({ shard, from, to })))
    .sort((a, b) => a.from - b.from)
    .map(({ shard, from, to }) => {
      const span = el('span', { title: `shard ${shard.id}: slots ${from}–${to}` })
      span.style.width = `${((to - from + 1) / slotCount) * 100}%`
      span.style.background = colour.get(shard.id)
      return span
    })
  $('#slot-map').replaceChildren(...segments)
  $('#slot-total').textContent = `${slotCount} slots`
  $('#shard-rows').replaceChildren(
    ...view.shards.map((shard) => {
      const swatch = el('span', { class: 'swatch' })
      swatch.style.background = colour.get(shard.id)
      const replicas = shard.replicas.map((id) => el('span', { class: id === shard.leader ? 'badge leader' : 'badge grey' }, id === shard.leader ? `#${id} ★` : `#${id}`))
      return el(
        'tr',
        { dataset: { testid: 'shard-row' } },
        el('td', {}, swatch, el('b', {}, `${shard.id}`)),
        el('td', {}, shard.leader === undefined || shard.leader === null ? el('span', { class: 'muted' }, 'electing…') : `#${shard.leader}`),
        el('td', {}, el('div', { class: 'roles' }, replicas)),
        el('td', { class: 'mono' }, ranges(shard.slots)),
      )
    }),
  )
}

function renderChart() {
  const svg = $('#ops-chart')
  const ns = 'http://www.w3.org/2000/svg'
  const samples = cluster.samples
  const max = Math.max(10, ...samples) * 1.15
  const x = (i) => (samples.length < 2 ? 0 : (i / (samples.length - 1)) * 600)
  const y = (v) => 110 - (v / max) * 100
  const points = samples.map((v, i) => `${x(i)},${y(v)}`).join(' ')
  const shape = (tag, attrs) => {
    const node = document.createElementNS(ns, tag)
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value)
    return node
  }
  const children = [shape('line', { class: 'grid', x1: 0, x2: 600, y1: 110, y2: 110 }), shape('line', { class: 'grid', x1: 0, x2: 600, y1: 10, y2: 10 })]
  if (samples.length > 1) {
    children.push(shape('polygon', { class: 'area', points: `0,110 ${points} ${x(samples.length - 1)},110` }))
    children.push(shape('polyline', { class: 'line', points }))
  }
  svg.replaceChildren(...children)
  $('#ops-max').textContent = `${Math.round(max / 1.15)} ops/s`
}

/** withOps fills in opsTotal from the answering front end's own count when the view has none for that node. */
function withOps(view) {
  for (const node of view.nodes) {
    if (typeof node.opsTotal !== 'number' && view.frontEnd && node.http === view.frontEnd.url) node.opsTotal = view.frontEnd.requestsTotal
  }
  return view
}

async function loadCluster() {
  try {
    renderCluster(withOps(await json('/v1/cluster')))
  } catch (error) {
    $('#cluster-updated').textContent = `update failed: ${error.message}`
    throw error
  }
}

function setupCluster() {
  const tick = () => {
    if (!$('#view-cluster').hidden && $('#cluster-auto').checked) loadCluster().catch(() => undefined)
  }
  cluster.timer = setInterval(tick, 2000)
  loaders.cluster = guard('cluster', loadCluster)
}

// ---------------------------------------------------------------- health

async function checkHealth() {
  const box = $('#health')
  let state = 'down'
  let label = 'unreachable'
  try {
    const response = await fetch('/healthz', { cache: 'no-store' })
    state = response.ok ? 'up' : 'down'
    label = response.ok ? 'healthy' : ((await response.json().catch(() => null))?.error?.message ?? `HTTP ${response.status}`)
  } catch {
    // unreachable
  }
  box.querySelector('.dot').className = `dot ${state}`
  box.querySelector('.label').textContent = label
}

// ---------------------------------------------------------------- start

setupKeys()
setupFiles()
setupCluster()
window.addEventListener('hashchange', showTab)
showTab()
checkHealth()
setInterval(checkHealth, 5000)
