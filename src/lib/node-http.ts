// node:http, required rather than imported. An ES import of a built-in runs its ES facade, which
// reads every export, and node:http's WebSocket, CloseEvent and MessageEvent are getters that load
// Node's bundled undici (fetch, WebSocket: ~760 KB of source): +15 MB RSS against +3 MB for
// require() (bench/RESULTS.md, "Memory"). Nothing else here reads them.
import { createRequire } from 'node:module';

const http = createRequire(import.meta.url)('node:http') as typeof import('node:http');

export const { createServer, ServerResponse } = http;
