import { test } from 'node:test';
import assert from 'node:assert/strict';
import { detect, DETECTOR_NAMES } from '../src/guardrails/detectors.ts';
import { ibanValid, luhnValid } from '../src/guardrails/checksums.ts';
import type { DetectorName } from '../src/guardrails/types.ts';

/** Values found by one detector (or all) in text. */
function found(text: string, names: DetectorName[] = DETECTOR_NAMES): string[] {
  return detect(text, names).map((f) => `${f.category}:${text.slice(f.start, f.end)}`);
}

test('checksums: Luhn and IBAN mod-97', () => {
  assert.equal(luhnValid('4111111111111111'), true);
  assert.equal(luhnValid('4111111111111112'), false);
  assert.equal(ibanValid('DE89370400440532013000'), true);
  assert.equal(ibanValid('DE89370400440532013001'), false);
  assert.equal(ibanValid('DE8937040044053201300'), false, 'wrong length for DE');
});

test('email: addresses found, asset names and package specs not', () => {
  assert.deepEqual(found('mail jane.doe+x@example.co.uk now', ['email']), ['email:jane.doe+x@example.co.uk']);
  assert.deepEqual(found('see logo@2x.png and npm i @types/node@24', ['email']), []);
});

test('phone: international and national formats', () => {
  for (const p of ['+1 (415) 555-2671', '+44 20 7946 0958', '+49 (0)30 1234 5678', '+33 1 23 45 67 89', '+14155552671', '(212) 555-0199', '415.555.2671', '0044 20 7946 0958', '01 23 45 67 89']) {
    assert.deepEqual(found(`reach me on ${p}.`, ['phone']), [`phone:${p}`], p);
  }
  assert.deepEqual(found('mobile: 07700 900123', ['phone']), ['phone:07700 900123']);
});

test('phone: order numbers, timestamps, dates, versions, UUIDs are not phones', () => {
  for (const s of ['Order 415-555-2671 shipped', 'order number 4155552671', '2024-01-15T10:30:00Z', '15/03/2024 10:30:45', 'v10.2.14', '123e4567-e89b-12d3-a456-426614174000', 'event 1710512525', 'Ticket 123-456-7890', '020 7946 0958 kg']) {
    assert.deepEqual(found(s, ['phone']), [], s);
  }
});

test('credit card: Luhn + issuer prefix + consistent grouping', () => {
  for (const c of ['4111 1111 1111 1111', '4111-1111-1111-1111', '378282246310005', '5555555555554444', '6011111111111117', '3056 930902 5904']) {
    assert.deepEqual(found(`card ${c} ok`, ['credit_card']), [`credit_card:${c}`], c);
  }
  for (const s of ['card 4111111111111112', '1234567812345670', '4111 1111-1111 1111', 'USPS 9400 1000 0000 0000 0000 00', '4111111111111111111111']) {
    assert.deepEqual(found(s, ['credit_card']), [], s);
  }
});

test('ssn: area/group/serial rules, separators or context', () => {
  assert.deepEqual(found('SSN 078-05-1120', ['ssn']), ['ssn:078-05-1120']);
  assert.deepEqual(found('ssn: 123456789', ['ssn']), ['ssn:123456789']);
  for (const s of ['id 123456789', '666-12-3456', '000-12-3456', '900-12-3456', '123-00-4567', '123-45-0000', 'Room 878-51-3782', '123 45 6789']) {
    assert.deepEqual(found(s, ['ssn']), [], s);
  }
});

test('iban: country length table and mod-97, spaced or compact', () => {
  assert.deepEqual(found('pay DE89 3704 0044 0532 0130 00 now', ['iban']), ['iban:DE89 3704 0044 0532 0130 00']);
  assert.deepEqual(found('GB82WEST12345698765432', ['iban']), ['iban:GB82WEST12345698765432']);
  assert.deepEqual(found('DE89 3704 0044 0532 0130 01', ['iban']), [], 'bad check digits');
  assert.deepEqual(found('DE89 3704 0044 0532 0130 00 THEN', ['iban']), ['iban:DE89 3704 0044 0532 0130 00'], 'trailing word not swallowed');
});

test('ip: IPv4 octet range, IPv6, versions and times excluded', () => {
  assert.deepEqual(found('from 192.168.1.10:8080 and 2001:db8::8a2e:370:7334', ['ip_address']), ['ip_address:192.168.1.10', 'ip_address:2001:db8::8a2e:370:7334']);
  for (const s of ['999.1.1.1', 'version 1.2.3.4', '1.3.6.1.4.1.2312', '12:30:45', 'std::vector', '00:1a:2b:3c:4d:5e']) {
    assert.deepEqual(found(s, ['ip_address']), [], s);
  }
});

test('secrets: vendor formats, PEM, JWT, assignments, entropy', () => {
  const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U';
  const pem = '-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\nKUpRKfFLfRYC9AIKjbJTWit+CqvjWYzvQwECAwEAAQ==\n-----END RSA PRIVATE KEY-----';
  const cases: Array<[string, string]> = [
    ['AKIAIOSFODNN7EXAMPLE', 'aws_access_key'],
    ['ghp_' + 'a1B2c3D4e5'.repeat(3) + 'abcdef', 'github_token'],
    ['xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx', 'slack_token'],
    ['sk-proj-Ab3dEf6hIj9kLmN0pQrStUvWxYz12345', 'openai_key'],
    ['sk-ant-api03-' + 'abcdEFGH1234'.repeat(4), 'anthropic_key'],
    ['AIza' + 'SyA1234567890abcdefghijklmnopqrstuv', 'google_api_key'],
    ['sk_live_' + 'a1B2c3D4e5F6g7H8i9J0k1L2', 'stripe_key'],
    [jwt, 'jwt'],
    [pem, 'private_key'],
    ['glpat-' + 'Ab1Cd2Ef3Gh4Ij5Kl6Mn', 'gitlab_token'],
    ['npm_' + 'Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv1Wx2', 'npm_token'],
    ['hf_' + 'AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh', 'huggingface_token'],
    ['whsec_' + 'Ab1Cd2Ef3Gh4Ij5Kl6Mn7Op8Qr9St0Uv', 'stripe_webhook_secret'],
  ];
  for (const [v, kind] of cases) {
    const f = detect(`value: ${v} end`, ['secrets']);
    assert.equal(f.length, 1, kind);
    assert.equal(f[0].kind, kind);
    assert.equal(`value: ${v} end`.slice(f[0].start, f[0].end), v);
  }
  assert.deepEqual(found('api_key=3f2a9c1b7e5d4a6f8b0c', ['secrets']), ['secret:3f2a9c1b7e5d4a6f8b0c'], 'hex in key=value context');
  assert.deepEqual(found('random Zx8Qp2Lm9Rt4Vn7Ks1Wd token', ['secrets']), ['secret:Zx8Qp2Lm9Rt4Vn7Ks1Wd']);
});

test('secrets: hashes, UUIDs, placeholders, prose and base64 data are not secrets', () => {
  for (const s of [
    'commit 3f2a9c1b7e5d4a6f8b0c3f2a9c1b7e5d4a6f8b0c', 'id 123e4567-e89b-12d3-a456-426614174000',
    'OPENAI_API_KEY=${OPENAI_API_KEY}', 'api_key = "<YOUR_API_KEY>"', 'password: incorrect', 'we use sk-learn-toolkit here',
    'getUserAccountBalanceV2ForCustomerRecords', 'https://example.com/api/v1/users/12345/orders?page=2',
    'data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==',
    'eyJub3QiOiJqd3QifQ.eyJzdWIiOiIxIn0.signaturepart',
    '{"id":"chatcmpl-9xQ2Lm7Rt4Vn8Ks1Wd5Zp3Yh6Jc0Bf"}', 'message msg_01XFDUDYJgAACzvnptvVoYEL', 'file-Ab3Cd5Ef7Gh9Ij2Kl4Mn6Op8Q',
  ]) {
    assert.deepEqual(found(s, ['secrets']), [], s);
  }
});

test('overlaps resolve to the most specific category', () => {
  assert.deepEqual(found('card 4111111111111111'), ['credit_card:4111111111111111']);
});
