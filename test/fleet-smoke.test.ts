import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import postgres from 'postgres';
import { Redis } from 'ioredis';
import { fleetStore } from './helpers/fleet.ts';

test('the suite runs against a real PostgreSQL and Redis', async () => {
  const s = await fleetStore();
  after(() => s.drop());
  const sql = postgres(s.databaseUrl, { max: 1 });
  const [r] = await sql`SELECT current_user AS u, (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS su`;
  assert.equal(r.u, 'aam');
  assert.equal(r.su, false);
  await sql.end();
  const redis = new Redis(s.redisUrl);
  assert.equal(await redis.ping(), 'PONG');
  redis.disconnect();
});
