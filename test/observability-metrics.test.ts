// /metrics exposition from aam's own counters and histograms: the same names, help texts, label
// names and buckets as before (prom-client), plus the unknown-cost counter the cost help names;
// escaped label values, cumulative histogram buckets ending in +Inf, series only once updated,
// and prom-client's process metrics alongside.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from '../src/observability/metrics.ts';
import { Histogram, Counter, exposition, escapeLabelValue } from '../src/observability/prom.ts';
import { parseProm, sumOf } from './helpers/prom.ts';

const FAMILIES: Record<string, [type: string, help: string]> = {
  aam_model_requests_total: ['counter', 'Model calls by outcome'],
  aam_model_request_duration_seconds: ['histogram', 'Model call latency (gateway in to last byte out)'],
  aam_model_tokens_total: ['counter', 'Tokens by direction'],
  aam_model_cost_usd_total: ['counter', 'Known cost in USD (calls with unknown cost are counted in aam_model_unknown_cost_total)'],
  aam_model_unknown_cost_total: ['counter', 'Model calls whose cost is unknown (no price or no usage reported)'],
  aam_policy_decisions_total: ['counter', 'Policy decisions by effect'],
  aam_limited_total: ['counter', 'Requests refused by rate limit or budget, or because the fleet store could not check them'],
  aam_upstream_errors_total: ['counter', 'Model calls that failed after fallbacks'],
  aam_config_info: ['gauge', 'Loaded config version'],
};

test('model calls, decisions and refusals are counted per label set; an unknown cost is counted apart, zero cost adds nothing', async () => {
  const m = new Metrics();
  m.info.set({ version: 'sha256:abc' }, 1);
  const usage = { inputTokens: 100, outputTokens: 20 };
  m.modelCall('analyst', 'finance', 'gpt', 'oai', 200, 30, usage, 0.25);
  m.modelCall('analyst', 'finance', 'gpt', 'oai', 200, 70, usage, 0.5);
  m.modelCall('analyst', 'finance', 'gpt', 'oai', 502, 2, undefined, null);
  m.modelCall('', undefined, 'claude', 'anth', 200, 1, { inputTokens: 0, outputTokens: 3 }, 0);
  m.decision('allow', 'analyst');
  m.decision('allow', 'analyst');
  m.decision('deny', '');
  m.limited('rate_limited', 'analyst');
  const text = await m.text();
  for (const [name, [type, help]] of Object.entries(FAMILIES)) {
    assert.equal(text.split('\n').filter((l) => l === `# HELP ${name} ${help}`).length, 1, `one HELP line for ${name}`);
    assert.ok(text.includes(`\n# TYPE ${name} ${type}\n`), `TYPE of ${name}`);
  }
  const s = parseProm(text);
  assert.ok(s.some((x) => x.name === 'aam_process_cpu_user_seconds_total'), 'process metrics (prom-client) still there');
  const req = s.filter((x) => x.name === 'aam_model_requests_total');
  assert.deepEqual(req.map((x) => [x.labels, x.value]), [
    [{ agent: 'analyst', team: 'finance', route: 'gpt', provider: 'oai', status: '200' }, 2],
    [{ agent: 'analyst', team: 'finance', route: 'gpt', provider: 'oai', status: '502' }, 1],
    [{ agent: 'unregistered', team: '', route: 'claude', provider: 'anth', status: '200' }, 1],
  ]);
  assert.equal(sumOf(s, 'aam_model_tokens_total', { agent: 'analyst', direction: 'input' }), 200);
  assert.equal(sumOf(s, 'aam_model_tokens_total', { agent: 'analyst', direction: 'output' }), 40);
  assert.equal(sumOf(s, 'aam_model_tokens_total', { agent: 'unregistered', direction: 'input' }), 0);
  assert.equal(s.filter((x) => x.name === 'aam_model_tokens_total' && x.labels.agent === 'unregistered').length, 2, 'reported zero tokens are a series');
  assert.deepEqual(s.filter((x) => x.name === 'aam_model_cost_usd_total').map((x) => [x.labels, x.value]), [[{ agent: 'analyst', team: 'finance', route: 'gpt' }, 0.75]]);
  assert.deepEqual(s.filter((x) => x.name === 'aam_model_unknown_cost_total').map((x) => [x.labels, x.value]), [[{ agent: 'analyst', team: 'finance', route: 'gpt' }, 1]], 'the cost help text points here');
  assert.deepEqual(s.filter((x) => x.name === 'aam_upstream_errors_total').map((x) => [x.labels, x.value]), [[{ route: 'gpt', status: '502' }, 1]]);
  assert.equal(sumOf(s, 'aam_policy_decisions_total', { effect: 'allow', agent: 'analyst' }), 2);
  assert.equal(sumOf(s, 'aam_policy_decisions_total', { effect: 'deny', agent: 'unregistered' }), 1);
  assert.equal(sumOf(s, 'aam_limited_total', { code: 'rate_limited', agent: 'analyst' }), 1);
  assert.equal(sumOf(s, 'aam_config_info', { version: 'sha256:abc' }), 1);
  // Latency histogram for gpt/oai: 0.03 s, 0.07 s, 0.002 s.
  const h = (suffix: string) => s.filter((x) => x.name === `aam_model_request_duration_seconds${suffix}` && x.labels.route === 'gpt');
  assert.deepEqual(h('_bucket').map((x) => [x.labels.le, x.value]), [
    ['0.005', 1], ['0.01', 1], ['0.05', 2], ['0.1', 3], ['0.25', 3], ['0.5', 3], ['1', 3], ['2.5', 3], ['5', 3], ['10', 3], ['30', 3], ['60', 3], ['120', 3], ['+Inf', 3],
  ]);
  assert.ok(Math.abs(h('_sum')[0].value - 0.102) < 1e-12);
  assert.deepEqual(h('_count').map((x) => [x.labels, x.value]), [[{ route: 'gpt', provider: 'oai' }, 3]]);
});

test('histogram: bounds are inclusive, values above the last bound only reach +Inf, buckets are cumulative', () => {
  const hist = new Histogram('t_seconds', 'test', ['k'], [1, 0.5, 2]);
  const series = hist.labels('x');
  for (const v of [0.5, 0.6, 2, 2.01, 1000]) series.observe(v);
  hist.labels('unused');
  const s = parseProm(exposition([hist]));
  assert.deepEqual(s.map((x) => [x.name, x.labels.le ?? '', x.value]), [
    ['t_seconds_bucket', '0.5', 1], ['t_seconds_bucket', '1', 2], ['t_seconds_bucket', '2', 3], ['t_seconds_bucket', '+Inf', 5],
    ['t_seconds_sum', '', 1005.11], ['t_seconds_count', '', 5],
  ]);
  assert.ok(s.every((x) => x.labels.k === 'x'), 'a series never updated is not exposed');
});

test('label values are escaped (backslash, double quote, newline) and read back unchanged', async () => {
  const nasty = 'a\\b"c\nd}e,f="g"';
  assert.equal(escapeLabelValue(nasty), 'a\\\\b\\"c\\nd}e,f=\\"g\\"');
  const m = new Metrics();
  m.modelCall(nasty, 'team "x"', 'r\\1', 'p\n', 200, 5, { inputTokens: 1, outputTokens: 1 }, 0.1);
  const text = await m.text();
  const s = parseProm(text); // throws on any line a raw newline or quote would have broken
  const req = s.find((x) => x.name === 'aam_model_requests_total');
  assert.deepEqual(req?.labels, { agent: nasty, team: 'team "x"', route: 'r\\1', provider: 'p\n', status: '200' });
  assert.equal(s.find((x) => x.name === 'aam_model_request_duration_seconds_count')?.labels.provider, 'p\n');
  const c = new Counter('help_escape_total', 'line one\nback\\slash', []);
  c.labels().inc(2);
  assert.equal(exposition([c]), '# HELP help_escape_total line one\\nback\\\\slash\n# TYPE help_escape_total counter\nhelp_escape_total 2\n');
});
