// A leaky upstream for the leak hunt (test/leak-hunt.test.ts): one HTTP server that speaks the
// OpenAI (chat, stream, embeddings, the Responses API's reasoning items), Anthropic (messages, stream), Bedrock (Converse, ConverseStream
// event-stream frames) and Vertex (Gemini wire, with a token endpoint) wires, an HTTP tool API and
// two MCP servers (Streamable HTTP, hand-written JSON-RPC so every byte and write is ours). Each
// request names a channel, a form and a row tag; the upstream echoes the credential it received
// (Authorization: Bearer or x-api-key) in that form through that channel. Nothing here stands in
// for a part of aam.
import { createServer, request as httpRequest, type IncomingMessage, type ServerResponse, type OutgoingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { binaryWith, cutOf, payload, piecesOf, TEXT_FORMS } from './leak-forms.ts';
import { eventFrame, exceptionFrame } from './eventstream.ts';

export interface Instruction { channel: string; form: string; tag: string }

/** The text an agent sends (prompt, embeddings input) to steer the upstream. */
export const instruction = (i: Instruction): string => `LEAK ${i.channel} ${i.form} ${i.tag}`;

function parseInstruction(text: string): Instruction | null {
  const m = /LEAK (\S+) (\S+) (\S+)/.exec(text);
  return m ? { channel: m[1], form: m[2], tag: m[3] } : null;
}

export interface LeakUpstream {
  url: string;
  /** Requests for a row tag that carried a credential (so the row really made the upstream echo it). */
  served(tag: string): number;
  close(): Promise<void>;
}

type Obj = Record<string, unknown>;

/**
 * The credential aam injected: a bearer token, an x-api-key, an AWS session token (SigV4 sends only
 * that part on the wire), or a query-style one (`api_key` on the URL).
 */
function secretOf(req: IncomingMessage): string | null {
  const auth = req.headers.authorization;
  if (typeof auth === 'string' && auth.startsWith('Bearer ')) return auth.slice(7);
  const key = req.headers['x-api-key'] ?? req.headers['x-amz-security-token'] ?? new URL(req.url ?? '/', 'http://x').searchParams.get('api_key') ?? undefined;
  return typeof key === 'string' ? key : null;
}

/** An A2A agent card whose description and skill echo the credential in every text form (the card aam fetches with it). */
function leakyCard(secret: string): string {
  const echo = Object.keys(TEXT_FORMS).map((f) => payload(f, secret, 'json')).join(' ');
  return `{"name":"leaky","description":"${echo}","supportedInterfaces":[{"url":"http://leaky.invalid","protocolBinding":"JSONRPC","protocolVersion":"1.0"}],"skills":[{"id":"echo","name":"echo","description":"${echo}"}]}`;
}

const wait = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Write a body the way the form asks: whole, in two TCP writes cut inside the secret (split-tcp),
 * as non-UTF-8 bytes (binary) or gzip-compressed (gzip).
 */
async function send(res: ServerResponse, status: number, headers: OutgoingHttpHeaders, body: string | Buffer, form: string, secret: string): Promise<void> {
  if (form === 'binary') {
    res.writeHead(status, { ...headers, 'content-type': 'application/octet-stream' }).end(binaryWith(secret));
    return;
  }
  if (form === 'gzip') {
    res.writeHead(status, { ...headers, 'content-encoding': 'gzip' }).end(gzipSync(body));
    return;
  }
  const at = body.indexOf(secret);
  const slice = (a: number, b?: number) => (typeof body === 'string' ? body.slice(a, b) : body.subarray(a, b));
  if (!form.startsWith('split-tcp') || at < 0) {
    res.writeHead(status, headers).end(body);
    return;
  }
  // Two writes with a pause between, so the gateway reads them as two chunks.
  const cut = at + cutOf(form, secret.length);
  res.writeHead(status, headers);
  res.socket?.setNoDelay(true);
  res.write(slice(0, cut));
  await wait(15);
  res.end(slice(cut));
}

/** Header values echoing the payload (the header channel). */
function echoHeaders(text: string): OutgoingHttpHeaders {
  return { 'x-echo': text, 'www-authenticate': `Bearer realm="leaky", error_description="${text}"`, 'x-request-id': text, link: `<https://x.example/${text}>; rel="echo"`, 'retry-after-ms': text };
}

// ---- OpenAI ----

function openaiBody(p: string, pText: string): string {
  const args = JSON.stringify(JSON.stringify({ echo: pText }));
  return `{"id":"chatcmpl-leak","object":"chat.completion","created":1764081600,"model":"leaky","choices":[{"index":0,"message":{"role":"assistant","content":"${p}","tool_calls":[{"id":"call_1","type":"function","function":{"name":"echo","arguments":${args}}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}`;
}

const oaChunk = (deltaJson: string, finish: string | null = null) =>
  `data: {"id":"chatcmpl-leak","object":"chat.completion.chunk","created":1764081600,"model":"leaky","choices":[{"index":0,"delta":${deltaJson},"finish_reason":${JSON.stringify(finish)}}]}\n\n`;

/** Content pieces (JSON string literals): one, or two cut inside the secret (split-delta: two deltas; split-parts: two content parts). */
function deltas(form: string, secret: string): string[] {
  const p = payload(form, secret, 'json');
  if (!form.startsWith('split-delta') && !form.startsWith('split-parts')) return [p];
  const text = payload(form, secret, 'text');
  const needle = piecesOf(form, secret)[0].text;
  const cut = text.indexOf(needle) + cutOf(form, needle.length);
  return [text.slice(0, cut), text.slice(cut)].map((t) => JSON.stringify(t).slice(1, -1));
}

/** Streamed tool-call arguments (JSON text) carrying the payload: two pieces, cut inside the secret for split-delta forms. */
function toolArgPieces(form: string, secret: string): string[] {
  const args = `{"echo":"${payload(form, secret, 'json')}"}`;
  const needle = piecesOf(form, secret)[0].json;
  const cut = form.startsWith('split-delta') ? args.indexOf(needle) + cutOf(form, needle.length) : 5;
  return [args.slice(0, cut), args.slice(cut)].map((a) => JSON.stringify(a));
}

const USAGE_CHUNK = 'data: {"id":"chatcmpl-leak","object":"chat.completion.chunk","created":1764081600,"model":"leaky","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":3,"total_tokens":6}}\n\n';

function openaiStream(form: string, secret: string, channel: string): string {
  const head = oaChunk('{"role":"assistant","content":""}');
  if (channel === 'stream-error') {
    return head + oaChunk('{"content":"partial "}') + `data: {"error":{"message":"${payload(form, secret, 'json')}","type":"server_error","code":null}}\n\n`;
  }
  if (channel === 'tool-args') {
    return head + oaChunk('{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"echo","arguments":""}}]}')
      + toolArgPieces(form, secret).map((a) => oaChunk(`{"tool_calls":[{"index":0,"function":{"arguments":${a}}}]}`)).join('')
      + oaChunk('{}', 'tool_calls') + USAGE_CHUNK + 'data: [DONE]\n\n';
  }
  const pieces = channel === 'header' ? ['ok'] : deltas(form, secret);
  return head + pieces.map((p) => oaChunk(`{"content":"${p}"}`)).join('') + oaChunk('{}', 'stop') + USAGE_CHUNK + 'data: [DONE]\n\n';
}

// ---- Anthropic ----

const ev = (event: string, dataJson: string) => `event: ${event}\ndata: ${dataJson}\n\n`;

/**
 * thinking: the pieces are a signed thinking block's text, before an answer of "ok" (extended
 * thinking); split-parts: each piece a signed block of its own.
 */
function anthropicBody(pieces: string[], thinking = false, parts = false): string {
  const signed = (t: string) => `{"type":"thinking","thinking":"${t}","signature":"sig-leak"}`;
  const content = thinking ? `${parts ? pieces.map(signed).join(',') : signed(pieces.join(''))},{"type":"text","text":"ok"}`
    : pieces.map((p) => `{"type":"text","text":"${p}"}`).join(',');
  return `{"id":"msg_leak","type":"message","role":"assistant","model":"leaky","content":[${content}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":3}}`;
}

const textBlock = (index: number, deltasJson: string[]) => ev('content_block_start', `{"type":"content_block_start","index":${index},"content_block":{"type":"text","text":""}}`)
  + deltasJson.map((p) => ev('content_block_delta', `{"type":"content_block_delta","index":${index},"delta":{"type":"text_delta","text":"${p}"}}`)).join('')
  + ev('content_block_stop', `{"type":"content_block_stop","index":${index}}`);

const signedBlock = (index: number, deltasJson: string[]) => ev('content_block_start', `{"type":"content_block_start","index":${index},"content_block":{"type":"thinking","thinking":"","signature":""}}`)
  + deltasJson.map((p) => ev('content_block_delta', `{"type":"content_block_delta","index":${index},"delta":{"type":"thinking_delta","thinking":"${p}"}}`)).join('')
  + ev('content_block_delta', `{"type":"content_block_delta","index":${index},"delta":{"type":"signature_delta","signature":"sig-leak"}}`)
  + ev('content_block_stop', `{"type":"content_block_stop","index":${index}}`);
/** One thinking block of the pieces as deltas, or (parts) each piece a block of its own, then a text block. */
const thinkingBlock = (deltasJson: string[], parts = false) => (parts ? deltasJson.map((p, i) => signedBlock(i, [p])).join('') : signedBlock(0, deltasJson))
  + textBlock(parts ? deltasJson.length : 1, ['ok']);

const toolUseBlock = (argPieces: string[]) => ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"echo","input":{}}}')
  + argPieces.map((a) => ev('content_block_delta', `{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":${a}}}`)).join('')
  + ev('content_block_stop', '{"type":"content_block_stop","index":0}');

function anthropicStream(form: string, secret: string, channel: string): string {
  const start = ev('message_start', '{"type":"message_start","message":{"id":"msg_leak","type":"message","role":"assistant","model":"leaky","content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":3,"output_tokens":1}}}');
  if (channel === 'stream-error') {
    return start + ev('content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}')
      + ev('content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"partial "}}')
      + ev('error', `{"type":"error","error":{"type":"overloaded_error","message":"${payload(form, secret, 'json')}"}}`);
  }
  const pieces = channel === 'header' ? ['ok'] : deltas(form, secret);
  // split-parts: each piece is its own text block; otherwise all are deltas of one block.
  const blocks = channel === 'tool-args' ? toolUseBlock(toolArgPieces(form, secret))
    : channel === 'thinking' ? thinkingBlock(pieces, form.startsWith('split-parts'))
    : form.startsWith('split-parts') ? pieces.map((p, i) => textBlock(i, [p])).join('') : textBlock(0, pieces);
  return start + blocks
    + ev('message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":3}}')
    + ev('message_stop', '{"type":"message_stop"}');
}

// ---- OpenAI's Responses API: a reasoning item (asked for with include) whose summary echoes the credential ----

/**
 * The reasoning channel: the pieces are a reasoning item's summary (streamed: one delta each), before
 * an answer of "ok"; split-parts: each piece a summary part of its own.
 */
function responsesWire(res: ServerResponse, ins: Instruction, secret: string, stream: boolean): Promise<void> {
  const { form } = ins;
  const pieces = deltas(form, secret);
  const parts = form.startsWith('split-parts') ? pieces : [pieces.join('')];
  // reasoning-content: the pieces are the item's raw reasoning (reasoning_text parts of its content, gpt-oss), not its summary.
  const raw = ins.channel === 'reasoning-content';
  const kind = raw ? 'reasoning_text' : 'summary_text';
  const texts = `[${parts.map((t) => `{"type":"${kind}","text":"${t}"}`).join(',')}]`;
  const item = `{"id":"rs_leak","type":"reasoning","summary":${raw ? '[]' : texts},${raw ? `"content":${texts},` : ''}"encrypted_content":"gAAAAABleakEncrypted=="}`;
  const message = '{"id":"msg_leak","type":"message","status":"completed","role":"assistant","content":[{"type":"output_text","annotations":[],"logprobs":[],"text":"ok"}]}';
  const r = (status: string, output: string) => `{"id":"resp_leak","object":"response","created_at":1764081600,"status":"${status}","model":"leaky","output":[${output}],"usage":{"input_tokens":3,"output_tokens":3,"total_tokens":6}}`;
  if (!stream) return send(res, 200, { 'content-type': 'application/json' }, r('completed', `${item},${message}`), form, secret);
  const e = (type: string, rest: string) => `event: ${type}\ndata: {"type":"${type}",${rest}}\n\n`;
  const at = (k: number) => `"item_id":"rs_leak","output_index":0,"${raw ? 'content' : 'summary'}_index":${k}`;
  // One summary (or reasoning_text) part streamed in the pieces as deltas, or (split-parts) one part per piece.
  const part = (k: number, ds: string[]) => (raw
    ? e('response.content_part.added', `${at(k)},"part":{"type":"reasoning_text","text":""}`)
      + ds.map((p) => e('response.reasoning_text.delta', `${at(k)},"delta":"${p}"`)).join('')
      + e('response.reasoning_text.done', `${at(k)},"text":"${ds.join('')}"`)
      + e('response.content_part.done', `${at(k)},"part":{"type":"reasoning_text","text":"${ds.join('')}"}`)
    : e('response.reasoning_summary_part.added', `${at(k)},"part":{"type":"summary_text","text":""}`)
      + ds.map((p) => e('response.reasoning_summary_text.delta', `${at(k)},"delta":"${p}"`)).join('')
      + e('response.reasoning_summary_text.done', `${at(k)},"text":"${ds.join('')}"`)
      + e('response.reasoning_summary_part.done', `${at(k)},"part":{"type":"summary_text","text":"${ds.join('')}"}`));
  const body = e('response.created', `"response":${r('in_progress', '')}`)
    + e('response.output_item.added', '"output_index":0,"item":{"id":"rs_leak","type":"reasoning","summary":[]}')
    + (parts.length > 1 ? parts.map((p, k) => part(k, [p])).join('') : part(0, pieces))
    + e('response.output_item.done', `"output_index":0,"item":${item}`)
    + e('response.output_text.delta', '"item_id":"msg_leak","output_index":1,"content_index":0,"delta":"ok","logprobs":[]')
    + e('response.completed', `"response":${r('completed', `${item},${message}`)}`);
  return send(res, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body, form, secret);
}

// ---- model planes ----

/** An error answer in the wire's shape; 400 ends the route (no retry, no circuit breaker), the others are for their own rows. */
function errorStatus(channel: string): number {
  return channel === 'error-401' ? 401 : channel === 'error-500' ? 500 : 400;
}

async function model(wire: 'openai' | 'anthropic' | 'embeddings', res: ServerResponse, ins: Instruction, secret: string, stream: boolean): Promise<void> {
  const { channel, form } = ins;
  const p = payload(form, secret, 'json');
  const json = { 'content-type': 'application/json' };
  if (channel.startsWith('error')) {
    const body = wire === 'anthropic' ? `{"type":"error","error":{"type":"invalid_request_error","message":"${p}"}}`
      : `{"error":{"message":"${p}","type":"invalid_request_error","param":"${p}","code":"invalid_api_key"}}`;
    return send(res, errorStatus(channel), json, body, form, secret);
  }
  const headers = channel === 'header' ? echoHeaders(payload(form, secret, 'text')) : {};
  if (stream) {
    const body = wire === 'anthropic' ? anthropicStream(form, secret, channel) : openaiStream(form, secret, channel);
    return send(res, 200, { ...headers, 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, body, form, secret);
  }
  const shown = channel === 'header' ? 'ok' : p;
  const body = wire === 'anthropic' ? anthropicBody(channel === 'header' ? ['ok'] : deltas(form, secret), channel === 'thinking', form.startsWith('split-parts'))
    : wire === 'embeddings' ? `{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,0.2,0.3]}],"model":"${shown}","usage":{"prompt_tokens":1,"total_tokens":1}}`
      : openaiBody(shown, channel === 'header' ? 'ok' : payload(form, secret, 'text'));
  return send(res, 200, { ...headers, ...json }, body, form, secret);
}

// ---- Amazon Bedrock (Converse JSON; ConverseStream as AWS event-stream frames) ----

/** A JSON string literal's content back to text. */
const unjson = (j: string): string => JSON.parse(`"${j}"`) as string;

async function bedrock(res: ServerResponse, ins: Instruction, secret: string, stream: boolean): Promise<void> {
  const { channel, form } = ins;
  const p = payload(form, secret, 'json');
  if (channel.startsWith('error')) {
    return send(res, 400, { 'content-type': 'application/json', 'x-amzn-errortype': 'ValidationException:http://internal.amazon.com/coral/com.amazon.bedrock/' }, `{"message":"${p}"}`, form, secret);
  }
  const headers = channel === 'header' ? echoHeaders(payload(form, secret, 'text')) : {};
  const pieces = channel === 'header' ? ['ok'] : deltas(form, secret);
  if (!stream) {
    const content = pieces.map((t) => `{"text":"${t}"}`).join(',');
    return send(res, 200, { ...headers, 'content-type': 'application/json' }, `{"output":{"message":{"role":"assistant","content":[${content}]}},"stopReason":"end_turn","usage":{"inputTokens":3,"outputTokens":3,"totalTokens":6}}`, form, secret);
  }
  const frames = [eventFrame('messageStart', { role: 'assistant' })];
  if (channel === 'stream-error') {
    frames.push(eventFrame('contentBlockDelta', { contentBlockIndex: 0, delta: { text: 'partial ' } }), exceptionFrame('modelStreamErrorException', unjson(p)));
  } else {
    // split-parts: each piece in a content block of its own; otherwise deltas of one block.
    frames.push(...pieces.map((t, i) => eventFrame('contentBlockDelta', { contentBlockIndex: form.startsWith('split-parts') ? i : 0, delta: { text: unjson(t) } })),
      eventFrame('messageStop', { stopReason: 'end_turn' }), eventFrame('metadata', { usage: { inputTokens: 3, outputTokens: 3, totalTokens: 6 } }));
  }
  return send(res, 200, { ...headers, 'content-type': 'application/vnd.amazon.eventstream' }, Buffer.concat(frames), form, secret);
}

// ---- Google Vertex AI (Gemini wire on the project/region path; SSE stream) ----

/**
 * The thinking channel: the pieces are thought summaries (`thought: true` parts, answered only when
 * the request asked for them with includeThoughts) before an answer of "ok"; whole, one part per
 * piece (split-parts: the secret cut across two thought parts); streamed, one chunk per piece
 * (split-delta), or both parts in one chunk (split-parts).
 */
async function vertex(res: ServerResponse, ins: Instruction, secret: string, stream: boolean, body: Obj): Promise<void> {
  const { channel, form } = ins;
  const p = payload(form, secret, 'json');
  const json = { 'content-type': 'application/json' };
  if (channel.startsWith('error')) return send(res, 400, json, `{"error":{"code":400,"message":"${p}","status":"INVALID_ARGUMENT"}}`, form, secret);
  const headers = channel === 'header' ? echoHeaders(payload(form, secret, 'text')) : {};
  const pieces = channel === 'header' ? ['ok'] : deltas(form, secret);
  const asked = ((((body.generationConfig ?? {}) as Obj).thinkingConfig ?? {}) as Obj).includeThoughts === true;
  const thoughts = channel === 'thinking';
  if (thoughts && !asked) return send(res, 200, json, '{"candidates":[{"content":{"role":"model","parts":[{"text":"no thoughts were asked for"}]},"finishReason":"STOP"}]}', form, secret);
  const part = (t: string) => (thoughts && t !== 'ok' ? `{"text":"${t}","thought":true}` : `{"text":"${t}"}`);
  const candidate = (parts: string[], last: boolean) => `{"candidates":[{"content":{"role":"model","parts":[${parts.map(part).join(',')}]}${last ? ',"finishReason":"STOP"' : ''}}]${last ? ',"usageMetadata":{"promptTokenCount":3,"candidatesTokenCount":3,"thoughtsTokenCount":2,"totalTokenCount":8}' : ''},"modelVersion":"leaky"}`;
  if (!stream) return send(res, 200, { ...headers, ...json }, candidate(thoughts ? [...pieces, 'ok'] : pieces, true), form, secret);
  const data = (j: string) => `data: ${j}\r\n\r\n`;
  const chunks = thoughts ? [...(form.startsWith('split-parts') ? [pieces] : pieces.map((t) => [t])), ['ok']] : pieces.map((t) => [t]);
  const sse = channel === 'stream-error'
    ? data(candidate(['partial '], false)) + data(`{"error":{"code":500,"message":"${p}","status":"INTERNAL"}}`)
    : chunks.map((c, i) => data(candidate(c, i === chunks.length - 1))).join('');
  return send(res, 200, { ...headers, 'content-type': 'text/event-stream' }, sse, form, secret);
}

function lastUserText(body: Obj): string {
  const input = body.input;
  if (typeof input === 'string') return input;
  // OpenAI's Responses API: the last user message item.
  if (Array.isArray(input)) {
    const c = (input as Obj[]).filter((x) => x.role === 'user').at(-1)?.content;
    return typeof c === 'string' ? c : Array.isArray(c) ? (c as Obj[]).map((x) => String(x.text ?? '')).join(' ') : '';
  }
  // Gemini wire: contents[].parts[].text.
  if (Array.isArray(body.contents)) return ((body.contents as Obj[]).filter((c) => c.role === 'user').at(-1)?.parts as Obj[] | undefined ?? []).map((x) => String(x.text ?? '')).join(' ');
  const msgs = Array.isArray(body.messages) ? body.messages as Obj[] : [];
  const m = msgs.filter((x) => x.role === 'user').at(-1);
  if (!m) return '';
  if (typeof m.content === 'string') return m.content;
  return Array.isArray(m.content) ? (m.content as Obj[]).map((c) => String(c.text ?? '')).join(' ') : '';
}

// ---- HTTP tool ----

async function tool(res: ServerResponse, ins: Instruction, secret: string): Promise<void> {
  const { channel, form } = ins;
  const p = payload(form, secret, 'json');
  const json = { 'content-type': 'application/json' };
  if (channel === 'error') return send(res, 500, json, `{"error":{"message":"${p}"}}`, form, secret);
  if (channel === 'header') return send(res, 200, { ...json, ...echoHeaders(payload(form, secret, 'text')) }, '{"ok":true}', form, secret);
  if (channel === 'text') return send(res, 200, { 'content-type': 'text/plain' }, payload(form, secret, 'text'), form, secret);
  return send(res, 200, json, `{"ok":true,"echo":"${p}"}`, form, secret);
}

// ---- A2A v1 agent (JSON-RPC by hand): an answer, a stream of events, a JSON-RPC error, headers, a push notification ----

/**
 * The push channel: the agent notifies the push URL it was given (aam's, with aam's token) with an
 * artifact echoing the secret (split-parts: two parts cut inside it; split-tcp: the notification's
 * body in two writes), waits for aam to take it, then answers with the task.
 */
async function a2aPush(res: ServerResponse, id: unknown, ins: Instruction, secret: string, cfg: Obj | undefined): Promise<void> {
  const task = `t-${ins.tag}`;
  // Split-delta forms and split-chunks3: the artifact in chunks, each a notification of its own,
  // the caller appending them (the last a lastChunk; split-chunks3: none is, a final status follows).
  if (cfg && typeof cfg.url === 'string' && (ins.form.startsWith('split-delta') || ins.form === 'split-chunks3')) {
    const chunks = artifactChunks(ins.form, secret);
    const flags = (i: number) => (i > 0 ? ',"append":true' : '') + (i === chunks.length - 1 && ins.form !== 'split-chunks3' ? ',"lastChunk":true' : '');
    const notes = chunks.map((c, i) => `{"artifactUpdate":{"taskId":"${task}","contextId":"c-${ins.tag}","artifact":{"artifactId":"a1","parts":[{"text":"${c}"}]}${flags(i)}}}`);
    if (ins.form === 'split-chunks3') notes.push(`{"statusUpdate":{"taskId":"${task}","contextId":"c-${ins.tag}","status":{"state":"TASK_STATE_COMPLETED"}}}`);
    for (const note of notes) {
      await new Promise<void>((resolve) => {
        const req = httpRequest(cfg.url as string, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': String(cfg.token ?? '') } }, (r) => { r.resume(); r.on('end', resolve); });
        req.on('error', () => resolve());
        req.end(note);
      });
    }
    return send(res, 200, { 'content-type': 'application/json' }, rpcResult(id, `{"task":{"id":"${task}","contextId":"c-${ins.tag}","status":{"state":"TASK_STATE_COMPLETED"}}}`), 'raw', secret);
  }
  const parts = deltas(ins.form, secret).map((t) => `{"text":"${t}"}`).join(',');
  const body = `{"artifactUpdate":{"taskId":"${task}","contextId":"c-${ins.tag}","artifact":{"artifactId":"a1","parts":[${parts}]}}}`;
  if (cfg && typeof cfg.url === 'string') {
    await new Promise<void>((resolve) => {
      const req = httpRequest(cfg.url as string, { method: 'POST', headers: { 'content-type': 'application/json', 'x-a2a-notification-token': String(cfg.token ?? '') } }, (r) => { r.resume(); r.on('end', resolve); });
      req.on('error', () => resolve());
      const at = body.indexOf(secret);
      if (!ins.form.startsWith('split-tcp') || at < 0) { req.end(body); return; }
      const cut = at + cutOf(ins.form, secret.length);
      req.setNoDelay(true);
      req.write(body.slice(0, cut));
      setTimeout(() => req.end(body.slice(cut)), 15);
    });
  }
  return send(res, 200, { 'content-type': 'application/json' }, rpcResult(id, `{"task":{"id":"${task}","contextId":"c-${ins.tag}","status":{"state":"TASK_STATE_COMPLETED"}}}`), 'raw', secret);
}

async function a2a(res: ServerResponse, id: unknown, ins: Instruction, secret: string): Promise<void> {
  const { channel, form } = ins;
  const p = payload(form, secret, 'json');
  const json = { 'content-type': 'application/json' };
  const message = (pieces: string[]) => `{"message":{"messageId":"m1","role":"ROLE_AGENT","parts":[${pieces.map((t) => `{"text":"${t}"}`).join(',')}]}}`;
  if (channel === 'error') return send(res, 200, json, `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":-32603,"message":"${p}","data":{"echo":"${p}"}}}`, form, secret);
  if (channel === 'header') return send(res, 200, { ...json, ...echoHeaders(payload(form, secret, 'text')) }, rpcResult(id, message(['ok'])), form, secret);
  if (channel === 'stream') {
    const ev = (result: string) => `data: ${rpcResult(id, result)}\n\n`;
    // The artifact in chunks the caller appends (split-delta: two cut inside the secret, the second
    // the last chunk; split-chunks3: three, none the last, so the final status ends the artifact).
    const chunks = artifactChunks(form, secret);
    const flags = (i: number) => (i > 0 ? ',"append":true' : '') + (chunks.length > 1 && i === chunks.length - 1 && form !== 'split-chunks3' ? ',"lastChunk":true' : '');
    const body = ev(`{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}`)
      + chunks.map((c, i) => ev(`{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":[{"text":"${c}"}]}${flags(i)}}}`)).join('')
      + ev(`{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}`);
    return send(res, 200, { 'content-type': 'text/event-stream' }, body, form, secret);
  }
  return send(res, 200, json, rpcResult(id, message(deltas(form, secret))), form, secret);
}

/** An A2A artifact's chunks (JSON string literals): split-delta forms as two deltas, split-chunks3 cut in three inside the secret. */
function artifactChunks(form: string, secret: string): string[] {
  if (form !== 'split-chunks3') return deltas(form, secret);
  const text = payload(form, secret, 'text');
  const at = text.indexOf(secret);
  const a = at + Math.floor(secret.length / 3), b = at + Math.floor((2 * secret.length) / 3);
  return [text.slice(0, a), text.slice(a, b), text.slice(b)].map((t) => JSON.stringify(t).slice(1, -1));
}

// ---- MCP (Streamable HTTP, JSON-RPC by hand) ----

const rpcResult = (id: unknown, resultJson: string) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${resultJson}}`;
const sse = (json: string) => `event: message\ndata: ${json}\n\n`;

/** Tool, resource and prompt descriptions that each echo the secret in one text form (the listing plane). */
function listings(method: string, secret: string): string {
  const forms = Object.keys(TEXT_FORMS);
  if (method === 'tools/list') {
    return `{"tools":[${forms.map((f, i) => `{"name":"echo_${i}","description":"${payload(f, secret, 'json')}","inputSchema":{"type":"object","properties":{"x":{"type":"string","description":"${payload(f, secret, 'json')}"}}}}`).join(',')}]}`;
  }
  if (method === 'resources/list') return `{"resources":[${forms.map((f, i) => `{"uri":"listing://${i}","name":"r${i}","description":"${payload(f, secret, 'json')}"}`).join(',')}]}`;
  if (method === 'prompts/list') return `{"prompts":[${forms.map((f, i) => `{"name":"p${i}","description":"${payload(f, secret, 'json')}"}`).join(',')}]}`;
  return '{"resourceTemplates":[]}';
}

const LEAK_TOOL = '{"name":"leak","description":"Echo the credential this server received.","inputSchema":{"type":"object","properties":{"channel":{"type":"string"},"form":{"type":"string"},"tag":{"type":"string"}},"required":["channel","form","tag"]}}';

/** A content list: the payload as one text part (or two, cut inside the secret, for split-parts), or as image bytes (binary). */
function contentOf(form: string, secret: string): string {
  if (form === 'binary') return `[{"type":"image","mimeType":"image/png","data":"${binaryWith(secret).toString('base64')}"}]`;
  return `[${deltas(form, secret).map((p) => `{"type":"text","text":"${p}"}`).join(',')}]`;
}

function mcpAnswer(msg: Obj, ins: Instruction, secret: string): { events: string[] } {
  const { channel, form } = ins;
  const id = msg.id;
  const p = payload(form, secret, 'json');
  if (channel === 'rpc-error') return { events: [`{"jsonrpc":"2.0","id":${JSON.stringify(id)},"error":{"code":-32603,"message":"${p}","data":{"detail":"${p}"}}}`] };
  const params = (msg.params ?? {}) as Obj;
  if (msg.method === 'resources/read') {
    const uri = JSON.stringify(params.uri);
    const contents = form === 'binary' ? [`{"uri":${uri},"mimeType":"application/octet-stream","blob":"${binaryWith(secret).toString('base64')}"}`]
      : deltas(form, secret).map((t) => `{"uri":${uri},"mimeType":"text/plain","text":"${t}"}`);
    return { events: [rpcResult(id, `{"contents":[${contents.join(',')}]}`)] };
  }
  if (msg.method === 'completion/complete') return { events: [rpcResult(id, `{"completion":{"values":["${p}","leak"],"total":2,"hasMore":false}}`)] };
  if (msg.method === 'prompts/get') {
    const messages = deltas(form, secret).map((t) => `{"role":"user","content":{"type":"text","text":"${t}"}}`);
    return { events: [rpcResult(id, `{"description":"${form.startsWith('split') ? 'leak' : p}","messages":[${messages.join(',')}]}`)] };
  }
  // tools/call
  if (channel === 'tool-error') return { events: [rpcResult(id, `{"isError":true,"content":[{"type":"text","text":"${p}"}]}`)] };
  const done = rpcResult(id, '{"content":[{"type":"text","text":"done"}]}');
  const token = JSON.stringify(((params._meta ?? {}) as Obj).progressToken ?? 0);
  if (channel === 'progress') return { events: [`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":${token},"progress":1,"total":2,"message":"${p}"}}`, done] };
  if (channel === 'log') return { events: [`{"jsonrpc":"2.0","method":"notifications/message","params":{"level":"error","logger":"${p}","data":"${p}"}}`, done] };
  return { events: [rpcResult(id, `{"content":${contentOf(form, secret)}}`)] };
}

function instructionOf(msg: Obj): Instruction | null {
  const params = (msg.params ?? {}) as Obj;
  if (msg.method === 'tools/call') {
    const a = (params.arguments ?? {}) as Obj;
    return { channel: String(a.channel), form: String(a.form), tag: String(a.tag) };
  }
  if (msg.method === 'prompts/get') {
    const a = (params.arguments ?? {}) as Obj;
    return { channel: String(a.channel), form: String(a.form), tag: String(a.tag) };
  }
  // completion/complete of the leak prompt: the instruction rides in the context's arguments.
  if (msg.method === 'completion/complete') {
    const a = (((params.context ?? {}) as Obj).arguments ?? {}) as Obj;
    return typeof a.tag === 'string' ? { channel: String(a.channel), form: String(a.form), tag: a.tag } : null;
  }
  if (msg.method === 'resources/read') {
    const m = /^leak:\/\/([^/]+)\/([^/]+)\/([^/]+)$/.exec(String(params.uri));
    return m ? { channel: m[1], form: decodeURIComponent(m[2]), tag: m[3] } : null;
  }
  return null;
}

async function mcp(req: IncomingMessage, res: ServerResponse, raw: string, lists: boolean, count: (tag: string) => void): Promise<void> {
  if (req.method === 'GET') { res.writeHead(405, { allow: 'POST' }).end(); return; }
  if (req.method === 'DELETE') { res.writeHead(200).end(); return; }
  const secret = secretOf(req);
  if (!secret) { res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"no credential"}'); return; }
  const msg = JSON.parse(raw) as Obj;
  if (msg.id === undefined) { res.writeHead(202).end(); return; }
  const json = { 'content-type': 'application/json' };
  const params = (msg.params ?? {}) as Obj;
  switch (msg.method) {
    case 'initialize':
      res.writeHead(200, json).end(rpcResult(msg.id, JSON.stringify({ protocolVersion: params.protocolVersion, capabilities: { tools: {}, resources: {}, prompts: {}, logging: {}, completions: {} }, serverInfo: { name: lists ? 'leaky-lists' : 'leaky', version: '1.0.0' } })));
      return;
    case 'ping': case 'logging/setLevel': res.writeHead(200, json).end(rpcResult(msg.id, '{}')); return;
    case 'tools/list': case 'resources/list': case 'prompts/list': case 'resources/templates/list':
      if (lists) { res.writeHead(200, json).end(rpcResult(msg.id, listings(msg.method, secret))); return; }
      res.writeHead(200, json).end(rpcResult(msg.id, msg.method === 'tools/list' ? `{"tools":[${LEAK_TOOL}]}`
        : msg.method === 'resources/templates/list' ? '{"resourceTemplates":[{"uriTemplate":"leak://{channel}/{form}/{tag}","name":"leak"}]}'
          : msg.method === 'prompts/list' ? '{"prompts":[{"name":"leak","arguments":[{"name":"channel","required":true},{"name":"form","required":true},{"name":"tag","required":true}]}]}'
            : '{"resources":[]}'));
      return;
  }
  const ins = instructionOf(msg);
  if (!ins) { res.writeHead(200, json).end(`{"jsonrpc":"2.0","id":${JSON.stringify(msg.id)},"error":{"code":-32601,"message":"no such method"}}`); return; }
  count(ins.tag);
  const { events } = mcpAnswer(msg, ins, secret);
  // Notifications need an event stream; so does a split inside one event (either works for the rest).
  if (events.length > 1 || ins.form.startsWith('split-tcp')) {
    await send(res, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, events.map(sse).join(''), ins.form, secret);
    return;
  }
  await send(res, 200, json, events[0], ins.form === 'binary' ? 'raw' : ins.form, secret);
}

/** `vertexToken`: the access token the token endpoint (/token) hands out for a service-account grant. */
// ---- MCP 2026-07-28: what only the stateless generation has ----

/** A task id naming its row (the form URL-encoded), so tasks/* and listen requests find their instruction again. */
const leakTaskId = (i: Instruction) => `lt.${i.channel}.${encodeURIComponent(i.form)}.${i.tag}`;
function taskInstruction(id: unknown): Instruction | null {
  const m = /^lt\.([^.]+)\.([^.]+)\.([^.]+)$/.exec(String(id));
  return m ? { channel: m[1], form: decodeURIComponent(m[2]), tag: m[3] } : null;
}

/** subscriptions/listen streams of /mcp-modern asking for list changes, with the credential each was opened with. */
const listStreams = new Set<{ res: ServerResponse; secret: string }>();

/**
 * list_changed of every list on each open listen stream that asked for them, the payload in every
 * field a notification has room for (params, its _meta, fields beside method), in the stream's credential; how many were sent.
 */
function listChangedEverywhere(form: string): number {
  let n = 0;
  for (const st of listStreams) {
    if (st.res.writableEnded || st.res.destroyed) { listStreams.delete(st); continue; }
    const p = payload(form, st.secret, 'json');
    for (const list of ['tools', 'prompts', 'resources']) {
      st.res.write(sse(`{"jsonrpc":"2.0","method":"notifications/${list}/list_changed","params":{"echo":"${p}","reason":"${p}","_meta":{"io.leak/echo":"${p}","io.modelcontextprotocol/subscriptionId":"${p}"}},"echo":"${p}","id":"${p}"}`));
      n++;
    }
  }
  return n;
}

/** A Task's common fields (SEP-2663), one of them echoing the payload. */
const taskFields = (tid: string, status: string, message: string) => `"taskId":${tid},"status":"${status}","statusMessage":"${message}","createdAt":"2026-08-01T10:00:00Z","lastUpdatedAt":"2026-08-01T10:00:01Z","ttlMs":60000`;

/**
 * A 2026-07-28 server (/mcp-modern) echoing the credential through input_required (inputRequests,
 * then the retry's result), tasks (the created task, tasks/get|update|cancel results, and
 * notifications/tasks on a subscriptions/listen stream), list_changed on listen streams and SSE progress.
 */
async function mcpModern(req: IncomingMessage, res: ServerResponse, raw: string, count: (tag: string) => void): Promise<void> {
  const secret = secretOf(req);
  if (!secret) { res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":"no credential"}'); return; }
  const msg = JSON.parse(raw) as Obj;
  const params = (msg.params ?? {}) as Obj;
  const json = { 'content-type': 'application/json' };
  const result = (r: string) => rpcResult(msg.id, r);
  if (msg.method === 'server/discover') { res.writeHead(200, json).end(result('{"resultType":"complete","supportedVersions":["2026-07-28"],"capabilities":{"tools":{}}}')); return; }
  if (msg.method === 'tools/list') { res.writeHead(200, json).end(result(`{"resultType":"complete","tools":[${LEAK_TOOL}],"ttlMs":600000,"cacheScope":"public"}`)); return; }
  if (msg.method === 'subscriptions/listen') {
    const notifications = (params.notifications ?? {}) as Obj;
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(sse(`{"jsonrpc":"2.0","method":"notifications/subscriptions/acknowledged","params":{"notifications":${JSON.stringify(notifications)}}}`));
    if (notifications.toolsListChanged || notifications.promptsListChanged || notifications.resourcesListChanged) {
      const st = { res, secret };
      listStreams.add(st);
      res.on('close', () => listStreams.delete(st));
    }
    for (const t of (notifications.taskIds ?? []) as string[]) {
      const ins = taskInstruction(t);
      if (!ins) continue;
      count(ins.tag);
      res.write(sse(`{"jsonrpc":"2.0","method":"notifications/tasks","params":{${taskFields(JSON.stringify(t), 'working', payload(ins.form, secret, 'json'))}}}`));
    }
    return; // open until aam ends it
  }
  const a = (params.arguments ?? {}) as Obj;
  const ins = msg.method === 'tools/call' ? { channel: String(a.channel), form: String(a.form), tag: String(a.tag) } : taskInstruction(params.taskId);
  if (!ins) { res.writeHead(200, json).end(`{"jsonrpc":"2.0","id":${JSON.stringify(msg.id)},"error":{"code":-32601,"message":"no such method"}}`); return; }
  // list_changed: counted only when a listen stream carried the echo (the call itself echoes nothing).
  if (ins.channel === 'list_changed') {
    for (let n = listChangedEverywhere(ins.form); n > 0; n--) count(ins.tag);
    res.writeHead(200, json).end(result('{"resultType":"complete","content":[{"type":"text","text":"announced"}]}'));
    return;
  }
  count(ins.tag);
  const p = payload(ins.form, secret, 'json');
  const tid = JSON.stringify(leakTaskId(ins));
  const content = contentOf(ins.form, secret);
  let events: string[];
  if (msg.method === 'tasks/get') events = [result(`{"resultType":"complete",${taskFields(tid, 'completed', p)},"result":{"content":${content}}}`)];
  // Acknowledgements with the echo beside them (aam relays the empty acknowledgement only).
  else if (msg.method === 'tasks/update') events = [result(`{"resultType":"complete","message":"${p}"}`)];
  else if (msg.method === 'tasks/cancel') events = [result(`{"resultType":"complete",${taskFields(tid, 'cancelled', p)}}`)];
  else if (ins.channel === 'input_required') {
    events = [params.requestState === undefined
      ? result(`{"resultType":"input_required","inputRequests":{"q":{"method":"elicitation/create","params":{"mode":"form","message":"${p}","requestedSchema":{"type":"object","properties":{}}}}},"requestState":"st-${ins.tag}"}`)
      : result(`{"resultType":"complete","content":${content}}`)];
  } else if (ins.channel === 'task' || ins.channel === 'listen' || ins.channel === 'tasks/get') {
    // channel tasks/get: only the tasks/get result echoes (the created task does not).
    events = [result(`{"resultType":"task",${taskFields(tid, 'working', ins.channel === 'task' ? p : 'started')}}`)];
  } else {
    const token = JSON.stringify(((params._meta ?? {}) as Obj).progressToken ?? 0);
    events = [`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":${token},"progress":1,"total":2,"message":"${p}"}}`, result('{"resultType":"complete","content":[{"type":"text","text":"done"}]}')];
  }
  if (events.length > 1 || ins.form.startsWith('split-tcp')) {
    await send(res, 200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' }, events.map(sse).join(''), ins.form, secret);
    return;
  }
  await send(res, 200, json, events[0], ins.form, secret);
}

export async function startLeakUpstream(opts: { vertexToken?: string } = {}): Promise<LeakUpstream> {
  const served = new Map<string, number>();
  const count = (tag: string) => served.set(tag, (served.get(tag) ?? 0) + 1);
  const pending = new Set<Promise<void>>();
  async function handle(req: IncomingMessage, res: ServerResponse, raw: string): Promise<void> {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/mcp' || path === '/mcp-lists') return mcp(req, res, raw, path === '/mcp-lists', count);
    if (path === '/mcp-modern') return mcpModern(req, res, raw, count);
    if (path === '/token') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ access_token: opts.vertexToken ?? 'no-token', expires_in: 3600, token_type: 'Bearer' }));
      return;
    }
    const secret = secretOf(req);
    if (!secret) { res.writeHead(401, { 'content-type': 'application/json' }).end('{"error":{"message":"no credential"}}'); return; }
    const t = /^\/tool\/echo\/([^/]+)\/([^/]+)$/.exec(path);
    if (t) {
      const tag = new URL(req.url ?? '/', 'http://x').searchParams.get('tag') ?? '';
      count(tag);
      return tool(res, { channel: t[1], form: decodeURIComponent(t[2]), tag }, secret);
    }
    // A `models: "*"` catalog's own list (GET /v1/models lists it): one id per text form of the key.
    if (req.method === 'GET' && path === '/v1/models') {
      const data = Object.keys(TEXT_FORMS).map((f) => `{"id":"leaky-${payload(f, secret, 'json')}","object":"model"}`).join(',');
      res.writeHead(200, { 'content-type': 'application/json' }).end(`{"object":"list","data":[${data}]}`);
      return;
    }
    if (req.method === 'GET' && /^\/a2a(-query)?\/\.well-known\/agent-card\.json$/.test(path)) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(leakyCard(secret));
      return;
    }
    const body = JSON.parse(raw || '{}') as Obj;
    // /a2a-query: the same agent, called with a query-style credential (kind: query).
    if (path === '/a2a' || path === '/a2a-query') {
      const parts = ((body.params as Obj | undefined)?.message as Obj | undefined)?.parts as Array<{ text?: string }> | undefined;
      const ai = parseInstruction((parts ?? []).map((x) => x.text ?? '').join(''));
      if (!ai) { res.writeHead(400).end(); return; }
      count(ai.tag);
      const params = body.params as Obj;
      if (ai.channel === 'push') return a2aPush(res, body.id, ai, secret, (params.configuration as Obj | undefined)?.taskPushNotificationConfig as Obj | undefined);
      return a2a(res, body.id, ai, secret);
    }
    const ins = parseInstruction(lastUserText(body));
    if (!ins) { res.writeHead(400, { 'content-type': 'application/json' }).end('{"error":{"message":"no instruction"}}'); return; }
    count(ins.tag);
    if (path === '/v1/chat/completions') return model('openai', res, ins, secret, body.stream === true);
    if (path === '/v1/messages') return model('anthropic', res, ins, secret, body.stream === true);
    if (path === '/v1/embeddings') return model('embeddings', res, ins, secret, false);
    if (path === '/v1/responses') return responsesWire(res, ins, secret, body.stream === true);
    const b = /^\/model\/[^/]+\/(converse|converse-stream)$/.exec(path);
    if (b) return bedrock(res, ins, secret, b[1] === 'converse-stream');
    const v = /^\/v1\/projects\/[^/]+\/locations\/[^/]+\/publishers\/google\/models\/[^/:]+:(generateContent|streamGenerateContent)$/.exec(path);
    if (v) return vertex(res, ins, secret, v[1] === 'streamGenerateContent', body);
    res.writeHead(404).end();
  }
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const p = handle(req, res, Buffer.concat(parts).toString('utf8')).catch(() => { if (!res.headersSent) res.writeHead(500); res.end(); });
      pending.add(p);
      void p.finally(() => pending.delete(p));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    served: (tag) => served.get(tag) ?? 0,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await Promise.allSettled([...pending]);
    },
  };
}
