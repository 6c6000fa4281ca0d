/**
 * Member ids are personal data: the agent stores and sends only a keyed hash
 * of them (HMAC-SHA256, truncated to 128 bits, base64url, prefixed `m1.` so
 * the scheme can change). Without the key the hash cannot be reversed or
 * recomputed from a guessed id.
 *
 * The key is either a fleet key provisioned to every bike (`privacy.memberKeyFile`:
 * the cloud can then join one member's rides across bikes, and a purge for a
 * member can be addressed fleet-wide) or, when none is configured, a random
 * per-device key created on first start (rides of one member on different
 * bikes cannot be joined). The key never leaves the device and is never logged.
 */
import { AgentError } from '../util/errors.js';
import { createHmac, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const PSEUDONYM_PREFIX = 'm1.';
const MIN_KEY_BYTES = 32;

export class MemberKeyError extends AgentError<'member_key'> {
  constructor(message: string, options?: ErrorOptions) {
    super('member_key', message, options);
  }
}

export class MemberPseudonymiser {
  constructor(private readonly key: Buffer) {
    if (key.length < MIN_KEY_BYTES) throw new MemberKeyError(`member key must be at least ${MIN_KEY_BYTES} bytes, got ${key.length}`);
  }

  pseudonym(memberId: string): string {
    const mac = createHmac('sha256', this.key).update(memberId, 'utf8').digest();
    return PSEUDONYM_PREFIX + mac.subarray(0, 16).toString('base64url');
  }

  /** True for a string that is already a pseudonym (the purge API accepts either). */
  static isPseudonym(s: string): boolean {
    return /^m1\.[A-Za-z0-9_-]{22}$/.test(s);
  }
}

/**
 * The configured fleet key file, or the device's own key under dataDir
 * (created with mode 0600 on first use).
 */
export function loadMemberKey(configuredFile: string | undefined, dataDir: string): Buffer {
  if (configuredFile) {
    let key: Buffer;
    try {
      key = readFileSync(configuredFile);
    } catch (err) {
      throw new MemberKeyError(`privacy.memberKeyFile ${configuredFile}: cannot read: ${(err as Error).message}`);
    }
    if (key.length < MIN_KEY_BYTES)
      throw new MemberKeyError(`privacy.memberKeyFile ${configuredFile}: key must be at least ${MIN_KEY_BYTES} bytes`);
    return key;
  }
  const file = join(dataDir, 'member.key');
  if (existsSync(file)) return readFileSync(file);
  mkdirSync(dirname(file), { recursive: true });
  const key = randomBytes(MIN_KEY_BYTES);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, key, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return key;
}
