// An artifact streamed chunk by chunk is one text to its caller (the caller appends each chunk's
// parts to the artifact with the same id): a callee that splits aam's credential across two or
// three chunks, or across the JSON escapes of two chunks, does not get it to the caller. The
// official @a2a-js/sdk client joins the artifact's text parts as A2A says; the joined text is the
// callee's with the credential redacted, nothing lost and nothing repeated, and what an artifact
// held back reaches the caller before the task's final status.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { sdkClientThroughAam } from './helpers/a2a-client.ts';
import { startCalleeGateway, doc, type TestGateway } from './helpers/gateway.ts';
import { rpcCallee } from './helpers/rpc-callee.ts';

const SECRET = 'split-cred-4f0c9a72e1b85d36c0';
const MARKER = '[REDACTED:split-token]';
let gw: TestGateway;
let key = '';
let close: (() => Promise<void>) | undefined;

/** A text as it is written inside a JSON string, with its first and last characters as \u escapes. */
const esc = (c: string) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`;

interface Chunk { json: string; append?: boolean; lastChunk?: boolean; /** `append` spelled with a JSON escape (`\u0061ppend`). */ escaped?: boolean }
/** Each script: the artifact's chunks (text as written in JSON) and the text the callee means (its chunks joined, decoded). */
const SCRIPTS: Record<string, Chunk[]> = {
  // Two chunks, cut in the middle of the secret; the second is the last.
  two: [
    { json: `the key is ${SECRET.slice(0, 15)}` },
    { json: `${SECRET.slice(15)}, keep it`, append: true, lastChunk: true },
  ],
  // Three chunks; none says lastChunk: the task's final status ends the artifact. Its last
  // character could begin the secret again (held back until that status).
  three: [
    { json: `alpha ${SECRET.slice(0, 6)}`, append: true },
    { json: SECRET.slice(6, 20), append: true },
    { json: `${SECRET.slice(20)} omega ${SECRET[0]}`, append: true },
  ],
  // The cut falls between two JSON escapes: the first half ends, and the second begins, with a \u escape.
  escaped: [
    { json: `key ${SECRET.slice(0, 11)}${esc(SECRET[11])}` },
    { json: `${esc(SECRET[12])}${SECRET.slice(13)} done`, append: true, lastChunk: true },
  ],
  // The `append` key spelled with an escape: the caller's parser reads it as `append`.
  'escaped-key': [
    { json: `the key is ${SECRET.slice(0, 15)}` },
    { json: `${SECRET.slice(15)}, keep it`, append: true, lastChunk: true, escaped: true },
  ],
  // One chunk, no append: whole, as the callee wrote it; its end could begin the secret.
  whole: [
    { json: `the key begins ${SECRET.slice(0, 6)}` },
  ],
  // Nothing to hide: every event reaches the caller as the callee wrote it.
  clean: [
    { json: 'nothing ' },
    { json: 'to see', append: true, lastChunk: true },
  ],
};
const meant = (chunks: Chunk[]) => chunks.map((c) => JSON.parse(`"${c.json}"`) as string).join('');

const artifactUpdate = (c: Chunk) => `{"artifactUpdate":{"taskId":"t1","contextId":"c1","artifact":{"artifactId":"a1","parts":[{"text":"${c.json}"}]}${c.append ? `,"${c.escaped ? '\\u0061' : 'a'}ppend":true` : ''}${c.lastChunk ? ',"lastChunk":true' : ''}}}`;
const COMPLETED = '{"statusUpdate":{"taskId":"t1","contextId":"c1","status":{"state":"TASK_STATE_COMPLETED"}}}';
/** Callees that append to an artifact whose text already went out: in a task snapshot, or after the task's final status. */
const LATE: Record<string, string[]> = {
  snapshot: [
    `{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"},"artifacts":[{"artifactId":"a1","parts":[{"text":"key ${SECRET.slice(0, 15)}"}]}]}}`,
    artifactUpdate({ json: `${SECRET.slice(15)} end`, append: true, lastChunk: true }),
    COMPLETED,
  ],
  'after-final': [
    '{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}',
    artifactUpdate({ json: `key ${SECRET.slice(0, 15)}` }),
    COMPLETED,
    artifactUpdate({ json: `${SECRET.slice(15)} late`, append: true, lastChunk: true }),
  ],
};

/** The callee's events for a script (JSON-RPC id `id`), as its serializer writes them. */
function events(id: unknown, script: string): string[] {
  const rpc = (result: string) => `{"jsonrpc":"2.0","id":${JSON.stringify(id)},"result":${result}}`;
  if (LATE[script]) return LATE[script].map(rpc);
  return [
    rpc('{"task":{"id":"t1","contextId":"c1","status":{"state":"TASK_STATE_WORKING"}}}'),
    ...(SCRIPTS[script] ?? SCRIPTS.clean).map((c) => rpc(artifactUpdate(c))),
    rpc(COMPLETED),
  ];
}

before(async () => {
  process.env.A2A_SPLIT_TEST_TOKEN = SECRET;
  const callee = rpcCallee((call, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    // Each event a write of its own, a moment apart: the caller has each chunk before the next exists.
    // `SCRIPT@once`: the whole answer in one write (aam reads it at once: its relay's first pass).
    const [script, once] = call!.text.split('@');
    const list = events(call!.id, script);
    if (once !== undefined) { res.end(list.map((e) => `data: ${e}\n\n`).join('')); return; }
    let i = 0;
    const next = () => { if (i < list.length) { res.write(`data: ${list[i++]}\n\n`); setTimeout(next, 5); } else res.end(); };
    next();
  });
  ({ gw, key, close } = await startCalleeGateway(callee, {
    agent: 'chunker', caller: 'caller', a2a: { credential: 'split-token' },
    docs: [doc('Credential', 'split-token', { env: 'A2A_SPLIT_TEST_TOKEN' })],
  }));
});

after(async () => {
  await close?.();
  delete process.env.A2A_SPLIT_TEST_TOKEN;
});

/** The official SDK client, through aam, over JSON-RPC or HTTP+JSON. */
const sdkClient = (rest = false) => sdkClientThroughAam(gw.url, 'chunker', key, rest);

type SdkPart = { content?: { $case: string; value: unknown } };
type Ev = { payload?: { $case: string; value: { artifact?: { artifactId: string; parts: SdkPart[] }; artifacts?: Array<{ artifactId: string; parts: SdkPart[] }>; append?: boolean } } };

/** The artifact as the caller assembles it (A2A: `append` adds the chunk's parts, else the artifact is replaced), its text joined; and the order of events. */
async function stream(script: string, rest = false): Promise<{ text: string; kinds: string[]; parts: number }> {
  const client = await sdkClient(rest);
  const message = { messageId: `u-${script}`, contextId: '', taskId: '', role: 1, parts: [{ content: { $case: 'text', value: script }, metadata: undefined, filename: '', mediaType: '' }], metadata: undefined, extensions: [], referenceTaskIds: [] };
  let parts: SdkPart[] = [];
  const kinds: string[] = [];
  for await (const ev of client.sendMessageStream({ message, configuration: undefined, metadata: undefined, tenant: '' } as never) as AsyncIterable<Ev>) {
    const p = ev.payload!;
    kinds.push(p.$case);
    // A task snapshot replaces the task's artifacts.
    if (p.$case === 'task') { parts = [...p.value.artifacts?.find((a) => a.artifactId === 'a1')?.parts ?? []]; continue; }
    if (p.$case !== 'artifactUpdate') continue;
    parts = p.value.append ? [...parts, ...p.value.artifact!.parts] : [...p.value.artifact!.parts];
  }
  const text = parts.map((x) => (x.content?.$case === 'text' ? String(x.content.value) : '')).join('');
  return { text, kinds, parts: parts.length };
}

for (const script of ['two', 'three', 'escaped', 'escaped-key', 'two@once', 'three@once', 'escaped@once', 'escaped-key@once']) {
  test(`a2a split artifact (${script}): the caller's joined artifact text is the callee's with the credential redacted`, async () => {
    const got = await stream(script);
    const want = meant(SCRIPTS[script.split('@')[0]]);
    assert.ok(want.includes(SECRET), 'the callee does join to the credential');
    assert.ok(!got.text.includes(SECRET), got.text);
    assert.equal(got.text, want.replace(SECRET, MARKER));
    // What was held back arrives before the task's final status, which ends the caller's stream.
    assert.equal(got.kinds.at(-1), 'statusUpdate', got.kinds.join(','));
  });
}

test('a2a split artifact over HTTP+JSON: the same joined text', async () => {
  const got = await stream('three', true);
  assert.equal(got.text, meant(SCRIPTS.three).replace(SECRET, MARKER));
  assert.equal(got.kinds.at(-1), 'statusUpdate', got.kinds.join(','));
});

test('a2a split artifact: an artifact with nothing to hold reaches the caller as the callee sent it', async () => {
  const got = await stream('clean');
  assert.equal(got.text, meant(SCRIPTS.clean));
  assert.equal(got.parts, 2);
  assert.deepEqual(got.kinds, ['task', 'artifactUpdate', 'artifactUpdate', 'statusUpdate']);
});

test('a2a split artifact: a whole answer read at once with no event that appends goes out as the callee wrote it; one that appends is joined', async () => {
  // Nothing to join: the artifact's end (which could begin the credential) is not held back as a chunk of its own.
  const whole = await stream('whole@once');
  assert.equal(whole.text, meant(SCRIPTS.whole));
  assert.deepEqual(whole.kinds, ['task', 'artifactUpdate', 'statusUpdate']);
  // Read as it comes, the same callee's end is held back (a later chunk could append the rest).
  const held = await stream('whole');
  assert.equal(held.text, meant(SCRIPTS.whole));
  assert.deepEqual(held.kinds, ['task', 'artifactUpdate', 'artifactUpdate', 'statusUpdate']);
  for (const script of ['snapshot@once', 'after-final@once']) {
    const got = await stream(script);
    assert.ok(!got.text.includes(SECRET), `${script}: ${got.text}`);
  }
});

test('a2a split artifact: a chunk appended to text that already went out (a task snapshot, after the final status) cannot complete the credential', async () => {
  const snapshot = await stream('snapshot');
  assert.ok(!snapshot.text.includes(SECRET), snapshot.text);
  // The snapshot's text went out whole (it is no secret on its own); the rest of the credential is cut from the chunk.
  assert.equal(snapshot.text, `key ${SECRET.slice(0, 15)} end`);
  const late = await stream('after-final');
  assert.ok(!late.text.includes(SECRET), late.text);
  assert.equal(late.text, `key ${SECRET.slice(0, 15)} late`);
  assert.deepEqual(late.kinds, ['task', 'artifactUpdate', 'artifactUpdate', 'statusUpdate', 'artifactUpdate'], 'the held half went out before the final status');
});
