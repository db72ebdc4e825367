// CEL `when:` conditions: parsed and type-checked once at load, evaluated per request.
// Variables are declared (not dyn) so a typo such as `identty.team` is a load error, not a
// condition that silently never matches at runtime.
// The CEL library (~3 MB RSS) loads with the first condition compiled, not with the gateway:
// configs without `when:` never load it (test/idle-modules.test.ts). Compiling is synchronous
// (config load), so it is required, which Node 24 does for ES modules without top-level await.
import { createRequire } from 'node:module';
import type { Environment } from '@marcbachmann/cel-js';
import { celCostProblem, type CelNode } from './cel-cost.ts';

export interface CelVars {
  identity: Readonly<Record<string, unknown>>;
  resource: string;
  action: string;
  args: Readonly<Record<string, unknown>>;
  context: Readonly<Record<string, unknown>>;
}

export interface CompiledCondition {
  source: string;
  /** False when the expression never mentions `context`: decide() then skips building it. */
  usesContext: boolean;
  /** False when the expression never mentions `args` (lets tools/list evaluate it per identity). */
  usesArgs: boolean;
  /** Returns true/false, or an Error when evaluation failed or returned a non-boolean (fail closed). */
  evaluate(vars: CelVars): boolean | Error;
}

export interface CelCompileError {
  message: string;
  /** 1-based column inside the expression, when known. */
  column?: number;
}

let env: Environment | undefined;
function celEnv(): Environment {
  if (env) return env;
  const { Environment: Env } = createRequire(import.meta.url)('@marcbachmann/cel-js') as typeof import('@marcbachmann/cel-js');
  return env = new Env({ unlistedVariablesAreDyn: false, homogeneousAggregateLiterals: false })
    .registerVariable('identity', 'map')
    .registerVariable('resource', 'string')
    .registerVariable('action', 'string')
    .registerVariable('args', 'map')
    .registerVariable('context', 'map');
}

interface Ranged { message: string; range?: { start: number }; node?: { pos?: number } }

function firstLine(msg: string): string {
  const i = msg.indexOf('\n');
  return i === -1 ? msg : msg.slice(0, i);
}

function position(e: Ranged): number | undefined {
  const p = e.range?.start ?? e.node?.pos;
  return typeof p === 'number' ? p + 1 : undefined;
}

export function compileCondition(source: string): CompiledCondition | CelCompileError {
  let fn: ReturnType<Environment['parse']>;
  try {
    fn = celEnv().parse(source);
  } catch (e) {
    const err = e as Ranged;
    return { message: `CEL syntax error: ${firstLine(err.message)}`, column: position(err) };
  }
  const checked = fn.check();
  if (!checked.valid) {
    const err = (checked.error ?? { message: 'invalid expression' }) as Ranged;
    return { message: `CEL type error: ${firstLine(err.message)}`, column: position(err) };
  }
  if (checked.type !== 'bool' && checked.type !== 'dyn') {
    return { message: `CEL condition must return bool, this one returns ${checked.type}`, column: 1 };
  }
  const costly = celCostProblem(fn.ast as CelNode);
  if (costly) return { message: `CEL cost: ${costly.message}`, column: costly.column };
  return {
    source,
    usesContext: /\bcontext\b/.test(source),
    usesArgs: /\bargs\b/.test(source),
    evaluate(vars) {
      let r: unknown;
      try {
        r = fn(vars);
      } catch (e) {
        return new Error(firstLine((e as Error).message));
      }
      return typeof r === 'boolean' ? r : new Error(`returned ${typeof r}, not a boolean`);
    },
  };
}

export const isCompileError = (c: CompiledCondition | CelCompileError): c is CelCompileError => !('evaluate' in c);
