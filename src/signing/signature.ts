/**
 * Ed25519 signatures under a set of trusted keys: one implementation for all
 * that the fleet signs (release bundles, OTA offers, fleet commands, board
 * firmware images). A device holds public keys only, several at a time so
 * keys can rotate; a signature names the id of the key that made it.
 *
 * Signed JSON is signed over its canonical form (keys sorted, no spaces), so
 * a broker or a tool that re-serialises the JSON cannot break a signature.
 */
import { AgentError, type SignatureErrorCode } from '../util/errors.js';
import { createPublicKey, verify, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';

export interface TrustedKey {
  id: string;
  /** PEM (SPKI) public key. */
  publicKeyPem: string;
}

export interface SignatureRef {
  alg: 'ed25519';
  keyId: string;
  /** base64 signature over the signed bytes */
  sig: string;
}

export class SignatureError extends AgentError<SignatureErrorCode> {}

/** The configured keys (`{id, publicKeyFile}`), read from their files; throws when one cannot be read. */
export function readTrustedKeyFiles(keys: ReadonlyArray<{ id: string; publicKeyFile: string }>): TrustedKey[] {
  return keys.map((k) => ({ id: k.id, publicKeyPem: readFileSync(k.publicKeyFile, 'utf8') }));
}

/** JSON with object keys sorted and no whitespace: the bytes a signature over JSON covers. */
export function canonicalJson(x: unknown): string {
  if (Array.isArray(x)) return `[${x.map(canonicalJson).join(',')}]`;
  if (x && typeof x === 'object') {
    return `{${Object.keys(x)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((x as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(x);
}

function publicKey(k: TrustedKey): KeyObject {
  const key = createPublicKey(k.publicKeyPem);
  if (key.asymmetricKeyType !== 'ed25519')
    throw new SignatureError('bad_key', `trusted key ${k.id} is ${key.asymmetricKeyType}, not ed25519`);
  return key;
}

/** Verify a signature made by one of the trusted keys over `bytes`; returns the key id or throws SignatureError. */
export function verifySignature(bytes: Buffer, sig: SignatureRef, trusted: readonly TrustedKey[], what: string): string {
  if (sig.alg !== 'ed25519')
    throw new SignatureError('unsupported_algorithm', `${what}: signature algorithm ${String(sig.alg)} is not ed25519`);
  const key = trusted.find((k) => k.id === sig.keyId);
  if (!key)
    throw new SignatureError(
      'untrusted_key',
      `${what}: signed with key "${sig.keyId}", which this device does not trust (trusted: ${trusted.map((k) => k.id).join(', ') || 'none'})`,
    );
  if (!verify(null, bytes, publicKey(key), Buffer.from(sig.sig, 'base64')))
    throw new SignatureError('bad_signature', `${what}: signature does not verify under key "${sig.keyId}"`);
  return key.id;
}
