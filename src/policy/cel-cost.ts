// Load-time bound on what a `when:` condition may cost. The caller chooses `args` up to the body
// limit (`context` is aam's: time, ids, a delegation chain of at most 32 hops), so a condition must cost no more than one pass over
// them: measured before this check, `args.l.all(x, x in args.l)` took 38 ms on 3,000 items and grows
// with the square (seconds at 10,000); `args.q.matches("^(a+)+$")` held the loop 30 s on 29
// characters. Refused at load, with the column and a way around:
// - a comprehension (all, exists, exists_one, map, filter) over caller data whose body reads caller
//   data other than its own element (the product of two sizes the caller picks);
// - matches() with a pattern that is not a string literal the linear-time engine can run.
import { compileLinearRegex } from '../config/linear-regex.ts';

/** The parser's AST (cel-js): `op` plus operands; comprehensions are still macro calls here. */
export interface CelNode { op: string; args: unknown; pos?: number }

export interface CelCostProblem { message: string; column?: number }

const MACROS = new Set(['all', 'exists', 'exists_one', 'existsOne', 'map', 'filter']);
/** The variable whose size the caller chooses. */
const CALLER_SIZED = 'args';

const isNode = (v: unknown): v is CelNode => typeof v === 'object' && v !== null && typeof (v as CelNode).op === 'string';

function children(n: CelNode): CelNode[] {
  const out: CelNode[] = [];
  const add = (v: unknown): void => {
    if (isNode(v)) out.push(v);
    else if (Array.isArray(v)) v.forEach(add);
  };
  if (n.op !== 'value' && n.op !== 'id') add(n.args);
  return out;
}

/** True when the expression reads a caller-sized variable (or one of `sized`, bound to caller data). */
function readsCallerData(n: CelNode, sized: ReadonlySet<string>): boolean {
  if (n.op === 'id') return n.args === CALLER_SIZED || sized.has(n.args as string);
  return children(n).some((c) => readsCallerData(c, sized));
}

const column = (n: CelNode): number | undefined => (typeof n.pos === 'number' ? n.pos + 1 : undefined);

function patternProblem(call: CelNode, pattern: unknown): CelCostProblem | undefined {
  if (!isNode(pattern) || pattern.op !== 'value' || typeof pattern.args !== 'string') {
    return { message: 'matches() needs its pattern as a string literal (so it can be checked to run in linear time at load)', column: column(call) };
  }
  try {
    compileLinearRegex(pattern.args, '');
    return undefined;
  } catch (e) {
    return { message: `matches() pattern "${pattern.args}" ${(e as Error).message}`, column: column(pattern) };
  }
}

/** A macro's iteration variables: map(x, [filter,] transform) has one; the others one or two before the body. */
function iterationVars(name: string, ops: CelNode[]): string[] {
  const count = name === 'map' ? 1 : ops.length - 1;
  return ops.slice(0, count).filter((o) => o.op === 'id').map((o) => o.args as string);
}

/** The first reason this condition could cost more than a pass over the caller's data, if any. */
export function celCostProblem(root: CelNode): CelCostProblem | undefined {
  const walk = (n: CelNode, sized: ReadonlySet<string>): CelCostProblem | undefined => {
    if (n.op === 'rcall' || n.op === 'call') {
      const [name, a, b] = n.args as [string, unknown, unknown];
      if (name === 'matches') {
        const p = n.op === 'rcall' ? patternProblem(n, (b as unknown[])[0]) : patternProblem(n, (a as unknown[])[1]);
        if (p) return p;
      }
      if (n.op === 'rcall' && MACROS.has(name) && isNode(a) && Array.isArray(b)) {
        const vars = iterationVars(name, b as CelNode[]);
        const bodies = (b as CelNode[]).slice(vars.length);
        const overCallerData = readsCallerData(a, sized);
        const inner = new Set([...sized].filter((v) => !vars.includes(v)));
        if (overCallerData) {
          const bad = bodies.find((body) => readsCallerData(body, inner));
          if (bad) {
            return {
              message: `${name}() over the caller's data reads the caller's data again in its body (${vars.join(', ')} aside): that costs the product of two sizes the caller chooses; test each element on its own (e.g. against a literal list) or check the second value outside the ${name}()`,
              column: column(n),
            };
          }
          vars.forEach((v) => inner.add(v));
        }
        return walk(a, sized) ?? bodies.reduce<CelCostProblem | undefined>((p, body) => p ?? walk(body, inner), undefined);
      }
    }
    for (const c of children(n)) {
      const p = walk(c, sized);
      if (p) return p;
    }
    return undefined;
  };
  return walk(root, new Set());
}
