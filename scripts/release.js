#!/usr/bin/env node
// Build signed release bundles of the agent (docs/ota.md and docs/console-cpus.md).
//   scripts/release --key release.pem --key-id 2026a [--arch x64|arm64|armv7|all|a,b] [--out release/] [--version X.Y.Z]
//                   [--cross-prefix aarch64-linux-gnu-]   (the GNU toolchain for a single --arch; default the target's)
//                   [--board-firmware a.fwimg,b.fwimg]     (signed board images the agent installs when idle: board-firmware/)
//   scripts/release --keygen --key-id 2026a --out keys/   (writes 2026a.pem, keep it offline, and 2026a.pub.pem for devices)
// Prints one JSON line per bundle: version, target, platform, arch, nodeAbi, tarball, dir, sha256, size, files, addons, signedBy.
// SOURCE_DATE_EPOCH makes the bytes depend on the inputs alone.
// Exit codes: 0 built; 1 a build step failed; 2 bad usage; 3 a tool is missing (the message names its Debian package).
import { spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { availableParallelism } from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildRelease } from '../dist/ota/release.js';
import { hostTarget, parseTargets } from '../dist/ota/targets.js';

const arg = (name) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const usage = (msg) => {
  console.error(`release: ${msg}`);
  process.exit(2);
};
const keyId = arg('--key-id');
const out = arg('--out') ?? 'release';
if (!keyId) usage('--key-id is required');
if (process.argv.includes('--keygen')) {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, `${keyId}.pem`), privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  writeFileSync(join(out, `${keyId}.pub.pem`), publicKey.export({ type: 'spki', format: 'pem' }));
  console.log(JSON.stringify({ keyId, privateKey: join(out, `${keyId}.pem`), publicKey: join(out, `${keyId}.pub.pem`) }));
  process.exit(0);
}
const keyFile = arg('--key');
if (!keyFile) usage('--key FILE (the Ed25519 private key, PEM) is required');
let targets;
try {
  const archArg = arg('--arch') ?? hostTarget();
  if (!archArg) usage(`this machine (${process.platform}-${process.arch}) is not a target: pass --arch`);
  targets = parseTargets(archArg);
} catch (err) {
  usage(err.message);
}
const toolPrefix = arg('--cross-prefix');
if (toolPrefix !== undefined && targets.length !== 1) usage('--cross-prefix goes with a single --arch');
const epochText = process.env.SOURCE_DATE_EPOCH;
if (epochText !== undefined && !/^\d+$/.test(epochText)) usage(`SOURCE_DATE_EPOCH="${epochText}" is not a number of seconds`);

// Several targets: one child per target, as many at a time as there are cores (each addon build
// is mostly one long compile), their JSON lines printed in the order asked, the worst exit code kept.
if (targets.length > 1) {
  const results = new Array(targets.length);
  let next = 0;
  const runOne = async () => {
    while (next < targets.length) {
      const i = next++;
      const args = process.argv.slice(2);
      const a = args.indexOf('--arch');
      args.splice(a, 2, '--arch', targets[i]);
      const child = spawn(process.execPath, [fileURLToPath(import.meta.url), ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
      let stdout = '';
      child.stdout.on('data', (d) => (stdout += d));
      results[i] = await new Promise((resolve) => child.on('close', (code) => resolve({ code: code ?? 1, stdout })));
    }
  };
  await Promise.all(Array.from({ length: Math.min(availableParallelism(), targets.length) }, runOne));
  for (const r of results) process.stdout.write(r.stdout);
  const codes = results.map((r) => r.code).filter((c) => c !== 0);
  process.exit(codes.length === 0 ? 0 : codes.includes(3) ? 3 : codes.includes(2) ? 2 : 1);
}

let privateKeyPem;
try {
  privateKeyPem = readFileSync(keyFile, 'utf8');
} catch (err) {
  usage(`cannot read --key ${keyFile}: ${err.code ?? err.message}`);
}
for (const target of targets) {
  try {
    const r = buildRelease({
      repo: fileURLToPath(new URL('..', import.meta.url)),
      outDir: out,
      privateKeyPem,
      keyId,
      version: arg('--version'),
      target,
      toolPrefix,
      sourceDateEpoch: epochText === undefined ? undefined : Number(epochText),
      progress: (line) => console.error(`release: ${line}`),
      boardFirmware: arg('--board-firmware')?.split(','),
    });
    const m = r.manifest;
    console.log(
      JSON.stringify({
        version: r.version,
        target: r.target,
        platform: m.platform,
        arch: m.arch,
        nodeAbi: m.nodeAbi,
        tarball: r.tarball,
        dir: r.dir,
        sha256: r.sha256,
        size: r.size,
        files: Object.keys(m.files).length,
        addons: r.addons.map((a) => ({ package: a.package, how: a.how, files: a.files })),
        signedBy: keyId,
        spoolSchema: m.spoolSchema,
      }),
    );
  } catch (err) {
    console.error(`release: ${target}: ${err.message}`);
    process.exit(err.code === 'toolchain_missing' || err.code === 'node_fetch_failed' ? 3 : err.code === 'usage' ? 2 : 1);
  }
}
