/**
 * What the updater does with bundles and downloads nobody should send
 * (issue 15: M4, M9 and the OTA lows), through the real Updater, a real HTTP
 * server and real tar files: each is refused with a coded reason before it
 * can touch `current`, and the offered bundle is the one installed.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Offer } from '../../src/ota/offer.js';
import { Updater, type OtaState } from '../../src/ota/updater.js';
import { tempDir } from '../helpers/agent.js';
import { BundleServer, deriveBundle, keypair, type Bundle } from '../helpers/ota.js';

const key = keypair('ota-hard');
let work: string;
let base: string;
let server: BundleServer;
const files = new Map<string, string>();
const bundles = new Map<string, Bundle>();

/** A small signed bundle tree (the updater checks files and signature, not what the program does). */
function baseTree(dir: string): string {
  const b = join(dir, 'base');
  mkdirSync(join(b, 'bin'), { recursive: true });
  writeFileSync(join(b, 'package.json'), JSON.stringify({ name: 'bike-telemetry', version: '0.0.0' }));
  writeFileSync(join(b, 'bin', 'bike-telemetry.js'), '// placeholder\n');
  symlinkSync('bike-telemetry.js', join(b, 'bin', 'alias.js'));
  return b;
}

function offer(b: Bundle, over: Partial<Offer> = {}): Offer {
  return {
    id: `offer-${b.version}-${Math.random().toString(36).slice(2, 10)}`,
    deviceClass: 'bike-v1',
    target: '*',
    version: b.version,
    url: server.url(`/${b.version}.tar.gz`),
    size: b.size,
    sha256: b.sha256,
    expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
    allowDowngrade: false,
    ...over,
  };
}

function updater(
  opts: { maxUnpackedBytes?: number; downloadGraceMs?: number; downloadMinBytesPerS?: number; downloadAttempts?: number } = {},
) {
  const root = tempDir('ota-root-');
  mkdirSync(join(root, 'versions', '1.0.0'), { recursive: true });
  symlinkSync('versions/1.0.0', join(root, 'current'));
  const reports: Array<{ state: OtaState; detail: Record<string, unknown> }> = [];
  const silent = { info: () => {}, warn: () => {}, error: () => {} };
  const u = new Updater({
    root,
    trustedKeys: [key.trusted],
    dataDir: join(root, 'data'),
    socketPath: join(root, 'no-agent.sock'),
    healthDeadlineMs: 300,
    restartCommand: ['true'],
    log: silent,
    report: (state, detail) => reports.push({ state, detail }),
    ...opts,
  });
  return { u, root, reports };
}

beforeAll(async () => {
  work = tempDir('ota-hard-');
  base = baseTree(work);
  const out = join(work, 'bundles');
  mkdirSync(out);
  for (const v of ['1.1.0', '1.2.0']) bundles.set(v, deriveBundle(base, out, v, key));
  // 4 MiB of zeros: a small tarball that unpacks large.
  bundles.set(
    '1.3.0',
    deriveBundle(base, out, '1.3.0', key, (d) => {
      writeFileSync(join(d, 'zeros.bin'), '');
      truncateSync(join(d, 'zeros.bin'), 4 << 20);
    }),
  );
  // M9: the top folder is a symlink to a validly signed folder beside it.
  const evil = join(work, 'evil');
  mkdirSync(evil);
  const real = deriveBundle(base, join(work, 'evil-src'), '1.4.0', key);
  spawnSync('cp', ['-a', real.dir, join(evil, 'elsewhere')]);
  symlinkSync('elsewhere', join(evil, 'bike-telemetry-1.4.0'));
  const evilTar = join(work, '1.4.0.tar.gz');
  spawnSync('tar', ['-C', evil, '-czf', evilTar, 'bike-telemetry-1.4.0', 'elsewhere']);
  const evilBytes = readFileSync(evilTar);
  const { createHash } = await import('node:crypto');
  bundles.set('1.4.0', {
    version: '1.4.0',
    dir: real.dir,
    tarball: evilTar,
    sha256: createHash('sha256').update(evilBytes).digest('hex'),
    size: evilBytes.length,
  });
  for (const [v, b] of bundles) files.set(`/${v}.tar.gz`, b.tarball);
  server = new BundleServer(files);
  await server.start();
});

afterAll(async () => {
  await server?.stop();
});

const last = (u: Updater): OtaState['last'] => u.state.last;

describe('bundles the updater must refuse', () => {
  it('M9: a bundle whose top folder is a symlink is refused before anything is installed', async () => {
    const { u, root } = updater();
    await u.apply(offer(bundles.get('1.4.0')!));
    expect(last(u)).toMatchObject({
      result: 'failed',
      reason: expect.stringMatching(/bike-telemetry-1\.4\.0 in the bundle is not a folder/),
    });
    expect(readlinkSync(join(root, 'current'))).toBe('versions/1.0.0');
    expect(existsSync(join(root, 'versions', '1.4.0'))).toBe(false);
    expect(existsSync(join(root, 'versions', 'elsewhere'))).toBe(false);
  });

  it('a bundle that unpacks beyond the limit is refused from its listing, before unpacking', async () => {
    const { u, root } = updater({ maxUnpackedBytes: 1 << 20 });
    await u.apply(offer(bundles.get('1.3.0')!));
    expect(last(u)).toMatchObject({
      result: 'failed',
      reason: expect.stringMatching(/unpacks to \d+ bytes, more than the 1048576 allowed/),
    });
    expect(existsSync(join(root, 'versions', '.staging-1.3.0'))).toBe(false);
  });

  it('a download longer than offered is refused at once (one request, no retries)', async () => {
    const { u } = updater();
    const b = bundles.get('1.1.0')!;
    const before = server.requests.length;
    await u.apply(offer(b, { size: b.size - 100 }));
    expect(last(u)).toMatchObject({ result: 'failed', reason: expect.stringMatching(/larger than the offered/) });
    expect(server.requests.length - before).toBe(1);
  });

  it('a download that trickles is cut by its deadline instead of stalling the updater', async () => {
    // One byte every 200 ms, never finishing.
    const slow: Server = createServer((_req, res) => {
      res.writeHead(200, { 'content-length': 8192 });
      const t = setInterval(() => res.write('x'), 200);
      res.on('close', () => clearInterval(t));
    });
    await new Promise<void>((r) => slow.listen(0, '127.0.0.1', () => r()));
    // Deadline: 500 ms grace + 8192 B at 4096 B/s = 2.5 s.
    const { u } = updater({ downloadGraceMs: 500, downloadMinBytesPerS: 4096, downloadAttempts: 1 });
    const b = bundles.get('1.1.0')!;
    const started = Date.now();
    await u.apply(offer(b, { url: `http://127.0.0.1:${(slow.address() as AddressInfo).port}/x`, size: 8192 }));
    const took = Date.now() - started;
    slow.closeAllConnections();
    slow.close();
    expect(last(u)).toMatchObject({ result: 'failed', reason: expect.stringMatching(/download slower than 4096 B\/s/) });
    expect(took).toBeGreaterThanOrEqual(2400);
    expect(u.isBusy).toBe(false);
  });
});

describe('M4: an offer for a version already on disk', () => {
  it('installs the offered bundle (verified), not the folder that was there', async () => {
    const { u, root } = updater();
    const b = bundles.get('1.2.0')!;
    // Left from before: a folder for 1.2.0 with planted content and a stale "verified" marker.
    mkdirSync(join(root, 'versions', '1.2.0', 'bin'), { recursive: true });
    writeFileSync(join(root, 'versions', '1.2.0', 'manifest.json'), '{}');
    writeFileSync(join(root, 'versions', '1.2.0', 'bin', 'planted.js'), 'planted');
    writeFileSync(join(root, 'ota', 'verified-1.2.0'), 'stale');
    await u.apply(offer(b));
    // No agent answers here, so the check fails and it rolls back; what matters is what was installed.
    expect(existsSync(join(root, 'versions', '1.2.0', 'bin', 'planted.js'))).toBe(false);
    expect(readFileSync(join(root, 'versions', '1.2.0', 'manifest.json'), 'utf8')).toBe(readFileSync(join(b.dir, 'manifest.json'), 'utf8'));
    expect(readlinkSync(join(root, 'current'))).toBe('versions/1.0.0');
  });
});
