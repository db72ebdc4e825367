// Where did the CPU go? Self time by module and by function from a V8 .cpuprofile, idle excluded.
//   node bench/lib/profile-top.ts bench/results/prof/CPU.*.cpuprofile [topN]
import { readFileSync } from 'node:fs';

interface CallFrame { functionName: string; url: string; lineNumber: number }
interface ProfileNode { id: number; callFrame: CallFrame; children?: number[] }
interface CpuProfile { nodes: ProfileNode[]; samples: number[]; timeDeltas: number[] }

function moduleOf(url: string, fn: string): string {
  if (!url) return `(${fn || 'native'})`;
  const nm = url.split('node_modules/');
  if (nm.length > 1) return nm[nm.length - 1].split('/').slice(0, nm[nm.length - 1].startsWith('@') ? 2 : 1).join('/');
  if (url.startsWith('node:')) return url.split('/')[0];
  return url.replace(/^file:\/\/.*?\/(src|bench|test)\//, '$1/');
}

export function profileTop(p: CpuProfile, topN: number): string {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const self = new Map<number, number>();
  p.samples.forEach((id, i) => self.set(id, (self.get(id) ?? 0) + (p.timeDeltas[i] ?? 0)));
  const byFn = new Map<string, number>();
  const byMod = new Map<string, number>();
  let busy = 0;
  let idle = 0;
  for (const [id, us] of self) {
    const cf = byId.get(id)?.callFrame;
    if (!cf) continue;
    if (cf.functionName === '(idle)') { idle += us; continue; }
    busy += us;
    const fn = `${cf.functionName || '(anonymous)'} ${moduleOf(cf.url, cf.functionName)}:${cf.lineNumber + 1}`;
    byFn.set(fn, (byFn.get(fn) ?? 0) + us);
    const mod = moduleOf(cf.url, cf.functionName);
    byMod.set(mod, (byMod.get(mod) ?? 0) + us);
  }
  const top = (m: Map<string, number>): string => [...m].sort((a, b) => b[1] - a[1]).slice(0, topN)
    .map(([k, us]) => `${((us / busy) * 100).toFixed(1).padStart(5)} %  ${(us / 1000).toFixed(0).padStart(6)} ms  ${k}`).join('\n');
  return `busy ${(busy / 1e6).toFixed(1)} s, idle ${(idle / 1e6).toFixed(1)} s (percentages are of busy time)\n` +
    `-- self time by module --\n${top(byMod)}\n-- self time by function --\n${top(byFn)}`;
}

if (import.meta.main) {
  const [file, n] = process.argv.slice(2);
  if (!file) { console.error('usage: node bench/lib/profile-top.ts <file.cpuprofile> [topN]'); process.exit(2); }
  console.log(profileTop(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, Number(n ?? 25)));
}
