// AAM_LOG_LEVEL is read from the gateway's own environment (an in-process gateway has its own, as
// a test's does), and a value that is not a level refuses the start instead of meaning info.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { logLevelFrom } from '../src/observability/log.ts';
import { startTestGateway, doc, yaml } from './helpers/gateway.ts';

const config = yaml(doc('Provider', 'demo', { type: 'demo' }), doc('Model', 'one', { targets: [{ provider: 'demo', model: 'd' }] }));

/** What the gateway's logger writes to stderr while `fn` runs. */
async function stderrOf(fn: () => Promise<void>): Promise<string> {
  const write = process.stderr.write;
  let out = '';
  process.stderr.write = ((chunk: string | Uint8Array) => { out += String(chunk); return true; }) as typeof process.stderr.write;
  try { await fn(); } finally { process.stderr.write = write; }
  return out;
}

test('the level is the gateway env\'s, not this process\'s', async () => {
  const before = process.env.AAM_LOG_LEVEL;
  process.env.AAM_LOG_LEVEL = 'info';
  try {
    for (const [level, shown] of [['error', false], ['info', true]] as const) {
      const gw = await startTestGateway(config, { AAM_LOG_LEVEL: level });
      try {
        const out = await stderrOf(async () => { gw.g.rt.log.info({ event: 'log_level_probe' }, 'probe'); });
        assert.equal(out.includes('log_level_probe'), shown, `AAM_LOG_LEVEL=${level} in the gateway's env`);
      } finally { await gw.close(); }
    }
  } finally {
    if (before === undefined) delete process.env.AAM_LOG_LEVEL; else process.env.AAM_LOG_LEVEL = before;
  }
});

test('a value that is not a level refuses the start and names the levels', async () => {
  assert.equal(logLevelFrom(undefined), undefined);
  assert.equal(logLevelFrom(''), undefined);
  assert.equal(logLevelFrom('warn'), 'warn');
  for (const bad of ['verbose', 'INFO', 'toString']) assert.throws(() => logLevelFrom(bad), /AAM_LOG_LEVEL must be debug, info, warn or error, not "/);
  await assert.rejects(startTestGateway(config, { AAM_LOG_LEVEL: 'verbose' }), /AAM_LOG_LEVEL must be debug, info, warn or error, not "verbose"/);
});
