// What the console needs of the runtime beyond the access path's view (access/runtime-view.ts).
import type { DatabaseSync } from 'node:sqlite';
import type { AccessRuntime } from '../access/runtime-view.ts';
import type { Ctx as AccessCtx } from '../access/request.ts';
import type { BudgetLedger } from '../policy/limits.ts';
import type { Fleet } from '../store/fleet.ts';
import type { FleetLimiter } from '../store/fleet-limits.ts';
import type { FleetUsage } from '../store/fleet-usage.ts';
import type { UsageRecorder } from '../gateway/usage.ts';

export interface ConsoleRuntime extends AccessRuntime {
  readonly db: DatabaseSync;
  /** The fleet store's connections, rollups and live budget totals, or null in embedded mode. */
  readonly fleet: { readonly fleet: Fleet; readonly usage: FleetUsage; readonly limiter: FleetLimiter } | null;
  readonly ledger: BudgetLedger;
  readonly usage: UsageRecorder;
}

/** A console request's context. */
export type Ctx = AccessCtx<ConsoleRuntime>;
