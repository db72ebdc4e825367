// Config validation in a short-lived thread. The loader (yaml + zod: ~1 MB of module source and
// the schemas they build) is needed only while a config is read; a module once imported stays in
// its thread for good, so the gateway's thread never imports it: a worker parses and validates
// the texts read here and hands back the plain ConfigSet, then exits and takes the loader with it
// (bench/RESULTS.md, "Memory"). Start-up and the CLI wait for it (parseConfigIsolated); the
// server's reloads (file watcher, SIGHUP, admin API) do not block the event loop (parseConfigInThread).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type { ConfigSet } from './schema.ts';
import { ConfigError, type ConfigIssue } from './errors.ts';
import type { ConfigSource } from './sources.ts';

/** What the thread answers (load-worker.ts). */
export type LoadReply = { set: ConfigSet } | { issues: ConfigIssue[] } | { error: string };

/** How long a validation may take before the caller gives up (a hung or crashed thread). */
const ANSWER_MS = 60_000;

function startLoader(sources: readonly ConfigSource[]): { w: Worker; port: MessagePort; done: Int32Array } {
  const done = new Int32Array(new SharedArrayBuffer(4));
  const { port1, port2 } = new MessageChannel();
  const w = new Worker(new URL('./load-worker.ts', import.meta.url), {
    name: 'aam-config', workerData: { port: port2, done, sources }, transferList: [port2],
    // Its garbage is one config's parse: a small young generation keeps the brief peak small.
    resourceLimits: { maxYoungGenerationSizeMb: 4 },
  });
  w.unref();
  return { w, port: port1, done };
}

function settle(reply: LoadReply | undefined, why: string): ConfigSet {
  if (!reply) throw new Error(why);
  if ('issues' in reply) throw new ConfigError(reply.issues);
  if ('error' in reply) throw new Error(reply.error);
  return reply.set;
}

/** parseConfigTexts(sources) in its own thread, blocking this one: the same ConfigSet, or the same ConfigError. */
export function parseConfigIsolated(sources: readonly ConfigSource[]): ConfigSet {
  const { w, port, done } = startLoader(sources);
  try {
    const waited = Atomics.wait(done, 0, 0, ANSWER_MS);
    return settle(receiveMessageOnPort(port)?.message as LoadReply | undefined,
      waited === 'timed-out' ? `config validation did not finish within ${ANSWER_MS / 1000} s` : 'config validation thread ended without an answer');
  } finally {
    port.close();
    void w.terminate();
  }
}

/** parseConfigIsolated without blocking this thread (reloads: requests are served meanwhile). */
export async function parseConfigInThread(sources: readonly ConfigSource[]): Promise<ConfigSet> {
  const { w, port } = startLoader(sources);
  try {
    const reply = await new Promise<LoadReply | undefined>((resolve) => {
      const timer = setTimeout(() => resolve(undefined), ANSWER_MS);
      port.once('message', (m: LoadReply) => { clearTimeout(timer); resolve(m); });
      w.once('exit', () => { clearTimeout(timer); setImmediate(() => resolve(receiveMessageOnPort(port)?.message as LoadReply | undefined)); });
    });
    return settle(reply, 'config validation thread ended without an answer (or took over a minute)');
  } finally {
    port.close();
    void w.terminate();
  }
}

/**
 * loadConfig(path) in this thread, the loader loaded on first use: for the CLI's commands, short-lived
 * processes where a thread's start-up would cost more than the loader's memory. `aam serve` never calls it.
 */
export function loadConfigHere(path: string): ConfigSet {
  const loader = createRequire(import.meta.url)(fileURLToPath(new URL('./load.ts', import.meta.url))) as typeof import('./load.ts');
  return loader.loadConfig(path);
}
