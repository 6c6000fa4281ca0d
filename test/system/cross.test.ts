/**
 * Releases for the console's CPU: `scripts/release --arch all` builds the
 * x64, arm64 and armv7 bundles in one command; each ARM bundle then runs on
 * this machine under qemu-user with the official Node.js for its CPU:
 * selftest, a simulated ride over a real pty through serialport, uploads to
 * a real Mosquitto (acknowledged, then deleted from the spool), records kept
 * in the SQLite spool while the broker is down and delivered after, and the
 * zero-GC hot path. A wrong toolchain fails the build on the ELF check.
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentHealth } from '../../src/contracts/health.js';
import { fetchAgentHealth } from '../../src/api/client.js';
import { prepareAddons } from '../../src/ota/addons.js';
import { checkElfFiles } from '../../src/ota/elf.js';
import { verifyBundle } from '../../src/ota/manifest.js';
import { nodeDist } from '../../src/ota/node-dist.js';
import { TARGETS, type TargetName } from '../../src/ota/targets.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import type { Child } from '../helpers/cli.js';
import { Consumer } from '../helpers/consumer.js';
import { keypair } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';
import { runCommand } from './helpers/command.js';
import { runBundleCli, runEmulated, startBundleCli, stop } from './helpers/emulated.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const HOTPATH = fileURLToPath(new URL('./fixtures/hotpath-check.mjs', import.meta.url));
const HOTPATH_FRAMES = 300_000;
const CHECKOUT_DIST = fileURLToPath(new URL('../../dist', import.meta.url));
const key = keypair('2026-cross');
const EPOCH = 1_790_000_000;

interface Built {
  target: TargetName;
  platform: string;
  arch: string;
  nodeAbi: number;
  tarball: string;
  sha256: string;
  addons: Array<{ package: string; how: string; files: string[] }>;
}

let work: string;
const built = new Map<TargetName, Built>();
/** Each bundle unpacked from its tarball, as a console's updater would have it. */
const unpacked = new Map<TargetName, string>();
let releaseMs = 0;

beforeAll(async () => {
  work = tempDir('cross-');
  writeFileSync(join(work, 'release.pem'), key.privateKeyPem, { mode: 0o600 });
  const r = await runCommand(
    process.execPath,
    [
      join(REPO, 'scripts/release.js'),
      '--arch',
      'all',
      '--key',
      join(work, 'release.pem'),
      '--key-id',
      key.id,
      '--out',
      join(work, 'release'),
    ],
    {
      cwd: REPO,
      env: { ...process.env, SOURCE_DATE_EPOCH: String(EPOCH) },
      timeoutMs: 900_000,
    },
  );
  releaseMs = r.ms;
  if (r.status !== 0) throw new Error(`scripts/release --arch all exited ${r.status}:\n${r.stderr.slice(-3000)}`);
  for (const line of r.stdout.trim().split('\n')) {
    const b = JSON.parse(line) as Built;
    built.set(b.target, b);
  }
  for (const [target, b] of built) {
    const dir = join(work, 'unpacked', target);
    mkdirSync(dir, { recursive: true });
    const tar = spawnSync('tar', ['-xzf', b.tarball, '-C', dir], { encoding: 'utf8' });
    if (tar.status !== 0) throw new Error(`unpacking ${b.tarball}: ${tar.stderr}`);
    unpacked.set(target, join(dir, readdirSync(dir)[0]));
  }
  console.log(
    JSON.stringify({
      measured: 'release --arch all',
      ms: releaseMs,
      sizes: Object.fromEntries([...built].map(([t, b]) => [t, statSync(b.tarball).size])),
    }),
  );
}, 900_000);

describe('release bundles for three CPUs', () => {
  it('one command builds x64, arm64 and armv7 bundles, each signed, for its CPU and Node ABI, every native file of its CPU', () => {
    expect([...built.keys()]).toEqual(['x64', 'arm64', 'armv7']);
    const want = { x64: ['x64', 115], arm64: ['arm64', 115], armv7: ['arm', 115] } as const;
    for (const [target, b] of built) {
      const [arch, abi] = want[target];
      expect(b).toMatchObject({ platform: 'linux', arch, nodeAbi: abi });
      expect(b.tarball.endsWith(`-linux-${target}.tar.gz`)).toBe(true);
      const dir = unpacked.get(target)!;
      const m = verifyBundle(dir, [key.trusted]);
      expect(m).toMatchObject({ platform: 'linux', arch, nodeAbi: abi, signedBy: key.id, createdAt: new Date(EPOCH * 1000).toISOString() });
      // Every ELF file in the bundle is for the target CPU (the release checked it too; here from the tarball).
      const elf = checkElfFiles(dir, TARGETS[target].elf);
      expect(elf.length).toBeGreaterThanOrEqual(4);
      if (target !== 'x64') {
        // Cross-built from source: the four addons, nothing prebuilt.
        expect(b.addons.map((a) => [a.package, a.how])).toEqual([
          ['node_modules/@serialport/bindings-cpp', 'cross-built'],
          ['node_modules/better-sqlite3', 'cross-built'],
          ['node_modules/cbor-extract', 'cross-built'],
          ['node_modules/unix-dgram', 'cross-built'],
        ]);
        expect(elf.sort()).toEqual(b.addons.flatMap((a) => a.files).sort());
      }
    }
  });

  it("a wrong toolchain (this machine's compiler for an arm64 bundle) fails the build at the ELF check, naming the addon, and leaves no bundle", async () => {
    const out = join(work, 'wrong');
    const r = await runCommand(
      process.execPath,
      [
        join(REPO, 'scripts/release.js'),
        '--arch',
        'arm64',
        '--cross-prefix',
        'x86_64-linux-gnu-',
        '--key',
        join(work, 'release.pem'),
        '--key-id',
        key.id,
        '--out',
        out,
      ],
      {
        cwd: REPO,
        timeoutMs: 300_000,
      },
    );
    expect(r.status).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toMatch(
      /release: arm64: node_modules\/@serialport\/bindings-cpp\/build\/Release\/bindings\.node is 64-bit x86-64, the bundle is for 64-bit AArch64/,
    );
    expect(existsSync(join(out, 'bike-telemetry-0.1.0-linux-arm64.tar.gz'))).toBe(false);
  }, 300_000);
});

describe('cross-built addons', () => {
  it('are the same bytes wherever they are built (no build path inside), so a cross-built bundle is reproducible too', () => {
    const sums: string[] = [];
    for (const place of ['a', 'b/deeper/still']) {
      const dir = join(tempDir('cross-repro-'), place);
      // unix-dgram and what its binding.gyp needs (nan), as a staged bundle holds them.
      for (const pkg of ['unix-dgram', 'nan', 'bindings'])
        cpSync(join(REPO, 'node_modules', pkg), join(dir, 'node_modules', pkg), { recursive: true });
      const reports = prepareAddons(dir, { target: TARGETS.arm64, cross: true, nodeDir: nodeDist(TARGETS.arm64).dir, nodeAbi: 115 });
      expect(reports.map((r) => r.files)).toEqual([['node_modules/unix-dgram/build/Release/unix_dgram.node']]);
      sums.push(
        createHash('sha256')
          .update(readFileSync(join(dir, 'node_modules/unix-dgram/build/Release/unix_dgram.node')))
          .digest('hex'),
      );
    }
    expect(sums[0]).toBe(sums[1]);
  }, 300_000);
});

const hotpath = new Map<string, { engineOnly: { framesPerS: number }; withSpool: { framesPerS: number } }>();

describe.each(['arm64', 'armv7'] as const)('the %s bundle under qemu-user', (target) => {
  let broker: Broker;
  let consumer: Consumer;
  let dir: string;
  let config: string;
  let socketPath: string;
  const device = `bike-${target}`;

  beforeAll(async () => {
    dir = tempDir(`cross-${target}-`);
    mkdirSync(join(dir, 'broker'), { recursive: true });
    broker = await Broker.start(Broker.persistence(join(dir, 'broker')));
    consumer = await Consumer.connect(broker.url, `cross-consumer-${target}`);
    socketPath = join(dir, 'api.sock');
    config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        device: { id: device },
        dataDir: join(dir, 'data'),
        api: { socketPath },
        mqtt: { url: broker.url, backoffBaseMs: 200, backoffCapMs: 1000, pollMs: 200 },
        log: { records: 'none', statsIntervalS: 0 },
      }),
    );
  }, 60_000);

  afterAll(async () => {
    await consumer?.close();
    await broker?.down();
  });

  const health = (): Promise<AgentHealth | null> => fetchAgentHealth(socketPath);
  const bundle = (): string => unpacked.get(target)!;
  const delivered = (): number => [...consumer.seen.keys()].length;
  const started = (c: Child): boolean => c.json().some((l) => l.msg === 'agent started');
  /** Records committed to the spool and not yet acknowledged by the broker. */
  const kept = (h: AgentHealth | null): number | null => (h?.spool.state === 'open' ? h.spool.records : null);

  it('runs as the target CPU', async () => {
    const r = await runEmulated(target, '-p', [
      '`${process.arch} ${process.versions.modules} ${process.config.variables.arm_version ?? ""}`.trim()',
    ]);
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(target === 'arm64' ? 'arm64 115' : 'arm 115 7');
    const v = await runBundleCli(target, bundle(), ['--version']);
    expect(v.status).toBe(0);
    expect(v.stdout.trim()).toBe('0.1.0');
  });

  it('rides on the simulator over a real pty through serialport, uploads to Mosquitto (acknowledged, then gone from the spool), and passes selftest', async () => {
    const agent = startBundleCli(target, bundle(), ['run', '--simulate', '--config', config]);
    try {
      let h: AgentHealth | null = null;
      await waitFor(() => started(agent) || agent.proc.exitCode !== null, 'agent started', 60_000, 100);
      expect(agent.proc.exitCode).toBeNull();
      const deadline = Date.now() + 60_000;
      while (Date.now() < deadline) {
        h = await health();
        if (h && h.link.state === 'open' && h.upload.state === 'connected' && delivered() >= 100) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(h?.link.state).toBe('open');
      expect(h?.protocol.frames).toBeGreaterThan(100);
      expect(Object.values(h!.protocol.errors).every((n) => n === 0)).toBe(true);
      expect(delivered()).toBeGreaterThanOrEqual(100);
      // Acknowledged records are deleted from the spool: the backlog stays small while connected.
      let acked = false;
      for (let i = 0; i < 40 && !acked; i++) {
        const now = await health();
        const up = now?.upload as { counters?: { recordsAcked?: number } } | undefined;
        acked = (up?.counters?.recordsAcked ?? 0) >= 100 && (kept(now) ?? Infinity) < 60;
        if (!acked) await new Promise((r) => setTimeout(r, 250));
      }
      expect(acked).toBe(true);
      expect(consumer.invalid).toEqual([]);
      expect(consumer.reused).toEqual([]);

      const st = await runBundleCli(target, bundle(), ['selftest', '--json', '--config', config]);
      expect(st.status, st.stderr).toBe(0);
      const result = JSON.parse(st.stdout) as { ok: boolean; checks: Array<{ name: string; result: string; detail: string }> };
      expect(result.ok).toBe(true);
      expect(result.checks.map((c) => [c.name, c.result])).toEqual([
        ['config', 'pass'],
        ['calibration', 'pass'],
        ['agent', 'pass'],
        ['spool', 'pass'],
        ['serial', 'pass'],
        ['broker', 'pass'],
      ]);
      expect(result.checks.find((c) => c.name === 'spool')!.detail).toMatch(/^integrity ok/);
    } finally {
      expect(await stop(agent)).toBe(0);
    }
  }, 240_000);

  it('with the broker down, records are kept in the SQLite spool (read back by `spool export`), then delivered when it returns, each number once', async () => {
    const before = Math.max(0, ...consumer.seen.keys());
    await broker.down('SIGTERM');
    const offline = startBundleCli(target, bundle(), ['run', '--simulate', '--config', config]);
    try {
      await waitFor(() => started(offline) || offline.proc.exitCode !== null, 'agent started', 60_000, 100);
      let h: AgentHealth | null = null;
      for (let i = 0; i < 80; i++) {
        h = await health();
        if ((kept(h) ?? 0) >= 30) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      expect(kept(h)).toBeGreaterThanOrEqual(30);
    } finally {
      expect(await stop(offline)).toBe(0);
    }
    // Read by the bundle's own CLI from the file, the agent stopped.
    const exported = await runBundleCli(target, bundle(), ['spool', 'export', '--format', 'json', '--config', config]);
    expect(exported.status, exported.stderr).toBe(0);
    const seqs = exported.stdout
      .trim()
      .split('\n')
      .map((l) => (JSON.parse(l) as { seq: number }).seq);
    expect(seqs.length).toBeGreaterThanOrEqual(30);
    expect(seqs[0]).toBeGreaterThan(before);
    // In order, each number once (the first run's unacknowledged tail, then this run's, numbered above it).
    expect(seqs.every((s, i) => i === 0 || s > seqs[i - 1])).toBe(true);

    await broker.up();
    const online = startBundleCli(target, bundle(), ['run', '--simulate', '--config', config]);
    try {
      await waitFor(() => seqs.every((s) => consumer.seen.has(s)), 'the kept records at the broker', 90_000, 100);
    } finally {
      expect(await stop(online)).toBe(0);
    }
    expect(consumer.reused).toEqual([]);
    expect(consumer.invalid).toEqual([]);
  }, 300_000);

  it('the hot path causes zero GC events under emulation, alone and with the spool as sink', async () => {
    const r = await runEmulated(
      target,
      HOTPATH,
      [bundle(), String(HOTPATH_FRAMES), tempDir(`cross-gc-${target}-`), CHECKOUT_DIST],
      300_000,
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      arch: string;
      engineOnly: { records: number; gcEvents: number; heapDeltaBytes: number; decodeErrors: number; framesPerS: number };
      withSpool: { records: number; gcEvents: number; heapDeltaBytes: number; framesPerS: number };
      committed: number;
    };
    expect(out.arch).toBe(TARGETS[target].arch);
    for (const run of [out.engineOnly, out.withSpool]) {
      // 50 Hz samples -> one record per 5 frames.
      expect(Math.abs(run.records - HOTPATH_FRAMES / 5)).toBeLessThanOrEqual(1);
      expect(run.gcEvents).toBe(0);
      expect(run.heapDeltaBytes).toBeLessThan(1024 * 1024);
    }
    expect(out.engineOnly.decodeErrors).toBe(0);
    // The records held in memory were committed to SQLite afterwards.
    expect(out.committed).toBe(1000);
    hotpath.set(target, out);
  }, 300_000);
});

describe("the same hot path, this machine's CPU under the same emulator", () => {
  it('x64 Node under qemu-x86_64: zero GC events; the ratios to it are printed for the note', async () => {
    const x64 = nodeDist(TARGETS.x64);
    const r = await runCommand(
      TARGETS.x64.qemu.binary,
      [x64.binary, HOTPATH, unpacked.get('x64')!, String(HOTPATH_FRAMES), tempDir('cross-gc-x64-'), CHECKOUT_DIST],
      { timeoutMs: 300_000 },
    );
    expect(r.status, r.stderr).toBe(0);
    const out = JSON.parse(r.stdout) as {
      engineOnly: { gcEvents: number; framesPerS: number };
      withSpool: { gcEvents: number; framesPerS: number };
    };
    expect(out.engineOnly.gcEvents).toBe(0);
    expect(out.withSpool.gcEvents).toBe(0);
    const ratio = (t: string, k: 'engineOnly' | 'withSpool'): number | null => {
      const h = hotpath.get(t);
      return h ? Math.round((h[k].framesPerS / out[k].framesPerS) * 100) / 100 : null;
    };
    console.log(
      JSON.stringify({
        measured: 'hotpath under qemu-user',
        framesPerS: {
          x64: out.engineOnly.framesPerS,
          arm64: hotpath.get('arm64')?.engineOnly.framesPerS,
          armv7: hotpath.get('armv7')?.engineOnly.framesPerS,
        },
        ratioToX64: { arm64: ratio('arm64', 'engineOnly'), armv7: ratio('armv7', 'engineOnly') },
        withSpoolRatioToX64: { arm64: ratio('arm64', 'withSpool'), armv7: ratio('armv7', 'withSpool') },
      }),
    );
  }, 300_000);
});
