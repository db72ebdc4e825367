#!/usr/bin/env node
// Launcher: runs dist/, the JavaScript that `npm run build` (npm's `prepare`, so also `npm install`
// and `npm ci`) emits from src/, when it was built from src/ as it is now; otherwise the TypeScript
// sources, which Node 24 strips at load time for ~18 MB more RSS per thread (gateway, audit writer).
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { distState } from './build-state.js';

// `aam serve` runs with what `npm start` runs it with: package.json's start script names glibc's
// malloc settings (read by glibc when a process starts, so only from the environment) and node's
// heap flags, with which the memory figures were measured (README, "Memory"). A gateway started
// another way (the Docker image's `node bin/aam.js serve`, a global install) replaces itself once
// with them: process.execve keeps the pid, stdio and arguments; a setting the caller gave is kept.
if (process.argv[2] === 'serve' && typeof process.execve === 'function') {
  const missing = startSettingsMissing();
  if (missing) process.execve(process.execPath, [process.execPath, ...missing.flags, ...process.execArgv, ...process.argv.slice(1)], { ...missing.env, ...process.env });
}

/** npm start's environment and node flags this process lacks, or null when it has them all (or none are known). */
function startSettingsMissing() {
  let start;
  try {
    start = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')).scripts?.start;
  } catch { return null; }
  if (typeof start !== 'string') return null;
  const words = start.trim().split(/\s+/);
  const env = {};
  while (words.length && /^[A-Z_][A-Z0-9_]*=/.test(words[0])) {
    const w = words.shift();
    const name = w.slice(0, w.indexOf('='));
    if (process.env[name] === undefined) env[name] = w.slice(w.indexOf('=') + 1);
  }
  const end = words.indexOf('bin/aam.js');
  if (words[0] !== 'node' || end < 0) return null;
  const given = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? '').split(/\s+/)].map((f) => f.split('=')[0].replaceAll('_', '-'));
  const flags = words.slice(1, end).filter((f) => f.startsWith('--') && !given.includes(f.split('=')[0].replaceAll('_', '-')));
  return Object.keys(env).length || flags.length ? { env, flags } : null;
}

const state = distState(fileURLToPath(new URL('..', import.meta.url)));
if (state !== 'fresh' && process.argv[2] === 'serve') {
  process.stderr.write(`aam: dist/ is ${state === 'missing' ? 'missing' : 'older than src/'}; running the TypeScript sources (more memory per thread). Run \`npm run build\` to use the built JavaScript.\n`);
}
const { runCli } = await import(state === 'fresh' ? '../dist/cli/main.js' : '../src/cli/main.ts');

runCli(process.argv.slice(2));
