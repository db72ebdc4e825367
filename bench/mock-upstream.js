#!/usr/bin/env node
// Copy of ../shared/bench/mock-upstream/server.js (the project's own harness), converted to ESM
// because this package is "type": "module"; behaviour unchanged.
//
// Minimal, fast OpenAI/Anthropic-compatible mock upstream (plain node:http, no deps).
//
// Endpoints
//   POST /v1/chat/completions   OpenAI chat (JSON, or SSE when "stream": true)
//   POST /v1/embeddings         OpenAI embeddings (float or base64 encoding_format)
//   POST /v1/messages           Anthropic Messages (JSON, or SSE when "stream": true)
//   GET  /v1/models             OpenAI model list
//   GET  /__mock/stats          request counters (to prove traffic reached the mock)
//   GET  /__mock/last           method/url/headers of the most recent /v1 request
//   POST /__mock/reset          zero the counters
//
// Environment (all optional)
//   MOCK_HOST            127.0.0.1
//   MOCK_PORT            18080
//   MOCK_LATENCY_MS      0     fixed delay before the response headers are sent
//   MOCK_STREAM_CHUNKS   20    content chunks per streamed response (N)
//   MOCK_CHUNK_DELAY_MS  0     delay between streamed chunks (0 = write back to back)
//   MOCK_EMBED_DIM       1536  embedding dimension
//   MOCK_EXPECT_KEY      ''    if set, require "Authorization: Bearer <key>" (or x-api-key
//                              for /v1/messages) and answer 401 otherwise
// Per-request overrides (headers, only if the gateway forwards them):
//   x-mock-latency-ms, x-mock-chunks, x-mock-chunk-delay-ms
import http from 'node:http';
import crypto from 'node:crypto';

const HOST = process.env.MOCK_HOST || '127.0.0.1';
const PORT = parseInt(process.env.MOCK_PORT || '18080', 10);
const LATENCY_MS = parseInt(process.env.MOCK_LATENCY_MS || '0', 10);
const CHUNKS = parseInt(process.env.MOCK_STREAM_CHUNKS || '20', 10);
const CHUNK_DELAY_MS = parseInt(process.env.MOCK_CHUNK_DELAY_MS || '0', 10);
const EMBED_DIM = parseInt(process.env.MOCK_EMBED_DIM || '1536', 10);
const EXPECT_KEY = process.env.MOCK_EXPECT_KEY || '';

const FINGERPRINT = 'fp_mock0000a1';
const WORDS = ['Hello', '!', ' I', "'m", ' a', ' mock', ' upstream', ' that', ' answers', ' as',
  ' fast', ' as', ' it', ' can', ',', ' so', ' you', ' can', ' measure', ' the', ' gateway', '.'];
const word = (i) => WORDS[i % WORDS.length];
const fullText = (n) => { let s = ''; for (let i = 0; i < n; i++) s += word(i); return s; };

// Pre-computed pieces (the mock must stay far cheaper than any gateway under test).
const TEXT_CACHE = new Map();
const textFor = (n) => { let t = TEXT_CACHE.get(n); if (t === undefined) { t = fullText(n); TEXT_CACHE.set(n, t); } return t; };
const EMBED_FLOATS = (() => { const a = new Float32Array(EMBED_DIM); for (let i = 0; i < EMBED_DIM; i++) a[i] = Math.sin(i + 1) * 0.05; return a; })();
const EMBED_JSON = '[' + Array.from(EMBED_FLOATS, (v) => v.toPrecision(8)).join(',') + ']';
const EMBED_B64 = JSON.stringify(Buffer.from(EMBED_FLOATS.buffer).toString('base64'));

const stats = { started: new Date().toISOString(), total: 0, chat: 0, chat_stream: 0, embeddings: 0,
  messages: 0, messages_stream: 0, models: 0, not_found: 0, bad_request: 0, unauthorized: 0 };
let last = null;

// Cheap unique ids with the same shape/length as the real ones.
const ID_PREFIX = crypto.randomBytes(6).toString('base64url');
let seq = 0;
const nextId = () => ID_PREFIX + (++seq).toString(36).padStart(12, '0');

const baseHeaders = (ct) => ({
  'content-type': ct,
  'x-request-id': 'req_' + nextId(),
  'openai-version': '2020-10-01',
  'openai-processing-ms': String(LATENCY_MS),
});

function sendJson(res, status, obj, extra) {
  const body = typeof obj === 'string' ? obj : JSON.stringify(obj);
  const h = baseHeaders('application/json');
  h['content-length'] = Buffer.byteLength(body);
  if (extra) Object.assign(h, extra);
  res.writeHead(status, h);
  res.end(body);
}

function openaiError(res, status, message, type, code) {
  sendJson(res, status, { error: { message, type, param: null, code: code ?? null } });
}

const approxTokens = (s) => Math.max(1, Math.ceil(s.length / 4));

function hdrInt(req, name, dflt) {
  const v = req.headers[name];
  if (v === undefined) return dflt;
  const n = parseInt(v, 10);
  return Number.isFinite(n) ? n : dflt;
}

function promptTokens(body, raw) {
  // Roughly emulate usage accounting without tokenizing.
  return approxTokens(raw);
}

// ---------------- OpenAI chat completions ----------------
function chatCompletion(req, res, body, raw) {
  const model = body.model || 'gpt-4o-mini';
  const n = hdrInt(req, 'x-mock-chunks', CHUNKS);
  const created = Math.floor(Date.now() / 1000);
  const id = 'chatcmpl-' + nextId();
  const pt = promptTokens(body, raw);
  const usage = {
    prompt_tokens: pt, completion_tokens: n, total_tokens: pt + n,
    prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
    completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
  };
  if (!body.stream) {
    stats.chat++;
    return sendJson(res, 200, {
      id, object: 'chat.completion', created, model,
      choices: [{ index: 0, message: { role: 'assistant', content: textFor(n), refusal: null, annotations: [] },
        logprobs: null, finish_reason: 'stop' }],
      usage, service_tier: 'default', system_fingerprint: FINGERPRINT,
    });
  }
  stats.chat_stream++;
  const includeUsage = !!(body.stream_options && body.stream_options.include_usage);
  // Common prefix of every chunk (same key order as api.openai.com).
  const pre = `{"id":"${id}","object":"chat.completion.chunk","created":${created},"model":${JSON.stringify(model)},"service_tier":"default","system_fingerprint":"${FINGERPRINT}","choices":[`;
  const frames = [];
  frames.push(`data: ${pre}{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]${includeUsage ? ',"usage":null' : ''}}\n\n`);
  for (let i = 0; i < n; i++) {
    frames.push(`data: ${pre}{"index":0,"delta":{"content":${JSON.stringify(word(i))}},"logprobs":null,"finish_reason":null}]${includeUsage ? ',"usage":null' : ''}}\n\n`);
  }
  frames.push(`data: ${pre}{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]${includeUsage ? ',"usage":null' : ''}}\n\n`);
  if (includeUsage) frames.push(`data: ${pre}],"usage":${JSON.stringify(usage)}}\n\n`);
  frames.push('data: [DONE]\n\n');
  streamFrames(req, res, frames);
}

function streamFrames(req, res, frames) {
  const h = baseHeaders('text/event-stream; charset=utf-8');
  h['cache-control'] = 'no-cache';
  res.writeHead(200, h);
  const delay = hdrInt(req, 'x-mock-chunk-delay-ms', CHUNK_DELAY_MS);
  if (delay <= 0) {
    // Back-to-back: one write() per SSE event (separate chunked-encoding chunks), then end.
    for (let i = 0; i < frames.length - 1; i++) res.write(frames[i]);
    res.end(frames[frames.length - 1]);
    return;
  }
  let i = 0;
  let timer = null;
  res.on('close', () => { if (timer) clearTimeout(timer); });
  const tick = () => {
    timer = null;
    if (res.destroyed) return;
    if (i === frames.length - 1) { res.end(frames[i]); return; }
    res.write(frames[i++]);
    timer = setTimeout(tick, delay);
  };
  tick();
}

// ---------------- OpenAI embeddings ----------------
function embeddings(req, res, body, raw) {
  stats.embeddings++;
  const model = body.model || 'text-embedding-3-small';
  const inputs = Array.isArray(body.input) && body.input.length > 0 && typeof body.input[0] !== 'number' ? body.input : [body.input];
  const vec = body.encoding_format === 'base64' ? EMBED_B64 : EMBED_JSON;
  const pt = promptTokens(body, raw);
  let out = '{"object":"list","data":[';
  for (let i = 0; i < inputs.length; i++) {
    if (i) out += ',';
    out += `{"object":"embedding","index":${i},"embedding":${vec}}`;
  }
  out += `],"model":${JSON.stringify(model)},"usage":{"prompt_tokens":${pt},"total_tokens":${pt}}}`;
  sendJson(res, 200, out);
}

// ---------------- Anthropic messages ----------------
function messages(req, res, body, raw) {
  const model = body.model || 'claude-3-5-haiku-20241022';
  const n = hdrInt(req, 'x-mock-chunks', CHUNKS);
  const id = 'msg_' + nextId();
  const it = promptTokens(body, raw);
  const aHeaders = { 'request-id': 'req_' + nextId(), 'anthropic-organization-id': '00000000-0000-0000-0000-000000000000' };
  if (!body.stream) {
    stats.messages++;
    return sendJson(res, 200, {
      id, type: 'message', role: 'assistant', model,
      content: [{ type: 'text', text: textFor(n) }],
      stop_reason: 'end_turn', stop_sequence: null,
      usage: { input_tokens: it, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: n, service_tier: 'standard' },
    }, aHeaders);
  }
  stats.messages_stream++;
  const ev = (name, data) => `event: ${name}\ndata: ${data}\n\n`;
  const frames = [];
  frames.push(ev('message_start', JSON.stringify({ type: 'message_start', message: { id, type: 'message', role: 'assistant', model,
    content: [], stop_reason: null, stop_sequence: null,
    usage: { input_tokens: it, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 1, service_tier: 'standard' } } })));
  frames.push(ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'));
  frames.push(ev('ping', '{"type": "ping"}'));
  for (let i = 0; i < n; i++) {
    frames.push(ev('content_block_delta', `{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":${JSON.stringify(word(i))}}}`));
  }
  frames.push(ev('content_block_stop', '{"type":"content_block_stop","index":0}'));
  frames.push(ev('message_delta', `{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":${n}}}`));
  frames.push(ev('message_stop', '{"type":"message_stop"}'));
  streamFrames(req, res, frames);
}

function models(req, res) {
  stats.models++;
  const created = 1700000000;
  sendJson(res, 200, { object: 'list', data: ['gpt-4o-mini', 'gpt-4o', 'text-embedding-3-small'].map((id) => ({ id, object: 'model', created, owned_by: 'system' })) });
}

function authorized(req, anthropic) {
  if (!EXPECT_KEY) return true;
  if (anthropic && req.headers['x-api-key'] === EXPECT_KEY) return true;
  return req.headers.authorization === 'Bearer ' + EXPECT_KEY;
}

const ROUTES = { '/v1/chat/completions': chatCompletion, '/v1/embeddings': embeddings, '/v1/messages': messages };

function handle(req, res) {
  const q = req.url.indexOf('?');
  const path = q === -1 ? req.url : req.url.slice(0, q);
  if (path.startsWith('/__mock/')) {
    if (path === '/__mock/stats') return sendJson(res, 200, stats);
    if (path === '/__mock/last') return sendJson(res, 200, last || {});
    if (path === '/__mock/reset' && req.method === 'POST') {
      for (const k of Object.keys(stats)) if (typeof stats[k] === 'number') stats[k] = 0;
      last = null;
      return sendJson(res, 200, stats);
    }
  }
  stats.total++;
  if (path.startsWith('/v1/')) last = { method: req.method, url: req.url, headers: req.headers, at: Date.now() };
  if (req.method === 'GET' && path === '/v1/models') { req.resume(); return models(req, res); }
  const fn = req.method === 'POST' ? ROUTES[path] : undefined;
  if (!fn) {
    stats.not_found++;
    req.resume();
    return openaiError(res, 404, `Unknown request URL: ${req.method} ${path}.`, 'invalid_request_error', 'unknown_url');
  }
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const raw = chunks.length === 1 ? chunks[0].toString() : Buffer.concat(chunks).toString();
    if (!authorized(req, path === '/v1/messages')) {
      stats.unauthorized++;
      return openaiError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', 'invalid_api_key');
    }
    let body;
    try { body = raw ? JSON.parse(raw) : {}; } catch (e) {
      stats.bad_request++;
      return openaiError(res, 400, 'We could not parse the JSON body of your request.', 'invalid_request_error', null);
    }
    const lat = hdrInt(req, 'x-mock-latency-ms', LATENCY_MS);
    if (lat > 0) setTimeout(() => fn(req, res, body, raw), lat);
    else fn(req, res, body, raw);
  });
}

const server = http.createServer({ keepAlive: true, noDelay: true }, handle);
// Keep idle upstream connections open longer than any client pool would (undici: 4 s, wrk: forever),
// so the mock never races a gateway's pooled socket with a close.
server.keepAliveTimeout = 120_000;
server.headersTimeout = 121_000;
server.requestTimeout = 0;
server.maxRequestsPerSocket = 0;
server.listen(PORT, HOST, () => {
  console.log(`mock-upstream listening on http://${HOST}:${PORT} latency=${LATENCY_MS}ms chunks=${CHUNKS} chunkDelay=${CHUNK_DELAY_MS}ms pid=${process.pid}`);
});
const stop = () => server.close(() => process.exit(0));
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
