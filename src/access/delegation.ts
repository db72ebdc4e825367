// Agent-to-agent delegation: the `x-aam-delegation` header aam gives a callee with an A2A call,
// and checks when the callee calls back into aam while serving it (models, tools, other agents).
//
// The header is minted and signed by aam (HMAC under a subkey of the master key, so every replica
// of a fleet verifies it) and bound to the callee it was issued to: another agent presenting it is
// refused, so a chain cannot be borrowed, lengthened or cut short by editing it. It carries the
// chain's id, the hop count (the first caller's call is hop 1), the agents already in the chain
// (cycles are refused) and the request id of the A2A call that delegated (the evidence link).
import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import type { Identity } from '../identity/types.ts';
import type { AccessRuntime } from './runtime-view.ts';
import { AamError } from './errors.ts';

export const DELEGATION_HEADER = 'x-aam-delegation';
const VERSION = 'v1';
/** A delegation outlives the call that made it by at most this (a callee serves within it). */
const TTL_MS = 60 * 60 * 1000;
const MAX_HEADER = 4096;

export interface Delegation {
  /** The chain's id, the same on every hop. */
  id: string;
  /** Hop of the call that delegated (1: the first agent's call). */
  hop: number;
  /** Agents in the chain, first caller first, the callee last (name, or SPIFFE ID when unregistered). */
  chain: readonly string[];
  /** aam's request id of the A2A call that delegated. */
  parent: string;
  /** The agent the delegation was issued to: only it may present it. */
  callee: string;
  /** Expiry, epoch ms. */
  exp: number;
}

// A KeyObject, made once: createHmac with a raw Buffer builds one per call (~10 us against ~2 us on Node 24).
const keys = new WeakMap<object, KeyObject>();

function keyOf(rt: AccessRuntime): KeyObject {
  let k = keys.get(rt.vault);
  if (!k) { k = createSecretKey(rt.vault.subkey('aam a2a delegation hmac v1')); keys.set(rt.vault, k); }
  return k;
}

function mac(key: KeyObject, payload: string): string {
  return createHmac('sha256', key).update(`${VERSION}.${payload}`).digest('base64url');
}

/** How an agent is named in a chain. */
export function chainName(identity: Identity): string {
  return identity.agent.name || identity.agent.spiffeId;
}

export function encodeDelegation(rt: AccessRuntime, d: Delegation): string {
  const payload = Buffer.from(JSON.stringify(d)).toString('base64url');
  return `${VERSION}.${payload}.${mac(keyOf(rt), payload)}`;
}

function invalid(message: string): AamError {
  return new AamError(401, 'invalid_delegation', `${DELEGATION_HEADER} ${message}; send the header aam gave you with the A2A call you are serving, unchanged, or none`);
}

/**
 * The delegation a request carries, verified and bound to its caller; undefined when none.
 * A header that does not verify, has expired, or was issued to another agent is refused (401).
 */
export function verifyDelegation(rt: AccessRuntime, header: string | string[] | undefined, identity: Identity, now = Date.now()): Delegation | undefined {
  if (header === undefined) return undefined;
  if (Array.isArray(header) || header.length > MAX_HEADER) throw invalid('must be sent once, at most 4 KiB');
  const [v, payload, sig] = header.split('.');
  if (v !== VERSION || !payload || !sig) throw invalid('is malformed');
  const want = Buffer.from(mac(keyOf(rt), payload));
  const got = Buffer.from(sig);
  if (want.length !== got.length || !timingSafeEqual(want, got)) throw invalid('has a bad signature (it was not issued by this aam, or was edited)');
  let d: Delegation;
  try { d = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Delegation; } catch { throw invalid('is malformed'); }
  if (typeof d.exp !== 'number' || d.exp < now) throw invalid('has expired');
  if (d.callee !== chainName(identity)) {
    throw new AamError(403, 'invalid_delegation', `${DELEGATION_HEADER} was issued to agent "${d.callee}", not to ${chainName(identity)}; an agent may only forward the delegation it was given`);
  }
  return d;
}

/**
 * The delegation for a call from `caller` to `callee`, extending the caller's own (if it is serving one).
 * `newId` gives random hex digits for a new chain (the runtime's pooled ids: no randomBytes call per request).
 */
export function delegate(from: Delegation | undefined, caller: Identity, callee: string, requestId: string, newId: () => string, now = Date.now()): Delegation {
  return {
    id: from?.id ?? `dlg_${newId()}`,
    hop: (from?.hop ?? 0) + 1,
    chain: [...(from?.chain ?? [chainName(caller)]), callee],
    parent: requestId,
    callee,
    exp: now + TTL_MS,
  };
}

/** Evidence fields linking a request to the A2A call it serves. */
export function delegationEvidence(d: Delegation): { id: string; hop: number; parent_request_id: string; chain: string[] } {
  return { id: d.id, hop: d.hop, parent_request_id: d.parent, chain: [...d.chain] };
}

/**
 * The W3C traceparent for an upstream call in the request's trace (`traceId`, see
 * requestTraceId): the request's span when tracing is on, else a new span id in that trace, so
 * the callee's calls (which forward it) join the same trace in the evidence.
 */
export function outgoingTraceparent(span: { traceparent(): string } | undefined, traceId: string, spanId: () => string): string {
  return span?.traceparent() ?? `00-${traceId}-${spanId()}-01`;
}
