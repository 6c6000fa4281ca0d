/**
 * Offers reach a non-resident updater through the agent: the agent (a real
 * one, on a real Mosquitto) checks each offer's signature and leaves the
 * authentic ones in the inbox folder; `bike-telemetry updater --once` (the
 * real process) checks everything again, handles each offer, deletes it and
 * exits. Under systemd, bike-telemetry-updater.path starts it (test/system/ota.test.ts).
 */
import { mkdirSync, readFileSync, readdirSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { INBOX_MAX_OFFERS, OfferInbox } from '../../src/ota/offer-inbox.js';
import type { Offer } from '../../src/ota/offer.js';
import type { OtaState } from '../../src/ota/state.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { cli } from '../helpers/cli.js';
import { keypair, signOffer } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = 'inbox-bike';
const key = keypair('2026a');
const stranger = keypair('2026a'); // same key id, another key: a forgery
let broker: Broker;
let client: MqttClient;
const status: Array<Record<string, unknown>> = [];
const cleanups: Array<() => Promise<void> | void> = [];

beforeAll(async () => {
  broker = await Broker.start();
  client = mqtt.connect(broker.url, { clientId: `inbox-test-${process.pid}` });
  await new Promise<void>((r) => client.once('connect', () => r()));
  client.on('message', (_t, p) => status.push(JSON.parse(p.toString()) as Record<string, unknown>));
  await client.subscribeAsync(`bike/${DEVICE}/status/ota`, { qos: 1 });
});
afterAll(async () => {
  client?.end(true);
  await broker?.down();
});
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function offer(version: string, patch: Partial<Offer> = {}): Offer {
  return {
    id: `inbox-${version}-${Math.random().toString(36).slice(2, 10)}`,
    deviceClass: 'bike-v1',
    target: DEVICE,
    version,
    url: 'http://127.0.0.1:9/never-fetched.tar.gz',
    size: 1000,
    sha256: 'a'.repeat(64),
    expiresAt: new Date(Date.now() + 3600_000).toISOString(),
    allowDowngrade: false,
    ...patch,
  };
}

/** A data folder, an OTA root whose `current` is 0.2.0, and the key file: what agent and updater share. */
function console_(): { dataDir: string; root: string; keyFile: string; inbox: string } {
  const work = tempDir('inbox-');
  const root = join(work, 'opt');
  mkdirSync(join(root, 'versions'), { recursive: true });
  symlinkSync('versions/0.2.0', join(root, 'current'));
  const keyFile = join(work, 'trusted.pub.pem');
  writeFileSync(keyFile, key.trusted.publicKeyPem);
  const dataDir = join(work, 'data');
  mkdirSync(dataDir);
  return { dataDir, root, keyFile, inbox: join(dataDir, 'ota-offers') };
}

describe('the offer inbox', () => {
  it('offers go in whole (no temporary file inside), oldest first, at most a few; the folder is group-writable for the updater', () => {
    const dir = join(tempDir('inbox-unit-'), 'ota-offers');
    const inbox = new OfferInbox(dir);
    expect(inbox.list()).toEqual([]); // no folder yet: nothing waiting
    const names = Array.from({ length: INBOX_MAX_OFFERS + 2 }, (_, i) =>
      inbox.put(`offer-${i}`, Buffer.from(`{"n":${i}}`), 1_700_000_000_000 + i),
    );
    expect(inbox.list()).toEqual(names.slice(2));
    expect(readdirSync(dir).sort()).toEqual(names.slice(2)); // nothing else in the folder
    expect(readdirSync(join(dir, '..'))).toEqual(['ota-offers']); // the temporary file is gone
    expect(inbox.read(names[2]).toString()).toBe('{"n":2}');
    expect(statSync(dir).mode & 0o7777).toBe(0o770);
    inbox.remove(names[2]);
    expect(inbox.list()).toEqual(names.slice(3));
    expect(() => inbox.remove(names[2])).toThrow(); // already gone: said, not ignored
    // An id is made safe for a file name.
    expect(inbox.put('../../etc/passwd', Buffer.from('{}'), 1_700_000_000_100)).toMatch(/^1700000000100-\d{3}-\.\._\.\._etc_passwd\.json$/);
  });
});

describe('the agent hands signed offers to the updater', () => {
  it('a signed offer (device or fleet topic) lands in the inbox byte for byte; a forged one is refused on status/ota and never does', async () => {
    const c = console_();
    const { agent } = startAgent('/dev/null-no-board', {
      device: { id: DEVICE },
      dataDir: c.dataDir,
      mqtt: { url: broker.url },
      ota: { enabled: true, root: c.root, trustedKeys: [{ id: key.id, publicKeyFile: c.keyFile }] },
    });
    cleanups.push(() => agent.stop());
    const inbox = new OfferInbox(c.inbox);
    // Retained, this once, so it reaches the agent whenever its subscription is made (the cloud's offers are not).
    const good = signOffer(offer('0.3.0'), key);
    await client.publishAsync(`bike/${DEVICE}/ota`, good, { qos: 1, retain: true });
    await waitFor(() => inbox.list().length === 1, 'offer in the inbox', 15_000);
    expect(inbox.read(inbox.list()[0]).toString()).toBe(good);

    const fleet = signOffer(offer('0.3.1', { target: '*' }), key);
    await client.publishAsync('bike/fleet/ota', fleet, { qos: 1 });
    await waitFor(() => inbox.list().length === 2, 'fleet offer in the inbox', 10_000);

    const since = status.length;
    await client.publishAsync(`bike/${DEVICE}/ota`, signOffer(offer('0.3.2'), stranger), { qos: 1 });
    await client.publishAsync(`bike/${DEVICE}/ota`, 'not json', { qos: 1 });
    await waitFor(() => status.length - since >= 2, 'two refusals on status/ota', 10_000);
    expect(status.slice(since).map((s) => s.refused)).toEqual([
      'offer: signature does not verify under key "2026a"',
      'malformed: not JSON',
    ]);
    expect(status[since]).toMatchObject({ phase: 'idle', version: null });
    expect(inbox.list()).toHaveLength(2);
  });
});

describe('updater --once', () => {
  it('handles every offer waiting (checking each again), deletes each, reports on status/ota, remembers signed ids, and exits 0', async () => {
    const c = console_();
    const config = join(c.dataDir, '..', 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        device: { id: DEVICE },
        dataDir: c.dataDir,
        mqtt: { url: broker.url },
        ota: { enabled: true, root: c.root, trustedKeys: [{ id: key.id, publicKeyFile: c.keyFile }] },
      }),
    );
    const inbox = new OfferInbox(c.inbox);
    // What the agent would never pass on, as if written by someone else: the updater trusts nothing in the folder.
    inbox.put('forged', Buffer.from(signOffer(offer('0.3.0'), stranger)), 1_700_000_000_001);
    const same = offer('0.2.0');
    inbox.put(same.id, Buffer.from(signOffer(same, key)), 1_700_000_000_002);
    const elsewhere = offer('0.3.0', { target: 'another-bike' });
    inbox.put(elsewhere.id, Buffer.from(signOffer(elsewhere, key)), 1_700_000_000_003);
    const since = status.length;
    const run = cli(['updater', '--once', '-c', config]);
    const exit = await run.exited;
    expect(exit.code, run.stderr()).toBe(0);
    expect(inbox.list()).toEqual([]);
    const lines = run.json();
    expect(lines.filter((l) => l.msg === 'update offer refused').map((l) => l.reason)).toEqual([
      'offer: signature does not verify under key "2026a"',
      'already running 0.2.0',
      `for device another-bike`,
    ]);
    expect(lines.find((l) => l.msg === 'updater done: no offer waiting')).toMatchObject({ handled: 3 });
    const state = JSON.parse(readFileSync(join(c.root, 'ota/state.json'), 'utf8')) as OtaState;
    expect(state.seenOffers).toEqual(expect.arrayContaining([same.id, elsewhere.id]));
    expect(state.seenOffers).not.toContain('forged');
    await waitFor(() => status.length - since >= 3, 'three reports on status/ota', 10_000);
    expect(status.slice(since).every((s) => s.phase === 'idle')).toBe(true);

    // Nothing waiting: it starts, finds nothing, exits at once.
    const again = cli(['updater', '--once', '-c', config]);
    expect((await again.exited).code).toBe(0);
    expect(again.json().find((l) => l.msg === 'updater done: no offer waiting')).toMatchObject({ handled: 0 });
  });
});
