// Throwaway certificate authorities for TLS tests, made with the openssl CLI in a test's temp dir:
// a CA, and server or client certificates it signs (EC P-256, valid for a day).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TestCa { name: string; dir: string; ca: string; caKey: string }
export interface Signed { cert: string; key: string }

function openssl(dir: string, ...args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args.join(' ')}: ${r.stderr}`);
}

/** A CA: `name`.ca.pem and its key in `dir`. */
export function testCa(dir: string, name: string): TestCa {
  openssl(dir, 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', `/CN=${name} test CA`, '-keyout', `${name}.ca.key`, '-out', `${name}.ca.pem`);
  return { name, dir, ca: join(dir, `${name}.ca.pem`), caKey: join(dir, `${name}.ca.key`) };
}

/**
 * A certificate `ca` signs, with subject CN `cn`: a server's (`san`, e.g. 'IP:127.0.0.1') or a
 * client's (no san; extendedKeyUsage clientAuth). Files `file`.crt and `file`.key in the CA's dir.
 */
export function signedBy(ca: TestCa, file: string, cn: string, san?: string): Signed {
  openssl(ca.dir, 'req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', `${file}.key`, '-out', `${file}.csr`);
  writeFileSync(join(ca.dir, `${file}.ext`), san ? `subjectAltName=${san}\n` : 'extendedKeyUsage=clientAuth\n');
  openssl(ca.dir, 'x509', '-req', '-in', `${file}.csr`, '-CA', ca.ca, '-CAkey', ca.caKey, '-CAcreateserial', '-days', '1', '-extfile', `${file}.ext`, '-out', `${file}.crt`);
  return { cert: join(ca.dir, `${file}.crt`), key: join(ca.dir, `${file}.key`) };
}
