// Signed checkpoints: a statement "event tree_size had hash head_hash at time", Ed25519-signed.
// type is signed too so a periodic checkpoint can never be passed off as a retention anchor.
import { canonicalJson } from './canonical.ts';
import { signBytes, verifyBytes } from './keys.ts';
import type { SigningKey } from './keys.ts';
import { isObj } from '../lib/json.ts';

export type CheckpointType = 'periodic' | 'close' | 'retention';

export interface Checkpoint {
  tree_size: number;
  head_hash: string;
  time: string;
  type: CheckpointType;
  key_id: string;
  /** base64 Ed25519 signature over checkpointPayload(). */
  signature: string;
}

export function checkpointPayload(c: Pick<Checkpoint, 'tree_size' | 'head_hash' | 'time' | 'type'>): string {
  return canonicalJson({ head_hash: c.head_hash, time: c.time, tree_size: c.tree_size, type: c.type });
}

export function signCheckpoint(key: SigningKey, treeSize: number, headHash: string, type: CheckpointType, time = new Date().toISOString()): Checkpoint {
  const base = { tree_size: treeSize, head_hash: headHash, time, type };
  return { ...base, key_id: key.keyId, signature: signBytes(key.privateKey, checkpointPayload(base)) };
}

export function checkpointSignatureValid(c: Checkpoint, publicKeyPem: string): boolean {
  return verifyBytes(publicKeyPem, checkpointPayload(c), c.signature);
}

/** A checkpoint as a record wherever it leaves the database: exports, sinks, the checkpoint file. */
export function checkpointRecord(c: Checkpoint): { kind: 'checkpoint' } & Checkpoint {
  return { kind: 'checkpoint', tree_size: c.tree_size, head_hash: c.head_hash, time: c.time, type: c.type, key_id: c.key_id, signature: c.signature };
}

export function checkpointLine(c: Checkpoint): string {
  return JSON.stringify(checkpointRecord(c));
}

const TYPES: readonly string[] = ['periodic', 'close', 'retention'] satisfies CheckpointType[];

/** A checkpoint read from outside (a file, a URL), or what is wrong with it. */
export function checkpointOf(v: unknown): Checkpoint | string {
  if (!isObj(v)) return 'not a JSON object';
  const o = v;
  if (!Number.isSafeInteger(o.tree_size) || (o.tree_size as number) < 1) return 'tree_size is not a positive integer';
  if (typeof o.head_hash !== 'string' || !/^[0-9a-f]{64}$/.test(o.head_hash)) return 'head_hash is not 64 hex digits';
  if (typeof o.time !== 'string' || Number.isNaN(Date.parse(o.time))) return 'time is not an ISO date';
  if (typeof o.type !== 'string' || !TYPES.includes(o.type)) return `type is not one of ${TYPES.join(', ')}`;
  if (typeof o.key_id !== 'string' || typeof o.signature !== 'string') return 'key_id or signature is missing';
  return { tree_size: o.tree_size as number, head_hash: o.head_hash, time: o.time, type: o.type as CheckpointType, key_id: o.key_id, signature: o.signature };
}
