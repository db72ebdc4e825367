// A real `aam serve` child process (for signals: SIGHUP reload, SIGTERM drain), listening on a
// port it picks itself (read from its "listening" log line), plus a tiny OpenAI-shaped upstream
// whose answers a test releases when it wants (an in-flight request that stays in flight).
import { spawn, type ChildProcess } from 'node:child_process';
import type { ServerResponse } from 'node:http';
import assert from 'node:assert/strict';
import { NODE_BIN, CLI, ROOT, localServer, runCli, warmChild, type LocalServer } from './e2e.ts';

export interface ServeChild {
  proc: ChildProcess;
  port: number;
  url: string;
  /** Everything the process wrote to stderr so far (its JSON log lines). */
  stderr(): string;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  /** Kill it if still running (for finally blocks). */
  stop(): Promise<void>;
}

export async function startServeChild(args: { config: string; data: string; env?: NodeJS.ProcessEnv; startMs?: number }): Promise<ServeChild> {
  warmChild();
  const proc = spawn(NODE_BIN, [CLI, 'serve', '--config', args.config, '--data', args.data, '--port', '0', '--host', '127.0.0.1'], {
    cwd: ROOT, env: { ...process.env, AAM_LOG_LEVEL: 'info', ...args.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  proc.stdout?.resume();
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`aam serve did not start within ${args.startMs ?? 60_000} ms:\n${err}`)), args.startMs ?? 60_000);
    proc.stderr?.on('data', (c: Buffer) => {
      err += c.toString();
      const m = /"event":"listening","port":(\d+)/.exec(err);
      if (m) { clearTimeout(timer); resolve(Number(m[1])); }
    });
    void exited.then((code) => { clearTimeout(timer); reject(new Error(`aam serve exited (${code}) before listening:\n${err}`)); });
  });
  return {
    proc, port, url: `http://127.0.0.1:${port}`, stderr: () => err, exited,
    stop: async () => { if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; } },
  };
}

export interface HeldUpstream extends LocalServer {
  /** Requests received so far. */
  received: number;
  /** Answer every held request (and any later one) now. */
  release(): void;
}

/** OpenAI-compatible upstream that holds each chat request until release() is called. */
export async function heldUpstream(): Promise<HeldUpstream> {
  let released = false;
  const waiting: ServerResponse[] = [];
  const answer = (res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({
      id: 'chatcmpl-held', object: 'chat.completion', created: 1764081600, model: 'held',
      choices: [{ index: 0, message: { role: 'assistant', content: 'finished after the drain began' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 5, completion_tokens: 5, total_tokens: 10 },
    }));
  };
  const s = await localServer((_req, res) => {
    up.received++;
    if (released) answer(res); else waiting.push(res);
  });
  const up: HeldUpstream = { ...s, received: 0, release: () => { released = true; for (const r of waiting.splice(0)) answer(r); } };
  return up;
}

/** A virtual key for `agent` made by `aam keys create` against a served gateway's config and data dir (before it starts). */
export async function createKey(config: string, data: string, agent = 'tester'): Promise<string> {
  const r = await runCli(['keys', 'create', '--agent', agent, '--config', config, '--data', data], { env: { ...process.env, AAM_LOG_LEVEL: 'error' } });
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.trim().split('\n').at(-1)!;
}
