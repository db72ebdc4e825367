// node:http, required rather than imported. An ES import of a built-in runs its ES facade, which
// reads every export, and node:http's WebSocket, CloseEvent and MessageEvent are getters that load
// Node's bundled undici (fetch, WebSocket: ~760 KB of source): +15 MB RSS against +3 MB for
// require() (bench/RESULTS.md, "Memory"). Nothing else here reads them. node:https (and with it
// tls: +8 MB RSS) is required only by a gateway that serves TLS.
import { createRequire } from 'node:module';

const load = createRequire(import.meta.url);
const http = load('node:http') as typeof import('node:http');

export const { createServer, ServerResponse } = http;
export const https = (): typeof import('node:https') => load('node:https') as typeof import('node:https');
