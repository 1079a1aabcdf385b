/**
 * The OpenAPI 3.1 description of the HTTP API, served at /v1/openapi.json. Kept next to the
 * routes so a route change and its description change in one commit.
 */
import { Limits } from '../../limits.js'
import { kvListLimitMax } from './routes-kv.js'

const errorBody = {
  description: 'error',
  content: { 'application/json': { schema: { $ref: '#/components/schemas/Error' } } },
}

const errors = (...statuses: number[]): Record<string, unknown> => Object.fromEntries(statuses.map((status) => [String(status), errorBody]))

const keyParam = { name: 'key', in: 'path', required: true, description: 'one path segment, percent-encoded UTF-8', schema: { type: 'string' } }
const nameParam = { name: 'name', in: 'path', required: true, description: 'file name, percent-encoded UTF-8 ("/" allowed)', schema: { type: 'string' } }
const syncParam = { name: 'sync', in: 'query', description: 'false: acknowledge before fsync', schema: { type: 'boolean', default: true } }
const query = (name: string, type = 'string', description?: string): Record<string, unknown> => ({
  name,
  in: 'query',
  schema: { type },
  ...(description ? { description } : {}),
})

/** openApiDocument describes every route of the HTTP front end served at `serverUrl`. */
export function openApiDocument(serverUrl: string): object {
  return {
    openapi: '3.1.0',
    info: { title: 'distkv HTTP API', version: '1', description: 'Keys, files and cluster state of a distkv proxy or local server.' },
    servers: [{ url: serverUrl }],
    components: {
      securitySchemes: { bearer: { type: 'http', scheme: 'bearer', description: 'only when the server was given a token' } },
      schemas: {
        Error: {
          type: 'object',
          required: ['error'],
          properties: { error: { type: 'object', required: ['code', 'message'], properties: { code: { type: 'string', pattern: '^KV_ERR_' }, message: { type: 'string' }, details: { type: 'object' } } } },
        },
        FileInfo: {
          type: 'object',
          properties: { name: { type: 'string' }, size: { type: 'integer' }, contentType: { type: 'string' }, sha256: { type: 'string' }, etag: { type: 'string' }, created: { type: 'string', format: 'date-time' } },
        },
      },
    },
    paths: {
      '/v1/kv/{key}': {
        parameters: [keyParam],
        get: { summary: 'read a value', responses: { 200: { description: 'the value', content: { 'application/octet-stream': {} } }, ...errors(400, 404, 413, 503) } },
        head: { summary: 'value size as Content-Length', responses: { 200: { description: 'present' }, ...errors(404) } },
        put: {
          summary: `write a value (body up to ${Limits.valueBytesMax} bytes)`,
          parameters: [syncParam],
          requestBody: { content: { 'application/octet-stream': {} } },
          responses: { 204: { description: 'written' }, ...errors(400, 413, 503) },
        },
        delete: { summary: 'delete a key (absent is fine)', parameters: [syncParam], responses: { 204: { description: 'deleted' }, ...errors(400, 503) } },
      },
      '/v1/kv': {
        get: {
          summary: 'list keys in bytewise order; pass `next` as gt (lt when reverse) for the next page',
          parameters: [query('prefix'), query('gt'), query('gte'), query('lt'), query('lte'), query('limit', 'integer', `1..${kvListLimitMax}, default 100`), query('reverse', 'boolean')],
          responses: { 200: { description: '{ items: [{ key, size }], next? }' }, ...errors(400, 503) },
        },
      },
      '/v1/batch': {
        post: {
          summary: `atomic batch of up to ${Limits.batchOpsMax} operations`,
          parameters: [syncParam],
          requestBody: { content: { 'application/json': { example: { ops: [{ type: 'put', key: 'a', value: 'aGVsbG8=' }, { type: 'del', key: 'b' }] } } } },
          responses: { 200: { description: '{ ok: true, ops }' }, ...errors(400, 413, 503) },
        },
      },
      '/v1/files/{name}': {
        parameters: [nameParam],
        get: {
          summary: 'download a file; Range (206/416) and If-None-Match (304) supported; ?download=1 adds Content-Disposition',
          responses: { 200: { description: 'the content' }, 206: { description: 'a byte range' }, 304: { description: 'not modified' }, ...errors(404, 416) },
        },
        head: { summary: 'file headers only', responses: { 200: { description: 'present' }, ...errors(404) } },
        put: {
          summary: 'upload (streamed); the Content-Type header is kept',
          requestBody: { content: { '*/*': {} } },
          responses: { 201: { description: 'stored', content: { 'application/json': { schema: { $ref: '#/components/schemas/FileInfo' } } } }, ...errors(400, 413, 503) },
        },
        delete: { summary: 'delete a file', responses: { 204: { description: 'deleted' }, ...errors(404) } },
      },
      '/v1/files': {
        get: {
          summary: 'list files by name; pass `next` as after for the next page',
          parameters: [query('prefix'), query('after'), query('limit', 'integer')],
          responses: { 200: { description: '{ items: [FileInfo], next? }' } },
        },
      },
      '/v1/cluster': { get: { summary: 'nodes, meta leader, shards with replicas, leader and slot ranges', responses: { 200: { description: 'ClusterView' } } } },
      '/healthz': { get: { summary: '200 when this node can serve, else 503', responses: { 200: { description: 'ok' }, 503: { description: 'unavailable' } } } },
      '/metrics': { get: { summary: 'Prometheus text format', responses: { 200: { description: 'metrics' } } } },
      '/': { get: { summary: 'the web UI', responses: { 200: { description: 'HTML' } } } },
    },
    security: [{ bearer: [] }, {}],
  }
}
