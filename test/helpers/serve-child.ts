// A real `aam serve` child process (for signals: SIGHUP reload, SIGTERM drain), listening on a
// port it picks itself (read from its "listening" log line), plus a tiny OpenAI-shaped upstream
// whose answers a test releases when it wants (an in-flight request that stays in flight).
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import type { ServerResponse } from 'node:http';
import assert from 'node:assert/strict';
import { NODE_BIN, CLI, ROOT, localServer, runCli, warmChild, type LocalServer } from './e2e.ts';

export interface ServeChild {
  proc: ChildProcess;
  port: number;
  url: string;
  /** Everything the process wrote to stderr so far (its JSON log lines). */
  stderr(): string;
  /** Everything the process wrote to stdout so far (V8's traces, for one started with nodeArgs such as --trace-opt). */
  stdout(): string;
  /** Resolves with the exit code (null if killed by a signal). */
  exited: Promise<number | null>;
  /** Kill it if still running (for finally blocks). */
  stop(): Promise<void>;
}

export interface ServeChildArgs {
  config: string;
  data: string;
  /** Added to this process's environment (AAM_LOG_LEVEL is info unless set here). */
  env?: NodeJS.ProcessEnv;
  /** Node's own flags, before the CLI (e.g. ['--trace-opt']). */
  nodeArgs?: string[];
  startMs?: number;
}

/**
 * `aam serve` on a port it picks, resolved once it logs "listening". Rejects, with what it wrote
 * to stderr, if it exits first or does not listen within startMs (then it is killed).
 */
export async function startServeChild(args: ServeChildArgs): Promise<ServeChild> {
  warmChild();
  const startMs = args.startMs ?? 60_000;
  const proc = spawn(NODE_BIN, [...(args.nodeArgs ?? []), CLI, 'serve', '--config', args.config, '--data', args.data, '--port', '0', '--host', '127.0.0.1'], {
    cwd: ROOT, env: { ...process.env, AAM_LOG_LEVEL: 'info', ...args.env }, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  let out = '';
  proc.stdout?.on('data', (c: Buffer) => { out += c.toString(); });
  proc.stderr?.on('data', (c: Buffer) => { err += c.toString(); });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  let listening = false;
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => { proc.kill('SIGKILL'); reject(new Error(`aam serve did not start within ${startMs} ms:\n${err}`)); }, startMs);
    const look = (): void => {
      const m = /"event":"listening","port":(\d+)/.exec(err);
      if (m) { listening = true; clearTimeout(timer); proc.stderr?.off('data', look); resolve(Number(m[1])); }
    };
    proc.stderr?.on('data', look);
    void exited.then(async (code) => {
      if (listening) return; // resolved already: stop() or the test waits for this exit
      // 'exit' can come before the last of stderr (why it refused to start): wait for its end, briefly.
      if (proc.stderr && !proc.stderr.readableEnded) {
        let wait: NodeJS.Timeout | undefined;
        await Promise.race([once(proc.stderr, 'end').catch(() => {}), new Promise((r) => { wait = setTimeout(r, 2000); })]);
        clearTimeout(wait);
      }
      clearTimeout(timer);
      reject(new Error(`aam serve exited (${code}) before listening:\n${err}`));
    });
  });
  return {
    proc, port, url: `http://127.0.0.1:${port}`, stderr: () => err, stdout: () => out, exited,
    stop: async () => { if (proc.exitCode === null && proc.signalCode === null) { proc.kill('SIGKILL'); await exited; } },
  };
}

/**
 * Starts `aam serve` expecting it to refuse: the refusal's message (its exit code and stderr), or
 * 'it started' (that gateway is stopped again, so a failing test leaves nothing running).
 */
export function serveRefusal(args: ServeChildArgs): Promise<string> {
  return startServeChild(args).then(async (gw) => { await gw.stop(); return 'it started'; }, (e: Error) => e.message);
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
