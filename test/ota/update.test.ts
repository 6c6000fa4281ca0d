/**
 * Over-the-air updates end to end: a bike running version A from
 * <root>/current under a supervisor (Restart=always, as systemd), riding on a
 * simulator the whole time and uploading to Mosquitto; signed offers over
 * MQTT; bundles over HTTP; the updater as its own process.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AgentHealth } from '../../src/contracts/health.js';
import { fetchAgentHealth } from '../../src/api/client.js';
import type { Offer } from '../../src/ota/offer.js';
import { buildRelease } from '../../src/ota/release.js';
import type { OtaState } from '../../src/ota/updater.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { BIN, cli, type Child } from '../helpers/cli.js';
import { Consumer } from '../helpers/consumer.js';
import { BundleServer, deriveBundle, keypair, signOffer, Supervisor, type Bundle } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const key = keypair('2026a');
const DEVICE = 'ota-bike';

let work: string;
let root: string;
let config: string;
let socketPath: string;
let broker: Broker;
let consumer: Consumer;
let statusClient: MqttClient;
const otaStatus: Array<Record<string, unknown>> = [];
let server: BundleServer;
let sim: Child;
let supervisor: Supervisor;
let updater: ChildProcess | null = null;
const bundles = new Map<string, Bundle>();

function startUpdater(stepDelayMs = 0): ChildProcess {
  const p = spawn(process.execPath, [BIN, 'updater', '-c', config], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, BIKE_TELEMETRY_OTA_STEP_DELAY_MS: String(stepDelayMs) },
  });
  p.stdout.on('data', () => {});
  p.stderr.on('data', () => {});
  updater = p;
  return p;
}

async function stopUpdater(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  const p = updater;
  updater = null;
  if (p && p.exitCode === null) {
    p.kill(signal);
    await new Promise((r) => p.once('exit', r));
  }
}

const health = (): Promise<AgentHealth | null> => fetchAgentHealth(socketPath);

const otaState = (): OtaState => JSON.parse(readFileSync(join(root, 'ota/state.json'), 'utf8')) as OtaState;

function offer(b: Bundle, patch: Partial<Offer> = {}): Offer {
  return {
    id: `offer-${b.version}-${Math.random().toString(36).slice(2, 10)}`,
    deviceClass: 'bike-v1',
    target: DEVICE,
    version: b.version,
    url: server.url(`/${b.version}.tar.gz`),
    size: b.size,
    sha256: b.sha256,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    allowDowngrade: false,
    ...patch,
  };
}

/** Status messages from here on belong to the last offer published. */
let sinceOffer = 0;

async function publishOffer(o: Offer, k = key): Promise<void> {
  sinceOffer = otaStatus.length;
  await statusClient.publishAsync(`bike/${DEVICE}/ota`, signOffer(o, k), { qos: 1 });
}

async function waitResult(version: string, result: string, timeoutMs = 60_000): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await waitFor(
    () => {
      found = otaStatus
        .slice(sinceOffer)
        .find(
          (s) =>
            (s.last as { version?: string; result?: string } | null)?.version === version &&
            (s.last as { result?: string }).result === result &&
            s.phase === 'idle',
        );
      return found !== undefined;
    },
    `update ${version} ${result}`,
    timeoutMs,
    50,
  );
  return found!;
}

/** The agent answers, runs `version`, and is healthy. */
async function waitHealthyOn(version: string, timeoutMs = 30_000): Promise<AgentHealth> {
  let h: AgentHealth | null = null;
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    h = await health();
    if (h?.agentVersion === version && h.healthy && h.upload.state === 'connected') return h;
    await sleep(200);
  }
  throw new Error(`agent not healthy on ${version}: ${JSON.stringify(h?.problems ?? 'no answer')} version ${h?.agentVersion}`);
}

beforeAll(async () => {
  work = tempDir('ota-');
  const out = join(work, 'bundles');
  mkdirSync(out);
  const base = buildRelease({ repo: REPO, outDir: out, privateKeyPem: key.privateKeyPem, keyId: key.id, version: '9.0.0' });
  bundles.set('9.0.0', { version: '9.0.0', dir: base.dir, tarball: base.tarball, sha256: base.sha256, size: base.size });
  const derive = (v: string, mutate?: (dir: string) => void) => bundles.set(v, deriveBundle(base.dir, out, v, key, mutate));
  derive('9.1.0');
  derive('9.2.0', (dir) => writeFileSync(join(dir, 'dist/cli/main.js'), "throw new Error('a broken build: crashes at start');\n"));
  derive('9.3.0', (dir) => {
    const f = join(dir, 'dist/agent/agent.js');
    const text = readFileSync(f, 'utf8');
    if (!text.includes('this.link.start();')) throw new Error('agent.js changed: update the broken-build recipe');
    writeFileSync(f, text.replace('this.link.start();', '/* a broken build: the serial link never opens */'));
  });
  for (const v of ['9.4.0', '9.5.0', '9.6.0', '9.7.0', '9.8.0']) derive(v);
  // An old build that only reads spool schema 1.
  bundles.set('9.0.5', deriveBundle(base.dir, out, '9.0.5', key, undefined, 1));
  // A build for another CPU (its manifest says so; the addons inside are this machine's, never loaded).
  bundles.set('9.9.0', deriveBundle(base.dir, out, '9.9.0', key, undefined, 2, { arch: 'arm64' }));

  server = new BundleServer(new Map([...bundles.values()].map((b) => [`/${b.version}.tar.gz`, b.tarball])));
  await server.start();
  broker = await Broker.start();
  consumer = await Consumer.connect(broker.url);
  statusClient = await mqtt.connectAsync(broker.url, { clientId: 'ota-test-cloud', protocolVersion: 5 });
  statusClient.on('message', (_t, p) => otaStatus.push(JSON.parse(p.toString()) as Record<string, unknown>));
  await statusClient.subscribeAsync(`bike/${DEVICE}/status/ota`, { qos: 1 });

  // The bike: version A installed under <root>, the board simulator on a pty for the whole test.
  root = join(work, 'opt');
  mkdirSync(join(root, 'versions'), { recursive: true });
  cpSync(base.dir, join(root, 'versions/9.0.0'), { recursive: true, verbatimSymlinks: true });
  symlinkSync('versions/9.0.0', join(root, 'current'));
  sim = cli(['simulate', '--dir', tempDir('ota-sim-')]);
  await waitFor(() => sim.stdout.length > 0, 'simulator', 10_000);
  socketPath = join(work, 'api.sock');
  writeFileSync(join(work, 'trusted.pub.pem'), key.trusted.publicKeyPem);
  const pidFile = join(work, 'agent.pid');
  const restartCommand = ['sh', '-c', `kill -TERM $(cat ${pidFile})`];
  config = join(work, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      device: { id: DEVICE },
      serial: { path: sim.stdout[0].trim() },
      dataDir: join(work, 'data'),
      api: { socketPath },
      mqtt: { url: broker.url, backoffBaseMs: 200, backoffCapMs: 1000, pollMs: 200 },
      log: { records: 'none', statsIntervalS: 0 },
      ota: {
        enabled: true,
        root,
        trustedKeys: [{ id: key.id, publicKeyFile: join(work, 'trusted.pub.pem') }],
        healthDeadlineS: 10,
        restartCommand,
        resetCommand: ['sh', '-c', `echo reset >> ${join(work, 'resets.log')}`],
      },
    }),
  );
  supervisor = new Supervisor(root, config, pidFile);
  supervisor.start();
  await waitHealthyOn('9.0.0');
  startUpdater();
  await waitFor(() => otaStatus.length > 0 || existsSync(join(root, 'ota')), 'updater up', 10_000);
  await sleep(500);
}, 120_000);

afterAll(async () => {
  await stopUpdater();
  await supervisor?.stop();
  sim?.proc.kill('SIGTERM');
  await sim?.exited;
  statusClient?.end(true);
  consumer?.client.end(true);
  await server?.stop();
  await broker?.down();
});

describe('over-the-air update', () => {
  it('A to B while riding: downloaded, verified, switched, healthy; every record reaches the broker', async () => {
    const startsBefore = supervisor.starts;
    await sleep(3000); // riding on A
    await publishOffer(offer(bundles.get('9.1.0')!));
    const done = await waitResult('9.1.0', 'updated');
    expect(done.from).toBe('9.0.0');
    expect(readlinkSync(join(root, 'current'))).toBe('versions/9.1.0');
    expect(readlinkSync(join(root, 'previous'))).toBe('versions/9.0.0');
    // An install from before `stable` existed got it at the updater's start (9.0.0); a healthy update moves it.
    expect(readlinkSync(join(root, 'stable'))).toBe('versions/9.1.0');
    // The reset command ran before the restart (it clears a unit's start limit under systemd).
    expect(readFileSync(join(work, 'resets.log'), 'utf8').trim().split('\n').length).toBeGreaterThanOrEqual(1);
    const h = await waitHealthyOn('9.1.0');
    expect(h.link.state).toBe('open');
    expect(supervisor.starts).toBe(startsBefore + 1);
    // The phases, in order, on the status topic.
    const phases = otaStatus.map((s) => s.phase).filter((p, i, a) => p !== a[i - 1]);
    expect(phases.join(' ')).toMatch(/downloading staging switching checking idle/);
    // No record lost: the spool drains, and what arrived is one unbroken run of sequence numbers per agent process.
    let backlog = -1;
    for (let i = 0; i < 50 && backlog !== 0; i++) {
      const hh = await health();
      backlog = hh && hh.spool.state === 'open' ? hh.spool.records : -1;
      await sleep(200);
    }
    expect(backlog).toBe(0);
    const seqs = [...consumer.seen.keys()].sort((a, b) => a - b);
    const runs: Array<[number, number]> = [];
    for (const s of seqs) {
      const last = runs[runs.length - 1];
      if (last && s === last[1] + 1) last[1] = s;
      else runs.push([s, s]);
    }
    expect(runs.length).toBeLessThanOrEqual(supervisor.starts);
    expect(seqs.length).toBeGreaterThan(30);
    expect(consumer.invalid).toEqual([]);
    expect(consumer.duplicatesAreWholePackets()).toBe(true);
  });

  it('a B that crashes at start is rolled back automatically, reported, and not retried until a new offer', async () => {
    await publishOffer(offer(bundles.get('9.2.0')!));
    const r = await waitResult('9.2.0', 'rolled-back');
    expect(String((r.last as { reason: string }).reason)).toMatch(/not healthy within 10 s/);
    expect(readlinkSync(join(root, 'current'))).toBe('versions/9.1.0');
    // A rolled-back version never becomes the one the updater runs from.
    expect(readlinkSync(join(root, 'stable'))).toBe('versions/9.1.0');
    await waitHealthyOn('9.1.0');
    expect(otaState().failedVersions).toContain('9.2.0');
  });

  it('a B that starts but never gets healthy (its serial link never opens) is rolled back', async () => {
    await publishOffer(offer(bundles.get('9.3.0')!));
    const r = await waitResult('9.3.0', 'rolled-back');
    expect(String((r.last as { reason: string }).reason)).toMatch(/serial link \w+ \(it was open before\)/);
    expect(readlinkSync(join(root, 'current'))).toBe('versions/9.1.0');
    await waitHealthyOn('9.1.0');
  });

  it('offers that are expired, replayed, for another class or device, a downgrade, or badly signed are refused with a reason', async () => {
    const b = bundles.get('9.4.0')!;
    const cases: Array<[Offer, RegExp, ReturnType<typeof keypair>?]> = [
      [offer(b, { expiresAt: new Date(Date.now() - 1000).toISOString() }), /expired at/],
      [offer(b, { deviceClass: 'treadmill-v2' }), /for device class treadmill-v2/],
      [offer(b, { target: 'some-other-bike' }), /for device some-other-bike/],
      [offer(bundles.get('9.0.0')!), /downgrade from 9.1.0 to 9.0.0 without allowDowngrade/],
      [offer(b), /signed with key "2026a", which this device does not trust|does not verify/, keypair('2026a')],
    ];
    for (const [o, why, k] of cases) {
      const n = otaStatus.length;
      await publishOffer(o, k ?? key);
      // A signed offer's refusal is recorded as `last`; an unverified one is only reported (`refused`), never remembered.
      await waitFor(
        () =>
          otaStatus
            .slice(n)
            .some(
              (s) =>
                why.test(String((s.refused as string | null | undefined) ?? '')) ||
                why.test(String((s.last as { reason?: string } | null)?.reason ?? '')),
            ),
        `refusal ${why}`,
        10_000,
      );
      // M3: a forgery's id is never remembered, so it can neither block a real offer with that id nor evict real ids.
      if (k) expect(otaState().seenOffers).not.toContain(o.id);
    }
    // Replayed: the first offer of this suite, sent again.
    const seen = otaState().seenOffers[0];
    const n = otaStatus.length;
    await publishOffer(
      offer(bundles.get('9.1.0')!, { id: seen, version: '9.4.0', url: server.url('/9.4.0.tar.gz'), size: b.size, sha256: b.sha256 }),
    );
    await waitFor(
      () => otaStatus.slice(n).some((s) => /replayed: offer/.test(String((s.refused as string | null | undefined) ?? ''))),
      'replay refused',
      10_000,
    );
    expect(readlinkSync(join(root, 'current'))).toBe('versions/9.1.0');
  });

  it('a bundle for another CPU or Node ABI is refused: before downloading when the offer says so, before unpacking when only its manifest does', async () => {
    const b = bundles.get('9.9.0')!;
    const running = readlinkSync(join(root, 'current'));
    const fetched = (): number => server.requests.filter((r) => r.path === '/9.9.0.tar.gz').length;
    const here = `linux-${process.arch} \\(Node ABI ${process.versions.modules}\\)`;
    for (const [patch, why] of [
      [
        { platform: 'linux', arch: 'arm64', nodeAbi: Number(process.versions.modules) },
        new RegExp(`incompatible: built for linux-arm64 \\(Node ABI \\d+\\), this console is ${here}: another CPU$`),
      ],
      [
        { nodeAbi: 999 },
        new RegExp(`incompatible: built for linux-${process.arch} \\(Node ABI 999\\), this console is ${here}: another Node ABI$`),
      ],
    ] as const) {
      await publishOffer(offer(b, patch));
      await waitFor(
        () => otaStatus.slice(sinceOffer).some((s) => why.test(String((s.last as { reason?: string } | null)?.reason ?? ''))),
        `refusal ${why}`,
        10_000,
      );
      expect(fetched()).toBe(0);
    }
    // An offer that does not say: downloaded, then refused on the signed manifest alone.
    await publishOffer(offer(b));
    const r = await waitResult('9.9.0', 'failed');
    expect(fetched()).toBeGreaterThan(0);
    expect(String((r.last as { reason: string }).reason)).toMatch(
      new RegExp(
        `^version 9\\.9\\.0 refused before unpacking: built for linux-arm64 \\(Node ABI \\d+\\), this console is ${here}: another CPU$`,
      ),
    );
    expect(existsSync(join(root, 'versions/9.9.0'))).toBe(false);
    expect(existsSync(join(root, 'versions/.staging-9.9.0/bike-telemetry-9.9.0/dist'))).toBe(false);
    expect(readlinkSync(join(root, 'current'))).toBe(running);
  });

  it('an interrupted download resumes from where it stopped (HTTP Range)', async () => {
    const b = bundles.get('9.4.0')!;
    const before = server.requests.length;
    server.cutFirstAfterBytes = Math.floor(b.size / 3);
    await stopUpdater();
    startUpdater();
    await sleep(1000);
    await publishOffer(offer(b));
    await waitResult('9.4.0', 'updated', 90_000);
    // The connection was cut a third of the way: the next request asked for the rest only.
    const reqs = server.requests.slice(before).filter((r) => r.path === '/9.4.0.tar.gz');
    expect(reqs.length).toBe(2);
    expect(reqs[0].range).toBeNull();
    expect(reqs[1].range).toBe(`bytes=${Math.floor(b.size / 3)}-`);
    await waitHealthyOn('9.4.0');
  });

  for (const [phase, version] of [
    ['downloading', '9.5.0'],
    ['staging', '9.6.0'],
    ['switching', '9.7.0'],
    ['checking', '9.8.0'],
  ] as const) {
    it(`kill -9 of the updater while ${phase}: the agent keeps running a complete version, and the update completes when the updater restarts`, async () => {
      await stopUpdater();
      startUpdater(1500);
      await sleep(1000);
      const from = readlinkSync(join(root, 'current'));
      await publishOffer(offer(bundles.get(version)!));
      await waitFor(
        () => existsSync(join(root, 'ota/state.json')) && otaState().phase === phase && otaState().offer?.version === version,
        `phase ${phase}`,
        30_000,
        20,
      );
      await stopUpdater('SIGKILL');
      // Power cut here: current is a complete, signed version (the old one or the new one) and the agent runs.
      const cur = readlinkSync(join(root, 'current'));
      expect([from, `versions/${version}`]).toContain(cur);
      expect(existsSync(join(root, cur, 'manifest.json'))).toBe(true);
      expect(existsSync(join(root, cur, 'bin/bike-telemetry.js'))).toBe(true);
      await waitFor(() => supervisor.proc !== null, 'agent process');
      startUpdater();
      await waitResult(version, 'updated', 90_000);
      expect(readlinkSync(join(root, 'current'))).toBe(`versions/${version}`);
      await waitHealthyOn(version);
    });
  }

  it('a signed downgrade is installed; one to a version that cannot read the spool schema is refused before anything is touched', async () => {
    const n = otaStatus.length;
    await publishOffer(offer(bundles.get('9.0.5')!, { allowDowngrade: true }));
    const r = await waitResult('9.0.5', 'failed');
    expect(String((r.last as { reason: string }).reason)).toMatch(/version 9.0.5 reads spool schema up to 1, the spool is at 2/);
    expect(otaStatus.slice(n).some((s) => s.phase === 'switching')).toBe(false);
    expect(readlinkSync(join(root, 'current'))).toBe('versions/9.8.0');
    expect(existsSync(join(root, 'versions/9.0.5'))).toBe(false);

    await publishOffer(offer(bundles.get('9.1.0')!, { allowDowngrade: true }));
    await waitResult('9.1.0', 'updated');
    await waitHealthyOn('9.1.0');
  });

  it('bike-telemetry status shows the update state', async () => {
    const st = cli(['status', '-c', config, '--json']);
    await st.exited;
    const j = JSON.parse(st.stdout.join('\n')) as { update: OtaState; agentVersion: string };
    expect(j.agentVersion).toBe('9.1.0');
    expect(j.update).toMatchObject({ phase: 'idle', last: { version: '9.1.0', result: 'updated' } });
    expect(j.update.failedVersions).toEqual(expect.arrayContaining(['9.2.0', '9.3.0', '9.0.5']));
    const human = cli(['status', '-c', config]);
    await human.exited;
    expect(human.stdout.join('\n')).toMatch(/Update\s+idle · last: updated 9.1.0/);
  });
});
