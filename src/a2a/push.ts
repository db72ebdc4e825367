// A2A push notifications through aam. A caller's push config (CreateTaskPushNotificationConfig,
// or SendMessage's configuration.taskPushNotificationConfig) is never handed to the callee as is:
// aam checks the caller's URL (SSRF rule below), keeps it, and gives the callee its own URL
// (`/a2a/<agent>/push/<id>`) and a fresh token instead. The callee's notification to that URL is
// verified (token, callee, task), guarded with the caller's guardrails, scrubbed and forwarded to
// the caller's URL with the caller's own token. The callee never learns the caller's URL or token.
//
// SSRF rule: aam posts only to http(s) URLs without userinfo whose host resolves to public
// addresses; loopback, private, link-local, CGNAT, unique-local and multicast addresses (also
// inside NAT64, 6to4 and IPv4-compatible IPv6 addresses) are refused unless the host (or host:port) is listed in AAM_A2A_PUSH_ALLOW. The check is made when
// the config is registered and again before every delivery (a name may resolve elsewhere later).
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { BlockList, isIP } from 'node:net';
import { createAgent, type Agent } from '../lib/http-client.ts';
import type { Identity } from '../identity/types.ts';
import type { PushRouteStore } from '../store/types.ts';
import type { A2aPushOutcome } from '../observability/metrics.ts';

const BLOCKED = new BlockList();
const BLOCKED_V4 = [['0.0.0.0', 8], ['10.0.0.0', 8], ['100.64.0.0', 10], ['127.0.0.0', 8], ['169.254.0.0', 16], ['172.16.0.0', 12], ['192.0.0.0', 24], ['192.168.0.0', 16], ['198.18.0.0', 15], ['224.0.0.0', 3]] as const;
for (const [net, bits] of BLOCKED_V4) {
  BLOCKED.addSubnet(net, bits, 'ipv4');
  // The same IPv4 nets inside IPv6 addresses that reach them: NAT64 (64:ff9b::/96, RFC 6052; a
  // DNS64 name of a public host stays allowed), 6to4 (2002::/16) and IPv4-compatible (::/96).
  const [a, b, c, d] = net.split('.').map(Number);
  const hi = ((a << 8) | b).toString(16);
  const lo = ((c << 8) | d).toString(16);
  BLOCKED.addSubnet(`64:ff9b::${hi}:${lo}`, 96 + bits, 'ipv6');
  BLOCKED.addSubnet(`2002:${hi}:${lo}::`, 16 + bits, 'ipv6');
  BLOCKED.addSubnet(`::${hi}:${lo}`, 96 + bits, 'ipv6');
}
// IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are checked against the IPv4 rules by BlockList itself.
for (const [net, bits] of [['::', 127], ['fc00::', 7], ['fe80::', 10], ['ff00::', 8]] as const) BLOCKED.addSubnet(net, bits, 'ipv6');

/** Why aam will not post to `url` (null: it may), per the SSRF rule. */
export async function pushUrlRefusal(url: string, allow: readonly string[]): Promise<string | null> {
  const d = await pushDestination(url, allow);
  return 'refused' in d ? d.refused : null;
}

export interface Address { address: string; family: number }

/**
 * The SSRF rule's verdict for `url`, and the address it checked: a delivery connects to that very
 * address (pinnedDispatcher), so a name that resolves to a public address for the check and to a
 * private one for the connection (DNS rebinding) cannot slip through. Listed hosts are not pinned.
 */
export async function pushDestination(url: string, allow: readonly string[]): Promise<{ refused: string } | { pin: Address | null }> {
  let u: URL;
  try { u = new URL(url); } catch { return { refused: `push URL "${url.slice(0, 200)}" is not a URL` }; }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') return { refused: `push URL scheme ${u.protocol} is not allowed; use https` };
  if (u.username || u.password) return { refused: 'push URL must not carry credentials; use the config\'s token' };
  const host = u.hostname.replace(/^\[|\]$/g, '').toLowerCase();
  if (allow.includes(host) || allow.includes(u.host.toLowerCase())) return { pin: null };
  let addrs: Address[];
  try { addrs = isIP(host) ? [{ address: host, family: isIP(host) }] : await lookup(host, { all: true }); } catch {
    return { refused: `push URL host "${host}" does not resolve` };
  }
  for (const a of addrs) {
    if (BLOCKED.check(a.address, a.family === 6 ? 'ipv6' : 'ipv4')) {
      return { refused: `push URL host "${host}" is a private, loopback or link-local address (${a.address}); aam does not post there unless an operator lists the host in AAM_A2A_PUSH_ALLOW` };
    }
  }
  return addrs.length ? { pin: addrs[0] } : { refused: `push URL host "${host}" does not resolve` };
}

type LookupCallback = (err: Error | null, address: string | Address[], family?: number) => void;

/** A dispatcher whose every connection goes to `pin` whatever the URL's name resolves to now (TLS still checks the name). */
export function pinnedDispatcher(pin: Address): Agent {
  const lookup = (_host: string, opts: { all?: boolean }, cb: LookupCallback): void => {
    if (opts?.all) cb(null, [pin]); else cb(null, pin.address, pin.family);
  };
  return createAgent({ connect: { lookup } as never });
}

export interface PushRoute {
  id: string;
  /** The token the callee must send back (X-A2A-Notification-Token). */
  token: string;
  callee: string;
  /** The task it was registered for ('' when registered with the message that creates the task). */
  taskId: string;
  /** The skill of the registering call (a task first seen in a notification is bound with it). */
  skill: string;
  /** The caller, as identified when it registered the config (its guardrails guard the notifications). */
  identity: Identity;
  url: string;
  callerToken?: string;
  /** The caller's config id, when it named one. */
  configId?: string;
  /** The request that registered it (and its trace): evidence about the route later (a2a_push_held) is recorded under it. */
  requestId?: string;
  traceId?: string;
  expires: number;
}

const ROUTE_TTL_MS = 24 * 60 * 60 * 1000;

/**
 * Registered push routes, in the runtime's PushRouteStore (memory, or Redis for a fleet: a config
 * registered through one replica delivers when the callee notifies another). The caller's
 * identity is kept as it was at registration.
 */
export class PushRoutes {
  readonly #store: PushRouteStore;
  readonly #ttlMs: number;
  constructor(store: PushRouteStore, ttlMs = ROUTE_TTL_MS) { this.#store = store; this.#ttlMs = ttlMs; }

  async add(r: Omit<PushRoute, 'id' | 'token' | 'expires'>, now = Date.now()): Promise<PushRoute> {
    const route: PushRoute = { ...r, id: `psh_${randomBytes(16).toString('hex')}`, token: randomBytes(24).toString('base64url'), expires: now + this.#ttlMs };
    await this.#store.put(route.id, JSON.stringify(route), this.#ttlMs);
    return route;
  }

  async get(id: string, now = Date.now()): Promise<PushRoute | undefined> {
    const json = await this.#store.get(id);
    const r = json === undefined ? undefined : JSON.parse(json) as PushRoute;
    return r && r.expires >= now ? r : undefined;
  }

  /** The route a callee's notification is for: id known, callee the same, token equal (constant time). */
  async verify(id: string, callee: string, token: string | undefined): Promise<PushRoute | undefined> {
    const r = await this.get(id);
    if (!r || r.callee !== callee || typeof token !== 'string') return undefined;
    const a = Buffer.from(token);
    const b = Buffer.from(r.token);
    return a.length === b.length && timingSafeEqual(a, b) ? r : undefined;
  }
}

/** The push config inside params (its place differs per method), or undefined. */
export function pushConfigIn(method: string, params: Record<string, unknown>): Record<string, unknown> | undefined {
  if (method === 'CreateTaskPushNotificationConfig') return params;
  if (method === 'SendMessage' || method === 'SendStreamingMessage') {
    const c = params.configuration as Record<string, unknown> | undefined;
    const p = c?.taskPushNotificationConfig ?? c?.pushNotificationConfig;
    return p && typeof p === 'object' ? p as Record<string, unknown> : undefined;
  }
  return undefined;
}

/** Put aam's URL and token where the caller's were (a copy; the caller's `authentication` is not passed on). */
export function withAamTarget(method: string, params: Record<string, unknown>, url: string, token: string): Record<string, unknown> {
  const swap = (c: Record<string, unknown>) => { const { authentication: _drop, ...rest } = c; return { ...rest, url, token }; };
  if (method === 'CreateTaskPushNotificationConfig') return swap(params);
  const c = params.configuration as Record<string, unknown>;
  const key = c.taskPushNotificationConfig !== undefined ? 'taskPushNotificationConfig' : 'pushNotificationConfig';
  return { ...params, configuration: { ...c, [key]: swap(c[key] as Record<string, unknown>) } };
}

/** Push configs in a callee's answer name aam's URL and token: shown to the caller as its own again. */
export async function restoreCallerTargets(result: unknown, routeOf: (aamUrl: string) => Promise<PushRoute | undefined>): Promise<unknown> {
  const fix = async (c: unknown): Promise<unknown> => {
    if (!c || typeof c !== 'object') return c;
    const o = c as Record<string, unknown>;
    const r = typeof o.url === 'string' ? await routeOf(o.url) : undefined;
    if (!r) return c;
    const { token: _aam, ...rest } = o;
    return { ...rest, url: r.url, ...(r.callerToken ? { token: r.callerToken } : {}) };
  };
  if (!result || typeof result !== 'object') return result;
  const o = result as Record<string, unknown>;
  if (Array.isArray(o.configs)) return { ...o, configs: await Promise.all(o.configs.map(fix)) };
  return fix(result);
}

/** What countedPush learnt of a notification as it went: the caller and callee once its route is verified, and whether its text was held. */
export interface PushSeen { agent: string; callee: string; held: boolean }

/** A notification aam failed, as aam_a2a_push_notifications_total's outcome: a guardrail's block, the sender's fault (4xx), or aam's side (5xx). */
export function pushOutcome(e: { status: number; code: string }): A2aPushOutcome {
  return e.code === 'guardrail_blocked' ? 'blocked' : e.status < 500 ? 'refused' : 'error';
}
