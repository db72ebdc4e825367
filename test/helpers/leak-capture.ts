// Where the leak hunt looks: every byte an agent's HTTP client received (a fetch that tees each
// response, handed to the openai, Anthropic and MCP SDKs), the gateway's log lines (stderr, where
// aam's logger writes), and every file under the data dir.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { agentViews, findLeaks, rawViews, type Leak, type Secret } from './leak-forms.ts';

interface Received { url: string; status: number; headers: string; chunks: Buffer[]; done: Promise<void> }

/** Responses received since the last take(), by a fetch that keeps a copy of every byte. */
export class Capture {
  #got: Received[] = [];

  /** A fetch for SDK clients (and raw calls): the caller reads the body as usual, we read a copy. */
  readonly fetch = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const res = await fetch(input, init);
    const r: Received = { url: String(input instanceof Request ? input.url : input), status: res.status, headers: [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n'), chunks: [], done: Promise.resolve() };
    this.#got.push(r);
    if (!res.body) return res;
    const [mine, theirs] = res.body.tee();
    r.done = (async () => {
      const reader = mine.getReader();
      for (;;) {
        const { done, value } = await reader.read().catch(() => ({ done: true as const, value: undefined }));
        if (done) return;
        r.chunks.push(Buffer.from(value));
      }
    })();
    return new Response(theirs, { status: res.status, statusText: res.statusText, headers: res.headers });
  };

  /**
   * The texts of everything received since the last take (headers, bytes and their decoded
   * views). Bodies still open after `ms` (an idle event stream) count with what arrived.
   */
  async take(ms = 5000): Promise<string[]> {
    const got = this.#got;
    this.#got = [];
    await Promise.race([Promise.all(got.map((r) => r.done)), new Promise((r) => setTimeout(r, ms).unref())]);
    return got.flatMap((r) => [`${r.status} ${r.url}\n${r.headers}`, ...agentViews(Buffer.concat(r.chunks))]);
  }
}

/** Lines the process writes to stderr (aam's logger) from now on, until restore(). */
export function captureStderr(): { lines: string[]; since(n: number): string[]; restore(): void } {
  const lines: string[] = [];
  const original = process.stderr.write.bind(process.stderr);
  let partial = '';
  process.stderr.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    partial += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString('utf8');
    const parts = partial.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
    const cb = rest.find((x) => typeof x === 'function') as (() => void) | undefined;
    cb?.();
    return true;
  }) as typeof process.stderr.write;
  return { lines, since: (n) => lines.slice(n), restore: () => { process.stderr.write = original; } };
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => { const p = join(dir, n); return statSync(p).isDirectory() ? filesUnder(p) : [p]; });
}

/** Every file under dir (databases, -wal, audit segments, keys), read as bytes, searched for every secret. */
export function grepDir(dir: string, secrets: readonly Secret[]): Array<Leak & { file: string }> {
  return filesUnder(dir).flatMap((f) => {
    return rawViews(readFileSync(f)).flatMap((v) => findLeaks(v, secrets, { stride: 6, every: true }).map((l) => ({ ...l, file: f.slice(dir.length + 1) })));
  });
}
