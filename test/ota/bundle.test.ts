/** Release bundles: build, sign, verify; tampering and key handling. */
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { appendFileSync, readFileSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { buildManifest, compareVersions, signBundle, verifyBundle } from '../../src/ota/manifest.js';
import type { TrustedKey } from '../../src/signing/signature.js';
import { buildImage } from '../../src/firmware/image.js';
import { buildRelease, type Release } from '../../src/ota/release.js';
import { hostTarget } from '../../src/ota/targets.js';
import { tempDir } from '../helpers/agent.js';
import { waitFor } from '../helpers/wait.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));

function keypair(id: string): { id: string; privateKeyPem: string; trusted: TrustedKey } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    id,
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    trusted: { id, publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString() },
  };
}

const k1 = keypair('2026a');
const k2 = keypair('2026b');
let rel: Release;

let boardImage: Buffer;

beforeAll(() => {
  // A signed flywheel-board image shipped in the bundle (scripts/release --board-firmware).
  const fw = join(tempDir('board-fw-'), 'flywheel-1.2.0.fwimg');
  boardImage = buildImage(Buffer.alloc(1000, 7), { boardModel: 1, version: '1.2.0' }, k2.privateKeyPem, k2.id);
  writeFileSync(fw, boardImage);
  rel = buildRelease({
    repo: REPO,
    outDir: tempDir('release-'),
    privateKeyPem: k1.privateKeyPem,
    keyId: k1.id,
    version: '9.8.7',
    boardFirmware: [fw],
  });
}, 60_000);

/** Run fn with a file changed, then put it back (the bundle is 60 MB: not copied per case). */
function tampered<T>(file: string, change: (path: string) => void, fn: () => T): T {
  const path = join(rel.dir, file);
  const before = readFileSync(path);
  change(path);
  try {
    return fn();
  } finally {
    writeFileSync(path, before);
  }
}

describe('release bundle', () => {
  it('is self-contained: compiled JS, production node_modules with native addons, a manifest with version, spool schema and every file hashed', () => {
    const v = verifyBundle(rel.dir, [k1.trusted]);
    expect(v).toMatchObject({
      version: '9.8.7',
      name: 'bike-telemetry',
      platform: process.platform,
      arch: process.arch,
      nodeAbi: Number(process.versions.modules),
      spoolSchema: 2,
      signedBy: '2026a',
    });
    const files = Object.keys(v.files);
    expect(files).toContain('dist/cli/main.js');
    expect(files).toContain('node_modules/better-sqlite3/build/Release/better_sqlite3.node');
    expect(files).toContain('node_modules/unix-dgram/build/Release/unix_dgram.node');
    expect(files).toContain('firmware-protocol/calibration/peloton-v1.json');
    expect(files).toContain('systemd/bike-telemetry.service');
    // Board images ride in the signed bundle, where the installed agent looks for them (firmware/agent-wiring.ts).
    expect(files).toContain('board-firmware/flywheel-1.2.0.fwimg');
    expect(readFileSync(join(rel.dir, 'board-firmware/flywheel-1.2.0.fwimg')).equals(boardImage)).toBe(true);
    // Production only, and only what runs on a bike: no benchmarks, fleet simulator, cloud consumer or generators.
    const devOnly = (JSON.parse(readFileSync('package.json', 'utf8')) as { devOnlyModules: string[] }).devOnlyModules;
    expect(devOnly.length).toBeGreaterThan(0);
    expect(files.filter((f) => devOnly.some((d) => f === d || f === `${d}.map` || f.startsWith(`${d}/`)))).toEqual([]);
    expect(files).toContain('dist/sim/board.js'); // `run --simulate` is a technician's check too
    expect(files.some((f) => f.startsWith('node_modules/vitest/'))).toBe(false);
    expect(files.some((f) => f.startsWith('node_modules/typescript/'))).toBe(false);
    expect(rel.sha256).toBe(createHash('sha256').update(readFileSync(rel.tarball)).digest('hex'));
    // Native code for this CPU only: no prebuilds for other systems, no musl builds, no build leftovers or test addons.
    expect(
      files.filter(
        (f) =>
          new RegExp(`/prebuilds/(?!linux-${process.arch}/)`).test(f) ||
          /musl.*\.node$/.test(f) ||
          new RegExp(`abi(?!${process.versions.modules})\\d+.*\\.node$`).test(f) ||
          /obj\.target|test_extension\.node/.test(f),
      ),
    ).toEqual([]);
    expect(rel.addons.map((a) => [a.package, a.how])).toEqual([
      [`node_modules/@cbor-extract/cbor-extract-linux-${process.arch}`, 'prebuilt'],
      ['node_modules/@serialport/bindings-cpp', 'prebuilt'],
      ['node_modules/better-sqlite3', 'checkout'],
      ['node_modules/unix-dgram', 'checkout'],
    ]);
    expect(rel.tarball.endsWith(`bike-telemetry-9.8.7-linux-${hostTarget()}.tar.gz`)).toBe(true);
  });

  it('is reproducible: the same checkout and SOURCE_DATE_EPOCH give the same bytes, whatever folder it is built in', () => {
    const build = () =>
      buildRelease({
        repo: REPO,
        outDir: tempDir('release-repro-'),
        privateKeyPem: k1.privateKeyPem,
        keyId: k1.id,
        version: '9.8.6',
        sourceDateEpoch: 1_790_000_000,
      });
    const a = build();
    const b = build();
    expect(a.sha256).toBe(b.sha256);
    expect(a.manifest.createdAt).toBe('2026-09-21T14:13:20.000Z');
    // The tar's entries: sorted, owned by 0/0, dated at the epoch.
    const list = spawnSync('tar', ['-tvzf', a.tarball, '--numeric-owner'], { encoding: 'utf8' }).stdout.trim().split('\n');
    expect(list.every((l) => / 0\/0 /.test(l) && l.includes('2026-09-21'))).toBe(true);
  }, 60_000);

  it('the bundled agent runs from the bundle alone: its version, and a simulated ride recorded', async () => {
    const bin = join(rel.dir, 'bin/bike-telemetry.js');
    const dir = tempDir('bundle-run-');
    writeFileSync(
      join(dir, 'config.json'),
      JSON.stringify({
        dataDir: join(dir, 'data'),
        mqtt: { enabled: false },
        log: { records: 'all' },
        api: { socketPath: join(dir, 'api.sock') },
      }),
    );
    const { spawn } = await import('node:child_process');
    const p = spawn(process.execPath, [bin, 'run', '--simulate', '-c', join(dir, 'config.json')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    try {
      await waitFor(() => (out.match(/"msg":"record"/g) ?? []).length >= 10, 'records from the bundled agent', 15_000);
      expect(out).toMatch(/"msg":"spool open"/);
    } finally {
      p.kill('SIGTERM');
    }
    const version = await new Promise<string>((resolve) => {
      const q = spawn(process.execPath, [bin, '--version']);
      let s = '';
      q.stdout.on('data', (d: Buffer) => (s += d.toString()));
      q.on('exit', () => resolve(s.trim()));
    });
    expect(version).toBe('9.8.7');
    // A developer tool asked of a bundle says it is not there (exit 6), instead of a module-not-found stack.
    const devTool = spawnSync(process.execPath, [bin, 'fleet-sim', '--bikes', '1'], { encoding: 'utf8' });
    expect(devTool.status).toBe(6);
    expect(devTool.stderr).toMatch(/fleet-sim is a developer tool and is not in a device bundle/);
  });

  it('a tampered file, an extra file, a tampered manifest, or no signature is refused, naming the problem', () => {
    expect(() =>
      tampered(
        'dist/version.js',
        (p) => appendFileSync(p, '\n// hi'),
        () => verifyBundle(rel.dir, [k1.trusted]),
      ),
    ).toThrow(/dist\/version.js does not match the manifest/);
    const extra = join(rel.dir, 'dist/evil.js');
    writeFileSync(extra, 'process.exit(1)');
    try {
      expect(() => verifyBundle(rel.dir, [k1.trusted])).toThrow(/files not in the manifest: dist\/evil.js/);
    } finally {
      unlinkSync(extra);
    }
    expect(() =>
      tampered(
        'manifest.json',
        (p) => writeFileSync(p, readFileSync(p, 'utf8').replace('"9.8.7"', '"9.8.8"')),
        () => verifyBundle(rel.dir, [k1.trusted]),
      ),
    ).toThrow(/manifest.json: signature does not verify under key "2026a"/);
    expect(() =>
      tampered(
        'manifest.sig',
        (p) => unlinkSync(p),
        () => verifyBundle(rel.dir, [k1.trusted]),
      ),
    ).toThrow(/unsigned bundle/);
    expect(verifyBundle(rel.dir, [k1.trusted]).version).toBe('9.8.7');
  });

  it('keys: a device trusting another key refuses it; a key with the right id but other material refuses it; rotation accepts old and new', () => {
    expect(() => verifyBundle(rel.dir, [k2.trusted])).toThrow(
      /signed with key "2026a", which this device does not trust \(trusted: 2026b\)/,
    );
    const impostor = keypair('2026a');
    expect(() => verifyBundle(rel.dir, [impostor.trusted])).toThrow(/signature does not verify under key "2026a"/);
    // Rotation: devices trust both while bundles move to the new key.
    expect(verifyBundle(rel.dir, [k2.trusted, k1.trusted]).signedBy).toBe('2026a');
    const dir = tempDir('rotated-');
    writeFileSync(join(dir, 'a.txt'), 'hello');
    signBundle(
      dir,
      buildManifest(dir, { version: '1.0.0', platform: 'linux', arch: 'x64', spoolSchema: 2, minSpoolSchema: 0 }),
      k2.privateKeyPem,
      k2.id,
    );
    expect(verifyBundle(dir, [k2.trusted, k1.trusted]).signedBy).toBe('2026b');
    expect(() => verifyBundle(dir, [k1.trusted])).toThrow(/does not trust/);
    rmSync(dir, { recursive: true });
  });

  it('versions compare numerically', () => {
    expect(compareVersions('1.10.0', '1.9.3')).toBe(1);
    expect(compareVersions('1.2.3', '1.2.3')).toBe(0);
    expect(compareVersions('0.9.0', '1.0.0')).toBe(-1);
    // SemVer precedence (semver.org, item 11): a pre-release is below its release, identifiers by kind then value,
    // text in ASCII order (not the locale's: 'B' < 'a'), build metadata ignored.
    const ordered = [
      '1.0.0-alpha',
      '1.0.0-alpha.1',
      '1.0.0-alpha.beta',
      '1.0.0-beta',
      '1.0.0-beta.2',
      '1.0.0-beta.11',
      '1.0.0-rc.1',
      '1.0.0',
    ];
    for (let i = 0; i + 1 < ordered.length; i++) {
      expect(compareVersions(ordered[i], ordered[i + 1]), `${ordered[i]} < ${ordered[i + 1]}`).toBe(-1);
      expect(compareVersions(ordered[i + 1], ordered[i]), `${ordered[i + 1]} > ${ordered[i]}`).toBe(1);
    }
    expect(compareVersions('1.0.0-rc.1', '1.0.0')).toBe(-1);
    expect(compareVersions('1.0.0-B', '1.0.0-a')).toBe(-1);
    expect(compareVersions('1.2.3+build.7', '1.2.3+build.9')).toBe(0);
    expect(compareVersions('1.2', '1.2.0')).toBe(0);
  });
});
