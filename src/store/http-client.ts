// The parts of undici aam uses (Agent, request(), the global dispatcher, its error classes),
// loaded without undici's index, which also loads fetch, WebSocket, EventSource, the cache
// stores, the mocks and the proxy agents: ~4 MB RSS a gateway would hold for nothing
// (bench/RESULTS.md, "Memory"). A foundation beside the other lazy loaders (fleet-lazy.ts, jose.ts),
// not in providers/, which stays pure translation. Same files as the index requires, so the same classes and the
// same global dispatcher as any code that does import 'undici'.
import { createRequire } from 'node:module';
import type * as Undici from 'undici';

const load = createRequire(import.meta.url);
const DispatcherBase = load('undici/lib/dispatcher/dispatcher.js') as typeof Undici.Dispatcher;
const api = load('undici/lib/api/index.js') as { request: (this: Undici.Dispatcher, opts: Undici.Dispatcher.RequestOptions) => Promise<Undici.Dispatcher.ResponseData> };
const { parseURL } = load('undici/lib/core/util.js') as { parseURL: (url: string | URL) => URL };
// What undici's index does: every dispatcher gets request(), stream(), pipeline(), connect(), upgrade().
Object.assign(DispatcherBase.prototype, api);

export const Agent = load('undici/lib/dispatcher/agent.js') as typeof Undici.Agent;
export type Agent = Undici.Agent;
export const errors = load('undici/lib/core/errors.js') as typeof Undici.errors;
export const getGlobalDispatcher = (load('undici/lib/global.js') as { getGlobalDispatcher: typeof Undici.getGlobalDispatcher }).getGlobalDispatcher;

type RequestOptions = Omit<Undici.Dispatcher.RequestOptions, 'origin' | 'path' | 'method'> & Partial<Pick<Undici.Dispatcher.RequestOptions, 'method'>> & { dispatcher?: Undici.Dispatcher };

/** undici's request(url, options) (its index's makeDispatcher, for the URL forms aam passes). */
export function request(url: string | URL, opts: RequestOptions = {}): Promise<Undici.Dispatcher.ResponseData> {
  const u = parseURL(url);
  const { dispatcher = getGlobalDispatcher(), ...rest } = opts;
  return api.request.call(dispatcher, {
    ...rest,
    origin: u.origin,
    path: u.search ? `${u.pathname}${u.search}` : u.pathname,
    method: opts.method ?? (opts.body ? 'PUT' : 'GET'),
  });
}
