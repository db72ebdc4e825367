// Config validation in a short-lived process. The loader (yaml + zod: ~1 MB of module source and
// the schemas they build) is needed only while a config is read, and a module once imported stays
// for good: so the gateway never imports it. A child process (`node load-child.ts`) validates the
// texts read here and hands back the plain ConfigSet, then exits and takes the loader with it. A
// worker thread would leave ~3 MB of the gateway's RSS behind (malloc arenas it used); a process
// leaves nothing (bench/RESULTS.md, "Memory"). Start-up waits for it (parseConfigIsolated); the
// server's reloads (file watcher, SIGHUP, admin API) do not block the event loop (parseConfigInBackground).
import { spawn, spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { deserialize } from 'node:v8';
import type { ConfigSet } from './schema.ts';
import { ConfigError, type ConfigIssue } from './errors.ts';
import type { ConfigSource } from './sources.ts';

/** What the process answers (load-child.ts). */
export type LoadReply = { set: ConfigSet } | { issues: ConfigIssue[] } | { error: string };

/** How long a validation may take before the caller gives up (a hung process is killed). */
const ANSWER_MS = 60_000;
const MAX_ANSWER_BYTES = 256 * 1024 * 1024;

/**
 * The child's command line: none of this process's node flags (an --inspect port, a test runner's
 * or a profiler's flags belong to this process); NODE_OPTIONS still applies through the environment.
 */
function childArgv(): string[] {
  return ['--disable-warning=ExperimentalWarning', fileURLToPath(new URL('./load-child.ts', import.meta.url))];
}

function settle(out: Buffer | undefined, why: () => string): ConfigSet {
  let reply: LoadReply | undefined;
  try { reply = out?.length ? deserialize(out) as LoadReply : undefined; } catch { reply = undefined; }
  if (!reply) throw new Error(`config validation failed: ${why()}`);
  if ('issues' in reply) throw new ConfigError(reply.issues);
  if ('error' in reply) throw new Error(reply.error);
  return reply.set;
}

/** parseConfigTexts(sources) in its own process, blocking this thread: the same ConfigSet, or the same ConfigError. */
export function parseConfigIsolated(sources: readonly ConfigSource[]): ConfigSet {
  const r = spawnSync(process.execPath, childArgv(), { input: JSON.stringify(sources), maxBuffer: MAX_ANSWER_BYTES, timeout: ANSWER_MS, stdio: ['pipe', 'pipe', 'inherit'] });
  return settle(r.stdout, () => (r.error ? r.error.message : `the validating process ended without an answer (exit ${r.status ?? r.signal})`));
}

/** parseConfigIsolated without blocking this thread (reloads: requests are served meanwhile). */
export function parseConfigInBackground(sources: readonly ConfigSource[]): Promise<ConfigSet> {
  return inBackground(sources).then((out) => settle(out.bytes, out.why));
}

/**
 * Issues found after loading (policy compilation: CEL, rule conflicts) with their lines in the
 * texts compiled, looked up in the loader's process (the gateway's thread keeps no YAML, nor the
 * loader); the issues as they were if that fails. A failed reload's log line then names the line.
 */
export async function linesInBackground(sources: readonly ConfigSource[], issues: readonly ConfigIssue[]): Promise<ConfigIssue[]> {
  if (issues.every((i) => i.line !== undefined || i.document < 0 || !i.path)) return [...issues];
  try {
    const out = await inBackground({ sources, lines: issues });
    const reply = out.bytes.length ? deserialize(out.bytes) as LoadReply : undefined;
    return reply && 'issues' in reply ? reply.issues : [...issues];
  } catch {
    return [...issues];
  }
}

/** The child's answer to `input` (its bytes; `why` it gave none), without blocking this thread. */
function inBackground(input: unknown): Promise<{ bytes: Buffer; why: () => string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, childArgv(), { stdio: ['pipe', 'pipe', 'inherit'], timeout: ANSWER_MS });
    const chunks: Buffer[] = [];
    let size = 0;
    child.stdout.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_ANSWER_BYTES) child.kill(); else chunks.push(c);
    });
    child.stdin.on('error', () => { /* the child ended early: its exit says why */ });
    child.on('error', (e) => reject(new Error(`config validation failed: ${e.message}`)));
    child.on('close', (code, signal) => resolve({ bytes: Buffer.concat(chunks), why: () => `the validating process ended without an answer (exit ${code ?? signal})` }));
    child.stdin.end(JSON.stringify(input));
  });
}

/**
 * loadConfig(path) in this thread, the loader loaded on first use: for the CLI's commands, short-lived
 * processes where a thread's start-up would cost more than the loader's memory. `aam serve` never calls it.
 */
export function loadConfigHere(path: string): ConfigSet {
  return loaderHere().loadConfig(path);
}

/** The lines of issues found after loading (policy compilation), for the CLI: see load.ts withLines. */
export function withLinesHere(issues: readonly ConfigIssue[]): ConfigIssue[] {
  return loaderHere().withLines(issues);
}

const loaderHere = (): typeof import('./load.ts') => createRequire(import.meta.url)(fileURLToPath(new URL('./load.ts', import.meta.url))) as typeof import('./load.ts');
