// Signed checkpoints: a statement "event tree_size had hash head_hash at time", Ed25519-signed.
// type is signed too so a periodic checkpoint can never be passed off as a retention anchor.
import { canonicalJson } from './canonical.ts';
import { signBytes, verifyBytes } from './keys.ts';
import type { SigningKey } from './keys.ts';

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
