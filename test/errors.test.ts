import { test } from 'node:test'
import assert from 'node:assert/strict'
import { ErrorCode, KvError, kvErrorFrom } from '../src/errors.js'

test('kvErrorFrom keeps known codes and maps unknown ones to INTERNAL', () => {
  const known = kvErrorFrom(new KvError(ErrorCode.AUTH, 'bad token').toJSON())
  assert.equal(known.code, 'KV_ERR_AUTH')
  assert.equal(known.message, 'bad token')
  assert.equal(kvErrorFrom({ code: 'nope', message: 'x' }).code, 'KV_ERR_INTERNAL')
  assert.equal(kvErrorFrom({}).code, 'KV_ERR_INTERNAL')
})
