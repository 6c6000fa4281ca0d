#!/usr/bin/env node
// Build a signed release bundle of the agent (README, "Over-the-air updates").
//   scripts/release --key release.pem --key-id 2026a [--out release/] [--version X.Y.Z]
//   scripts/release --keygen --key-id 2026a --out keys/   (writes 2026a.pem, keep it offline, and 2026a.pub.pem for devices)
// Prints one JSON line: version, tarball, sha256, size, files, signed-by.
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRelease } from '../dist/ota/release.js';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const keyId = arg('--key-id');
const out = arg('--out') ?? 'release';
if (!keyId) {
  console.error('release: --key-id is required');
  process.exit(2);
}
if (process.argv.includes('--keygen')) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `${keyId}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(out, `${keyId}.pub.pem`), publicKey.export({ type: 'spki', format: 'pem' }));
  console.log(JSON.stringify({ keyId, privateKey: join(out, `${keyId}.pem`), publicKey: join(out, `${keyId}.pub.pem`) }));
  process.exit(0);
}
const keyFile = arg('--key');
if (!keyFile) {
  console.error('release: --key FILE (the Ed25519 private key, PEM) is required');
  process.exit(2);
}
try {
  const r = buildRelease({
    repo: fileURLToPath(new URL('..', import.meta.url)),
    outDir: out,
    privateKeyPem: readFileSync(keyFile, 'utf8'),
    keyId,
    version: arg('--version'),
  });
  console.log(JSON.stringify({ version: r.version, tarball: r.tarball, sha256: r.sha256, size: r.size, files: Object.keys(r.manifest.files).length, signedBy: keyId, spoolSchema: r.manifest.spoolSchema }));
} catch (err) {
  console.error(`release: ${err.message}`);
  process.exit(1);
}
