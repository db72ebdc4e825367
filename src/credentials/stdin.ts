// `aam credentials set NAME` reads the secret from stdin, never from argv (argv is visible in ps
// and shell history).
import { CredentialError } from './errors.ts';

const MAX_SECRET_BYTES = 64 * 1024;

/** Read a whole secret from a stream; strips one trailing newline; refuses empty and oversize input. */
export async function readSecretFromStdin(input: AsyncIterable<Uint8Array | string> = process.stdin): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const b = Buffer.from(chunk); // a string is read as UTF-8
    size += b.length;
    if (size > MAX_SECRET_BYTES) throw new CredentialError('credential_config', `secret on stdin is larger than ${MAX_SECRET_BYTES} bytes`);
    parts.push(b);
  }
  const text = Buffer.concat(parts).toString('utf8').replace(/\r?\n$/, '');
  if (text === '') throw new CredentialError('credential_config', 'no secret on stdin: pipe it in, e.g. `aam credentials set NAME < secret.txt`');
  return text;
}
