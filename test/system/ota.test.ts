/**
 * Over-the-air updates under a real systemd (systemd-nspawn), through the
 * shipped units: the agent takes a signed offer from the broker and leaves it
 * in the inbox, bike-telemetry-updater.path starts the updater, which
 * restarts the agent with a real `systemctl restart`, rolls back a version
 * that fails its health check, and exits; no updater process runs between
 * offers. The console killed inside each phase boots with `current` a
 * complete, verified version and the agent running.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { verifyBundle } from '../../src/ota/manifest.js';
import type { Offer } from '../../src/ota/offer.js';
import { SCHEMA_VERSION } from '../../src/spool/schema.js';
import { Broker } from '../helpers/broker.js';
import { BundleServer, deriveBundle, signOffer, type Bundle, type Key } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';
import { PtyBoard } from './helpers/board.js';
import { Container } from './helpers/container.js';
import { consoleImage, imageKeyFiles } from './helpers/image.js';

const DEVICE = 'bike-ota-1';
const UNIT = 'bike-telemetry.service';
const UPDATER = 'bike-telemetry-updater.service';
const OPT = 'opt/bike-telemetry';
let broker: Broker;
let board: PtyBoard;
let box: Container;
let server: BundleServer;
let status: MqttClient;
const otaStatus: Array<Record<string, unknown>> = [];
const bundles = new Map<string, Bundle>();
let key: Key;
let offers = 0;
const BROKEN = ['0.1.2', '0.1.7'];
/**
 * Fault injection for the kill tests, as an operator's drop-in (the shipped
 * unit is untouched): the updater pauses 2 s after recording each phase, so a
 * kill lands inside the phase it is aimed at.
 */
const STEP_DELAY_DROPIN = '[Service]\nEnvironment=BIKE_TELEMETRY_OTA_STEP_DELAY_MS=2000\n';

function config(): Record<string, unknown> {
  return {
    device: { id: DEVICE },
    serial: { path: '/dev/flywheel' },
    dataDir: '/var/lib/bike-telemetry',
    log: { records: 'none' },
    mqtt: { url: broker.url, backoffBaseMs: 200, backoffCapMs: 2000 },
    ota: { enabled: true, trustedKeys: [{ id: key.id, publicKeyFile: `/etc/bike-telemetry/keys/${key.id}.pub.pem` }], healthDeadlineS: 30 },
  };
}

function offer(version: string): Offer {
  const b = bundles.get(version)!;
  return {
    id: `sys-${version}-${++offers}`,
    deviceClass: 'bike-v1',
    target: DEVICE,
    version,
    url: server.url(`/${version}.tar.gz`),
    size: b.size,
    sha256: b.sha256,
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    allowDowngrade: false,
  };
}

let since = 0;
async function publish(version: string): Promise<void> {
  await waitAgentListening();
  since = otaStatus.length;
  await status.publishAsync(`bike/${DEVICE}/ota`, signOffer(offer(version), key), { qos: 1 });
}

function last(s: Record<string, unknown>): { version?: string; result?: string; reason?: string } {
  return s.last ?? {};
}

async function waitResult(version: string, result: string, timeoutMs = 180_000): Promise<Record<string, unknown>> {
  let found: Record<string, unknown> | undefined;
  await waitFor(
    () => {
      found = otaStatus.slice(since).find((s) => s.phase === 'idle' && last(s).version === version && last(s).result === result);
      if (found) return true;
      // Or the updater's own record (a kill can cut the status message that would have said it).
      try {
        const disk = JSON.parse(box.read(`${OPT}/ota/state.json`)) as Record<string, unknown>;
        if (disk.phase === 'idle' && last(disk).version === version && last(disk).result === result) found = disk;
      } catch {
        // being replaced right now
      }
      return found !== undefined;
    },
    `update ${version} ${result} (seen: ${JSON.stringify(otaStatus.slice(since).map((s) => [s.phase, last(s).result]))})`,
    timeoutMs,
    100,
  );
  return found!;
}

/**
 * The agent running now has subscribed to the offer topics (offers are not
 * retained: one published before would be missed). Each update restarts the
 * agent, so this is asked before every offer.
 */
async function waitAgentListening(): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const { MainPID } = await box.show(UNIT, ['MainPID']);
    if (MainPID && MainPID !== '0') {
      const own = (await box.run(['journalctl', '--no-pager', '-o', 'cat', `_PID=${MainPID}`])).stdout;
      if (own.split('\n').some((l) => l.includes('"msg":"subscribed"') && l.includes(`bike/${DEVICE}/ota`))) return;
    }
    if (Date.now() > deadline) throw new Error(`the agent never subscribed to offers:\n${(await box.journal(UNIT)).slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** No updater process: the unit is inactive (it ran, did its work and exited). */
async function waitUpdaterGone(): Promise<void> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const s = await box.show(UPDATER, ['ActiveState', 'Result']);
    if (s.ActiveState === 'inactive') return expect(s.Result).toBe('success');
    if (Date.now() > deadline)
      throw new Error(`the updater never exited: ${JSON.stringify(s)}\n${(await box.journal(UPDATER)).slice(-3000)}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/**
 * `current` names a complete version whose signed manifest verifies, whenever
 * it is looked at; and the agent comes to run that version (after a kill in
 * the rollback, once the updater has finished going back).
 */
async function assertConsistent(): Promise<string> {
  const deadline = Date.now() + 120_000;
  for (;;) {
    const target = box.readlink(`${OPT}/current`);
    expect(target).toMatch(/^versions\/\d+\.\d+\.\d+$/);
    const manifest = verifyBundle(join(box.merged, OPT, target), [key.trusted]);
    const s = await box.show(UNIT, ['ActiveState', 'SubState']);
    if (s.ActiveState === 'active' && s.SubState === 'running') {
      const r = await box.run(['bike-telemetry', 'status', '--json']);
      const running = r.status === 0 || r.status === 4 ? (JSON.parse(r.stdout) as { agentVersion: string }).agentVersion : '';
      if (running === manifest.version && box.readlink(`${OPT}/current`) === target) return running;
    }
    if (Date.now() > deadline) throw new Error(`the agent never ran current (${target}): ${JSON.stringify(s)}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  const image = consoleImage();
  const files = imageKeyFiles(image);
  const publicKeyPem = readFileSync(files.publicKeyPem, 'utf8');
  key = { id: image.keyId, privateKeyPem: readFileSync(files.privateKeyPem, 'utf8'), trusted: { id: image.keyId, publicKeyPem } };
  const out = mkdtempSync(join(tmpdir(), 'bike-ota-bundles-'));
  // Good versions for each update; 0.1.2 and 0.1.7 crash at start (a broken build, correctly signed).
  for (const v of ['0.1.1', '0.1.3', '0.1.4', '0.1.5', '0.1.6'])
    bundles.set(v, deriveBundle(files.bundle, out, v, key, undefined, SCHEMA_VERSION));
  for (const v of BROKEN) {
    bundles.set(
      v,
      deriveBundle(
        files.bundle,
        out,
        v,
        key,
        (dir) => {
          const main = join(dir, 'dist/cli/main.js');
          writeFileSync(main, `throw new Error('a broken build');\n${readFileSync(main, 'utf8')}`);
        },
        SCHEMA_VERSION,
      ),
    );
  }
  server = new BundleServer(new Map([...bundles.values()].map((b) => [`/${b.version}.tar.gz`, b.tarball])));
  await server.start();
  broker = await Broker.start();
  status = mqtt.connect(broker.url, { clientId: `ota-status-${process.pid}` });
  status.on('message', (_t, p) => otaStatus.push(JSON.parse(p.toString()) as Record<string, unknown>));
  await new Promise<void>((r) => status.once('connect', () => r()));
  await status.subscribeAsync(`bike/${DEVICE}/status/ota`, { qos: 1 });
  board = await PtyBoard.start(11);
  box = await Container.create({ name: 'bike-ota', image, config: {}, board: board.device });
  box.writeConfig(config());
  await box.boot();
  await box.waitActive(UNIT);
  // At boot the updater ran once (nothing to finish, no offer) and exited; only its path unit waits.
  await waitUpdaterGone();
  expect((await box.show('bike-telemetry-updater.path', ['ActiveState'])).ActiveState).toBe('active');
});

afterAll(async () => {
  await box?.destroy();
  await board?.stop();
  await server?.stop();
  status?.end(true);
  await broker?.down();
});

describe('over-the-air updates under systemd (container)', () => {
  it('A -> B through the real updater unit and a real systemctl restart', async () => {
    const before = await box.show(UNIT, ['MainPID']);
    await publish('0.1.1');
    const done = await waitResult('0.1.1', 'updated');
    expect(done.from).toBe('0.1.0');
    expect(box.readlink(`${OPT}/current`)).toBe('versions/0.1.1');
    expect(box.readlink(`${OPT}/previous`)).toBe('versions/0.1.0');
    expect(box.readlink(`${OPT}/stable`)).toBe('versions/0.1.1');
    const after = await box.show(UNIT, ['MainPID', 'NRestarts']);
    expect(after.MainPID).not.toBe(before.MainPID);
    // A restart asked for, not a crash restarted by systemd.
    expect(after.NRestarts).toBe('0');
    expect(await assertConsistent()).toBe('0.1.1');
    expect(await box.journal(UNIT)).toMatch(/Stopping bike-telemetry\.service/);
    // The offer went through the agent and the inbox; the updater exited after it, leaving the inbox empty.
    expect(await box.journal(UNIT)).toMatch(/update offer handed to the updater/);
    await waitUpdaterGone();
    expect((await box.sh('ls -A /var/lib/bike-telemetry/ota-offers')).stdout.trim()).toBe('');
  });

  it('a forged offer is refused by the agent and never starts the updater', async () => {
    await waitAgentListening();
    const starts = (await box.journal(UPDATER)).match(/Starting bike-telemetry-updater\.service/g)?.length ?? 0;
    since = otaStatus.length;
    const forged = { ...offer('0.1.3'), id: 'sys-forged-1' };
    const signed = JSON.parse(signOffer(forged, key)) as { offer: Offer; keyId: string; sig: string };
    signed.offer.url = server.url('/evil.tar.gz'); // changed after signing
    await status.publishAsync(`bike/${DEVICE}/ota`, JSON.stringify(signed), { qos: 1 });
    await waitFor(() => otaStatus.slice(since).some((s) => typeof s.refused === 'string'), 'refusal on status/ota', 30_000);
    expect(String(otaStatus.slice(since).find((s) => typeof s.refused === 'string')!.refused)).toMatch(/signature/i);
    await new Promise((r) => setTimeout(r, 2000));
    expect((await box.journal(UPDATER)).match(/Starting bike-telemetry-updater\.service/g)?.length ?? 0).toBe(starts);
    expect((await box.show(UPDATER, ['ActiveState'])).ActiveState).toBe('inactive');
  });

  it('a B that crashes at start is rolled back by the real units (start limit or not)', async () => {
    await publish('0.1.2');
    const r = await waitResult('0.1.2', 'rolled-back');
    console.log(JSON.stringify({ measure: 'rollback', reason: last(r).reason }));
    expect(box.readlink(`${OPT}/current`)).toBe('versions/0.1.1');
    expect(await assertConsistent()).toBe('0.1.1');
  });

  const phases: Array<{ phase: string; version: string }> = [
    { phase: 'downloading', version: '0.1.3' },
    { phase: 'staging', version: '0.1.4' },
    { phase: 'switching', version: '0.1.5' },
    { phase: 'checking', version: '0.1.6' },
    { phase: 'rolling-back', version: '0.1.7' },
  ];
  it('(the updater pauses after each recorded phase from here on)', async () => {
    mkdirSync(join(box.merged, 'etc/systemd/system/bike-telemetry-updater.service.d'), { recursive: true });
    writeFileSync(join(box.merged, 'etc/systemd/system/bike-telemetry-updater.service.d/90-test-step-delay.conf'), STEP_DELAY_DROPIN);
    await box.run(['systemctl', 'daemon-reload']);
    // Taken by the next start of the updater (by its path unit, at the next offer).
    expect((await box.show(UPDATER, ['Environment'])).Environment).toMatch(/BIKE_TELEMETRY_OTA_STEP_DELAY_MS=2000/);
  });

  for (const { phase, version } of phases) {
    it(`killed while ${phase}: boots with current complete and verified, the agent running, and the update resumed`, async () => {
      server.bytesPerS = phase === 'downloading' ? 200_000 : null;
      await publish(version);
      await waitFor(() => otaStatus.slice(since).some((s) => s.phase === phase), `phase ${phase}`, 180_000, 20);
      await box.kill();
      const onDisk = JSON.parse(box.read(`${OPT}/ota/state.json`)) as { phase: string };
      server.bytesPerS = null;
      const currentAtCut = box.readlink(`${OPT}/current`);
      await box.boot();
      console.log(JSON.stringify({ measure: 'killed in OTA phase', phase, stateOnDisk: onDisk.phase, currentAtCut }));
      const running = await assertConsistent();
      console.log(JSON.stringify({ measure: 'after the boot', phase, agentRuns: running }));
      // The updater resumes and ends it: the good version updated, the broken one rolled back.
      const expected = BROKEN.includes(version) ? 'rolled-back' : 'updated';
      await waitResult(version, expected);
      await waitUpdaterGone();
      expect(await assertConsistent()).toBe(expected === 'updated' ? version : box.readlink(`${OPT}/previous`).replace('versions/', ''));
    });
  }
});
