// What the A2A plane needs of the runtime beyond the access path's view (access/runtime-view.ts).
import type { AccessRuntime } from '../access/runtime-view.ts';
import type { Ctx as AccessCtx } from '../access/request.ts';
import type { Access as AccessOf } from '../access/context.ts';
import type { Identity } from '../identity/types.ts';
import type { PolicySet } from '../policy/compile.ts';
import type { PushRouteStore, TaskOwnerStore } from '../store/types.ts';
import type { PushHeldStore } from '../store/push-held.ts';

export interface A2aRuntime extends AccessRuntime {
  /** A2A task and context ids and the caller that created each. */
  readonly a2aTasks: TaskOwnerStore;
  /** Registered A2A push routes (push.ts). */
  readonly a2aPushRoutes: PushRouteStore;
  /** Artifact text held across a push route's notifications (a2a/chunks.ts): memory, or Redis for a fleet. */
  readonly a2aPushHeld: PushHeldStore;
  /** Request handlers not yet settled: a held push text's release counts as one (a shutdown waits for it, bounded). */
  handling: number;
  readonly handled: () => void;
  /** Hosts (or host:port) A2A push notifications may be delivered to although private (AAM_A2A_PUSH_ALLOW). */
  readonly a2aPushAllow: readonly string[];
  /** Why policy forbids this identity's call to use a credential (credentials.allow), or null. */
  credentialRefusal(name: string, identity: Identity, set?: PolicySet): string | null;
  /** Outbound auth headers for a credential (the callee's): at once for a static secret, a promise when a token is obtained. */
  injectCallee(name: string, identity: Identity): CalleeInjection | Promise<CalleeInjection>;
}

/** What a callee's credential adds to the call. */
export interface CalleeInjection { headers: Record<string, string>; query?: Record<string, string>; credential: { name: string; version: number } }

/** An A2A request's context. */
export type Ctx = AccessCtx<A2aRuntime>;

/** An A2A request's access context. */
export type Access = AccessOf<Ctx>;
