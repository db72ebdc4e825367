// Agent-to-agent delegation: the `x-aam-delegation` header aam gives a callee with an A2A call,
// and checks when the callee calls back into aam while serving it (models, tools, other agents).
//
// The header is minted and signed by aam (HMAC under a subkey of the master key, so every replica
// of a fleet verifies it) and bound to the callee it was issued to: another agent presenting it is
// refused, so a chain cannot be borrowed, lengthened or cut short by editing it. It carries the
// chain's id, the hop count (the first caller's call is hop 1), the agents already in the chain
// (cycles are refused) and the request id of the A2A call that delegated (the evidence link).
// It is honoured only while that call runs, or a task it left running is not done (rt.liveCalls:
// this process, or Redis in a fleet), so a callee cannot keep it to link later, unrelated calls
// into the caller's tree.
import { hash, timingSafeEqual } from 'node:crypto';
import type { Identity } from '../identity/types.ts';
import type { AccessRuntime } from './runtime-view.ts';
import { AamError } from './errors.ts';
import { storeUnchecked } from './decide.ts';

export const DELEGATION_HEADER = 'x-aam-delegation';
const VERSION = 'v1';
/** The longest a delegation lives, however long its call runs (a stream may run long: A2A's timeout is between its events). */
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

/** SHA-256's block size, in bytes. */
const BLOCK = 64;

/**
 * HMAC-SHA256 under one key, with no Hmac object per call (createHmac's stream object, native
 * context and finaliser cost ~2 us and showed at 3 % of the A2A hop's samples under load): the
 * key's inner and outer pad blocks are made once, and each MAC is two one-shot hashes,
 * SHA256((K ^ opad) || SHA256((K ^ ipad) || m)) (RFC 2104; the key is 32 bytes, under SHA-256's
 * 64-byte block, so it is zero-padded, not hashed). The same bytes as createHmac (pinned in
 * test/mutation-access-parts). Its scratch blocks are reused: every call is synchronous.
 */
class Signer {
  /** K ^ ipad, then `v1.`, then the payload (grown for a longer one). */
  #inner: Buffer;
  /** K ^ opad, then the inner hash. */
  readonly #outer = Buffer.alloc(BLOCK + 32);
  /** #inner's first n bytes, by n: a payload's MAC hashes a view made once per length, not one per call. */
  #views: Buffer[] = [];
  /** A payload's JSON as UTF-8, before its base64url text is taken (no Buffer per header). */
  readonly #json = Buffer.alloc(1024);
  constructor(key: Buffer) {
    if (key.length > BLOCK) throw new Error('an HMAC key longer than a block would be hashed first');
    this.#inner = Buffer.alloc(BLOCK + 3 + 1024);
    for (let i = 0; i < BLOCK; i++) {
      const k = i < key.length ? key[i] : 0;
      this.#inner[i] = k ^ 0x36;
      this.#outer[i] = k ^ 0x5c;
    }
    this.#inner.write(`${VERSION}.`, BLOCK, 'latin1');
  }

  /** The MAC of `v1.<payload>`, base64url (the payload's UTF-8 bytes: what createHmac's update(string) hashed). */
  mac(payload: string): string {
    const at = BLOCK + 3;
    let inner = this.#inner;
    // At most 3 bytes per UTF-16 unit: a payload that surely fits is not measured first.
    if (at + payload.length * 3 > inner.length) {
      const need = at + Buffer.byteLength(payload, 'utf8');
      if (need > inner.length) {
        const grown = Buffer.alloc(need);
        inner.copy(grown, 0, 0, at);
        if (need <= 64 * 1024) { this.#inner = grown; this.#views = []; }
        inner = grown;
      }
    }
    const end = at + inner.write(payload, at, 'utf8');
    const view = inner !== this.#inner ? inner.subarray(0, end) : (this.#views[end] ??= inner.subarray(0, end));
    this.#outer.write(hash('sha256', view, 'binary'), BLOCK, 'binary');
    return hash('sha256', this.#outer, 'base64url');
  }

  /** `json`'s UTF-8 bytes as base64url (what Buffer.from(json).toString('base64url') gives). */
  base64url(json: string): string {
    // At most 3 bytes per UTF-16 unit: a longer JSON (a long chain) takes its own Buffer.
    if (json.length * 3 > this.#json.length) return Buffer.from(json, 'utf8').toString('base64url');
    return this.#json.toString('base64url', 0, this.#json.write(json, 0, 'utf8'));
  }
}

// Made once per vault (the subkey is an HKDF derivation).
const signers = new WeakMap<object, Signer>();

function signerOf(rt: AccessRuntime): Signer {
  let s = signers.get(rt.vault);
  if (!s) { s = new Signer(rt.vault.subkey('aam a2a delegation hmac v1')); signers.set(rt.vault, s); }
  return s;
}

/** How an agent is named in a chain. */
export function chainName(identity: Identity): string {
  return identity.agent.name || identity.agent.spiffeId;
}

export function encodeDelegation(rt: AccessRuntime, d: Delegation): string {
  const signer = signerOf(rt);
  const payload = signer.base64url(JSON.stringify(d));
  return `${VERSION}.${payload}.${signer.mac(payload)}`;
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
  const want = Buffer.from(signerOf(rt).mac(payload));
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
 * The delegation a request carries (verifyDelegation), honoured only while it is live: the A2A call
 * that issued it runs, or a task that call left running is not done as aam last saw it (callEnded).
 * Replayed after that, the header is refused (401).
 */
export function liveDelegation(rt: AccessRuntime, header: string | string[] | undefined, identity: Identity, now = Date.now()): Delegation | undefined | Promise<Delegation> {
  const d = verifyDelegation(rt, header, identity, now);
  if (d === undefined) return undefined;
  const live = rt.liveCalls.live(callKey(d));
  if (live === true) return d;
  if (live === false) throw over();
  return live.then((l) => { if (!l) throw over(); return d; }, (e: unknown) => { throw storeUnchecked(rt, identity, e, unknown); });
}

/** The fleet store cannot say whether the call is live: 503, never honoured unchecked (counted by storeUnchecked). */
function unknown(e: unknown): AamError {
  return new AamError(503, 'store_unavailable', `Redis (the fleet store of live A2A calls) is unavailable, so aam cannot tell whether the A2A call that issued ${DELEGATION_HEADER} is still live: ${(e as Error).message}; retry shortly`, { headers: { 'retry-after': '1' } });
}

const over = () => invalid('was issued for an A2A call that has ended (a delegation is honoured only while its call runs or a task it left running is not done, 1 h at most)');

/** The A2A call that issued `d`, in rt.liveCalls. */
const callKey = (d: Delegation): string => `${d.id}:${d.parent}`;

/** A callee's task, in rt.liveCalls (the callee's name has no `:` once encoded). */
const taskKey = (callee: string, task: string): string => `${encodeURIComponent(callee)}:${task}`;

/**
 * A running A2A call in rt.liveCalls (callStarted gives it, callEnded takes it): its key, made once
 * per call. Made at each end it was two concatenations, each flattened and hashed by the map (~1 us a call).
 */
export type LiveCall = string & { readonly __liveCall: never };

/** The A2A call issuing `d` starts: `d` is honoured until callEnded (or its exp). */
export function callStarted(rt: AccessRuntime, d: Delegation, now = Date.now()): LiveCall {
  const call = callKey(d) as LiveCall;
  rt.liveCalls.begin(call, d.exp - now);
  return call;
}

/**
 * The A2A call `call` (callStarted) to `callee` has ended (answered, refused or failed): its
 * delegation is refused from now on, unless the call left `tasks` running (the callee goes on
 * working on them after its answer): then until aam sees each terminal (taskEnded), or it expires.
 */
export function callEnded(rt: AccessRuntime, call: LiveCall, callee: string, tasks: readonly string[] | null): void {
  rt.liveCalls.end(call, tasks === null || tasks.length === 0 ? null : tasks.map((t) => taskKey(callee, t)));
}

/** `callee`'s task `task` reached a terminal state (an answer, stream event or push notification said so): the delegations it held end. */
export function taskEnded(rt: AccessRuntime, callee: string, task: string): void {
  rt.liveCalls.taskEnded(taskKey(callee, task));
}

/**
 * The delegation for a call from `caller` to `callee`, extending the caller's own (if it is serving one).
 * `ids.traceId()` gives random hex digits for a new chain (the runtime's pooled ids: no randomBytes
 * call per request; the ids themselves, not a closure over them per call).
 */
export function delegate(from: Delegation | undefined, caller: Identity, callee: string, requestId: string, ids: { traceId(): string }, now = Date.now()): Delegation {
  return {
    id: from?.id ?? `dlg_${ids.traceId()}`,
    hop: (from?.hop ?? 0) + 1,
    // A first hop's chain is one array (no copy of a one-agent array made for it).
    chain: from ? [...from.chain, callee] : [chainName(caller), callee],
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
export function outgoingTraceparent(span: { traceparent(): string } | undefined, traceId: string, ids: { spanId(): string }): string {
  return span?.traceparent() ?? `00-${traceId}-${ids.spanId()}-01`;
}
