// The parts of undici aam uses (Agent, request(), the global dispatcher, its error classes),
// loaded on first use and without undici's index, which also loads fetch, WebSocket, EventSource, the cache
// stores, the mocks and the proxy agents: ~4 MB RSS a gateway would hold for nothing
// (bench/RESULTS.md, "Memory"). A foundation beside the other lazy loaders (fleet-lazy.ts, jose.ts),
// not in providers/, which stays pure translation. Same files as the index requires, so the same classes and the
// same global dispatcher as any code that does import 'undici'.
import { Module, createRequire } from 'node:module';
import type * as Undici from 'undici';

const load = createRequire(import.meta.url);

/**
 * undici's client requires its HTTP/2 half (client-h2.js) at load, and that requires node:http2,
 * which loads tls: +8.9 MB RSS in a bare process (bench/RESULTS.md, "Memory"), held by every gateway
 * that calls an http:// upstream, which never speaks HTTP/2 (undici uses it only when TLS ALPN picks h2).
 * A stand-in in require's cache lets client.js load without it; the first HTTP/2 connection requires
 * the real file (same module, same exports), so https upstreams that negotiate h2 work as before.
 */
function deferHttp2(): void {
  const path = load.resolve('undici/lib/dispatcher/client-h2.js');
  if (load.cache[path]) return; // already loaded (by code that imported undici itself)
  type ConnectH2 = (client: unknown, socket: unknown) => unknown;
  let real: ConnectH2 | undefined;
  const standIn = new Module(path);
  standIn.filename = path;
  standIn.loaded = true;
  standIn.exports = function connectH2(client: unknown, socket: unknown): unknown {
    if (!real) {
      if (load.cache[path] === standIn) delete load.cache[path];
      real = load(path) as ConnectH2;
    }
    return real(client, socket);
  };
  load.cache[path] = standIn;
}

interface Parts {
  Agent: typeof Undici.Agent;
  getGlobalDispatcher: typeof Undici.getGlobalDispatcher;
  request: (this: Undici.Dispatcher, opts: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData>;
  parseURL: (url: string | URL) => URL;
}
let loaded: Parts | undefined;

/**
 * undici's parts, required on the first outbound call (later calls: one field read): a gateway
 * whose providers are all off or in-process (the demo config) never loads them (~3 MB RSS).
 */
function undici(): Parts {
  if (loaded) return loaded;
  deferHttp2();
  const DispatcherBase = load('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
  const api = load('undici/lib/api/index.js') as { request: Parts['request'] };
  // What undici's index does: every dispatcher gets request(), stream(), pipeline(), connect(), upgrade().
  Object.assign(DispatcherBase.prototype, api);
  return (loaded = {
    Agent: load('undici/lib/dispatcher/agent.js') as typeof Undici.Agent,
    getGlobalDispatcher: (load('undici/lib/global.js') as { getGlobalDispatcher: typeof Undici.getGlobalDispatcher }).getGlobalDispatcher,
    request: api.request,
    parseURL: (load('undici/lib/core/util.js') as { parseURL: Parts['parseURL'] }).parseURL,
  });
}

export type Agent = Undici.Agent;
export const createAgent = (opts?: Undici.Agent.Options): Agent => new (undici().Agent)(opts);
export const getGlobalDispatcher = (): Undici.Dispatcher => undici().getGlobalDispatcher();

type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & Partial<Pick<Undici.Dispatcher.RequestOptions, 'method'>> & { dispatcher?: Undici.Dispatcher };

/** undici's request(url, options) (its index's makeDispatcher, for the URL forms aam passes). */
export function request(url: string | URL, opts: RequestOptions = {}): Promise<Undici.Dispatcher.ResponseData> {
  const p = undici();
  const u = p.parseURL(url);
  const { dispatcher = p.getGlobalDispatcher(), ...rest } = opts;
  return p.request.call(dispatcher, {
    ...rest,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
    method: opts.method ?? (opts.body ? 'PUT' : 'GET'),
  });
}
