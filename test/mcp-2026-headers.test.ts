// The MCP 2026-07-28 header mirroring rules (basic/transports/streamable-http, "Request Metadata"),
// checked against the spec's own examples: value encoding, x-mcp-header discovery, server validation.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeHeaderValue, encodeHeaderValue, headerParams, modernHeaders } from '../src/tools/mcp-headers.ts';
import { headerMismatch, isModernRequest } from '../src/tools/mcp-stateless.ts';
import type { CompiledTool } from '../src/tools/catalog.ts';

/** The spec's "Encoding examples" table. */
const SPEC_EXAMPLES: Array<[string, string]> = [
  ['us-west1', 'us-west1'],
  ['Hello, 世界', '=?base64?SGVsbG8sIOS4lueVjA==?='],
  [' padded ', '=?base64?IHBhZGRlZCA=?='],
  ['line1\nline2', '=?base64?bGluZTEKbGluZTI=?='],
  ['=?base64?literal?=', '=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?='],
];

test('value encoding follows the spec examples, and decoding reverses it', () => {
  for (const [value, header] of SPEC_EXAMPLES) {
    assert.equal(encodeHeaderValue(value), header, value);
    assert.equal(decodeHeaderValue(header), value, header);
  }
});

test('malformed header values are refused, not guessed', () => {
  assert.equal(decodeHeaderValue('=?base64?not base64!?='), null);
  assert.equal(decodeHeaderValue('=?base64?//79?='), null, 'bytes that are not UTF-8');
  assert.equal(decodeHeaderValue('caf\u00e9'), null, 'a raw non-ASCII value');
});

test('x-mcp-header is found only through chains of properties', () => {
  const schema = {
    type: 'object',
    properties: {
      region: { type: 'string', 'x-mcp-header': 'Region' },
      target: { type: 'object', properties: { tenant: { type: 'string', 'x-mcp-header': 'Tenant' } } },
      list: { type: 'array', items: { type: 'object', properties: { x: { type: 'string', 'x-mcp-header': 'X' } } } },
      either: { oneOf: [{ type: 'string', 'x-mcp-header': 'Either' }] },
    },
  };
  assert.deepEqual(headerParams(schema), [{ header: 'Region', path: ['region'] }, { header: 'Tenant', path: ['target', 'tenant'] }]);
  assert.deepEqual(modernHeaders('tools/call', { name: 'q', arguments: { region: 'eu', target: { tenant: 'acme' } } }, schema), {
    'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2026-07-28',
    'mcp-method': 'tools/call', 'mcp-name': 'q', 'mcp-param-region': 'eu', 'mcp-param-tenant': 'acme',
  });
});

const body = (method: string, params: Record<string, unknown>) =>
  ({ jsonrpc: '2.0', id: 1, method, params: { ...params, _meta: { 'io.modelcontextprotocol/protocolVersion': '2026-07-28', 'io.modelcontextprotocol/clientCapabilities': {} } } });
const tool = { def: { name: 'q', inputSchema: { type: 'object', properties: { n: { type: 'integer', 'x-mcp-header': 'N' }, on: { type: 'boolean', 'x-mcp-header': 'On' } } } } } as unknown as CompiledTool;

test('server validation: integers compare as numbers, booleans as words, every mirrored field must agree', () => {
  const h = { 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'tools/call', 'mcp-name': 'q' };
  assert.equal(headerMismatch({ ...h, 'mcp-param-n': '42.0', 'mcp-param-on': 'true' }, body('tools/call', { name: 'q', arguments: { n: 42, on: true } }), tool), null);
  assert.match(headerMismatch({ ...h, 'mcp-param-n': '43', 'mcp-param-on': 'true' }, body('tools/call', { name: 'q', arguments: { n: 42, on: true } }), tool)!, /Mcp-Param-N/);
  assert.match(headerMismatch({ ...h, 'mcp-param-n': '42', 'mcp-param-on': 'True' }, body('tools/call', { name: 'q', arguments: { n: 42, on: true } }), tool)!, /Mcp-Param-On/);
  assert.match(headerMismatch({ ...h, 'mcp-param-n': '' }, body('tools/call', { name: 'q', arguments: { n: 0 } }), tool)!, /Mcp-Param-N/);
  assert.equal(headerMismatch({ ...h }, body('tools/call', { name: 'q', arguments: { n: null } }), tool), null, 'a null value needs no header');
  assert.match(headerMismatch({ ...h, 'mcp-name': '=?base64?cg==?=' }, body('tools/call', { name: 'q' }))!, /Mcp-Name header value "r"/);
  assert.match(headerMismatch({ 'mcp-protocol-version': '2026-07-28', 'mcp-method': 'resources/read', 'mcp-name': 'file:///a' }, body('resources/read', { uri: 'file:///b' }))!, /params\.uri/);
});

test('which generation a POST speaks: _meta version or a non-legacy version header, never with a session or initialize', () => {
  const b = body('tools/list', {});
  assert.equal(isModernRequest({}, b), true);
  assert.equal(isModernRequest({ 'mcp-session-id': 'x' }, b), false);
  assert.equal(isModernRequest({ 'mcp-protocol-version': '2025-11-25' }, { jsonrpc: '2.0', id: 1, method: 'tools/list' }), false);
  assert.equal(isModernRequest({ 'mcp-protocol-version': '2026-07-28' }, { jsonrpc: '2.0', id: 1, method: 'tools/list' }), true);
  assert.equal(isModernRequest({}, { ...b, method: 'initialize' }), false);
  assert.equal(isModernRequest({}, [b]), false, 'batches are a legacy feature');
});
