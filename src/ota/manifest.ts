/**
 * Release bundles: a folder holding the agent (compiled JS, production
 * node_modules with native addons, calibration files, units), a manifest
 * naming every file with its sha256, and the manifest's Ed25519 signature.
 *
 * Trust: a device holds public keys only (`ota.trustedKeys`), several at a
 * time so keys can rotate: a bundle is accepted when its signature verifies
 * under any trusted key whose id it names. The signature covers the exact
 * bytes of manifest.json; the manifest covers every other file, and a file
 * that is not listed is refused too (nothing rides along unsigned).
 */
import { AgentError } from '../util/errors.js';
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, readlinkSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { verifySignature, type SignatureRef, type TrustedKey } from '../signing/signature.js';

export const MANIFEST_FILE = 'manifest.json';
export const SIGNATURE_FILE = 'manifest.sig';
export const BUNDLE_FORMAT = 1;

export interface Manifest {
  format: number;
  name: 'bike-telemetry';
  version: string;
  /** The Node.js platform and architecture its native addons were built for. */
  platform: string;
  arch: string;
  /**
   * Node's addon ABI (NODE_MODULE_VERSION) the native addons were built for:
   * they load only under a Node with the same. Absent in bundles made before
   * it was recorded (judged on platform and arch alone).
   */
  nodeAbi?: number;
  /** The spool schema this version writes (and the newest it reads). */
  spoolSchema: number;
  /** The oldest spool schema it can migrate from. */
  minSpoolSchema: number;
  createdAt: string;
  /** Path (forward slashes) -> sha256 hex; symlinks as "link:<target>". */
  files: Record<string, string>;
}

/** manifest.sig: the signature over the exact bytes of manifest.json. */
export type ManifestSignature = SignatureRef;

export class BundleError extends AgentError<'bundle_invalid'> {
  constructor(message: string, options?: ErrorOptions) {
    super('bundle_invalid', message, options);
  }
}

const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Every file under dir (relative, forward slashes), manifest files excluded, sorted. */
export function listFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      const st = lstatSync(p);
      if (st.isDirectory()) walk(p);
      else out.push(relative(dir, p).split(sep).join('/'));
    }
  };
  walk(dir);
  return out.filter((f) => f !== MANIFEST_FILE && f !== SIGNATURE_FILE).sort();
}

function digest(dir: string, file: string): string {
  const p = join(dir, file);
  const st = lstatSync(p);
  if (st.isSymbolicLink()) return `link:${readlinkSync(p)}`;
  return sha256(readFileSync(p));
}

export function buildManifest(
  dir: string,
  fields: Omit<Manifest, 'format' | 'name' | 'files' | 'createdAt'> & { createdAt?: string },
): Manifest {
  const files: Record<string, string> = {};
  for (const f of listFiles(dir)) files[f] = digest(dir, f);
  return { format: BUNDLE_FORMAT, name: 'bike-telemetry', ...fields, createdAt: fields.createdAt ?? new Date().toISOString(), files };
}

/** Write manifest.json and manifest.sig into dir. */
export function signBundle(dir: string, manifest: Manifest, privateKeyPem: string, keyId: string): void {
  const bytes = Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`, 'utf8');
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ed25519') throw new BundleError(`signing key ${keyId} is ${key.asymmetricKeyType}, not ed25519`);
  const sig: ManifestSignature = { alg: 'ed25519', keyId, sig: sign(null, bytes, key).toString('base64') };
  writeFileSync(join(dir, MANIFEST_FILE), bytes);
  writeFileSync(join(dir, SIGNATURE_FILE), `${JSON.stringify(sig)}\n`);
}

/**
 * Check an unpacked bundle: the manifest's signature under a trusted key,
 * then every file against the manifest, and no file the manifest does not
 * name. Returns the manifest; throws BundleError naming the first problem.
 */
export function verifyBundle(dir: string, trusted: readonly TrustedKey[]): Manifest & { signedBy: string } {
  let bytes: Buffer;
  let sig: ManifestSignature;
  try {
    bytes = readFileSync(join(dir, MANIFEST_FILE));
  } catch {
    throw new BundleError(`no ${MANIFEST_FILE} in the bundle`);
  }
  try {
    sig = JSON.parse(readFileSync(join(dir, SIGNATURE_FILE), 'utf8')) as ManifestSignature;
  } catch {
    throw new BundleError(`unsigned bundle: no readable ${SIGNATURE_FILE}`);
  }
  const signedBy = verifySignature(bytes, sig, trusted, MANIFEST_FILE);
  let manifest: Manifest;
  try {
    manifest = JSON.parse(bytes.toString('utf8')) as Manifest;
  } catch (err) {
    throw new BundleError(`${MANIFEST_FILE} is not JSON: ${(err as Error).message}`);
  }
  if (manifest.format !== BUNDLE_FORMAT || manifest.name !== 'bike-telemetry')
    throw new BundleError(`not a bike-telemetry bundle of format ${BUNDLE_FORMAT}`);
  const present = new Set(listFiles(dir));
  for (const [file, want] of Object.entries(manifest.files)) {
    if (!present.has(file)) throw new BundleError(`${file} is missing`);
    const got = digest(dir, file);
    if (got !== want)
      throw new BundleError(`${file} does not match the manifest (sha256 ${got.slice(0, 12)}…, expected ${want.slice(0, 12)}…)`);
    present.delete(file);
  }
  if (present.size > 0) throw new BundleError(`files not in the manifest: ${[...present].slice(0, 5).join(', ')}`);
  return { ...manifest, signedBy };
}

/**
 * Compare versions by SemVer precedence: the dotted core numerically (1.10.0 >
 * 1.9.3), then a pre-release below its release (1.0.0-rc.1 < 1.0.0), its
 * identifiers numeric below text, numbers by value, text by ASCII (no locale:
 * the same order on every bike); build metadata (+...) is ignored.
 */
export function compareVersions(a: string, b: string): number {
  const [coreA, preA] = splitVersion(a);
  const [coreB, preB] = splitVersion(b);
  const c = compareIdentifiers(coreA, coreB, '0');
  if (c !== 0) return c;
  if (preA.length === 0 || preB.length === 0) return Math.sign(preB.length - preA.length);
  return compareIdentifiers(preA, preB, null);
}

function splitVersion(v: string): [string[], string[]] {
  const noBuild = v.split('+')[0];
  const dash = noBuild.indexOf('-');
  const core = (dash < 0 ? noBuild : noBuild.slice(0, dash)).split('.');
  return [core, dash < 0 ? [] : noBuild.slice(dash + 1).split('.')];
}

/** Identifier by identifier; a missing one is `pad` (the core's 0), or lower than any (a pre-release's shorter list). */
function compareIdentifiers(x: string[], y: string[], pad: string | null): number {
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const p = x[i] ?? pad;
    const q = y[i] ?? pad;
    if (p === null) return -1;
    if (q === null) return 1;
    const np = /^\d+$/.test(p) ? Number(p) : NaN;
    const nq = /^\d+$/.test(q) ? Number(q) : NaN;
    let c: number;
    if (!Number.isNaN(np) && !Number.isNaN(nq)) c = np - nq;
    else if (!Number.isNaN(np)) c = -1;
    else if (!Number.isNaN(nq)) c = 1;
    else c = p < q ? -1 : p > q ? 1 : 0;
    if (c !== 0) return Math.sign(c);
  }
  return 0;
}
