#!/usr/bin/env node
// Launcher: runs dist/, the JavaScript that `npm run build` (npm's `prepare`, so also `npm install`
// and `npm ci`) emits from src/, when it was built from src/ as it is now; otherwise the TypeScript
// sources, which Node 24 strips at load time for ~18 MB more RSS per thread (gateway, audit writer).
import { fileURLToPath } from 'node:url';
import { distState } from './build-state.js';

const state = distState(fileURLToPath(new URL('..', import.meta.url)));
if (state !== 'fresh' && process.argv[2] === 'serve') {
  process.stderr.write(`aam: dist/ is ${state === 'missing' ? 'missing' : 'older than src/'}; running the TypeScript sources (more memory per thread). Run \`npm run build\` to use the built JavaScript.\n`);
}
const { main } = await import(state === 'fresh' ? '../dist/cli/main.js' : '../src/cli/main.ts');

main(process.argv.slice(2)).then((code) => { if (code !== 0) process.exit(code); });
