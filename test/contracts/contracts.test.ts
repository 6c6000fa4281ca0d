/**
 * The published contracts (firmware-protocol/contracts/*.schema.json) are
 * current, versioned honestly, and true of real traffic: an agent process
 * with the simulator, a real Mosquitto, every API method, every stream's
 * events, and the bike's MQTT status, command-result and OTA-status messages,
 * each validated against the published JSON Schema (not the zod source).
 */
import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import { API_ERROR_CODES, EVENTS, METHODS } from '../../src/contracts/api.js';
import { contractText, publishedContracts, versionProblems, versionsFile, type VersionEntry } from '../../src/contracts/publish.js';
import { canonicalJson } from '../../src/signing/signature.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { cli } from '../helpers/cli.js';
import { contractChecker } from '../helpers/contracts.js';
import { keypair } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const DIR = join(import.meta.dirname, '..', '..', 'firmware-protocol', 'contracts');
const read = (f: string): Record<string, unknown> => JSON.parse(readFileSync(join(DIR, f), 'utf8'));

describe('published contracts', () => {
  it('are the files generated from src/contracts (npm run contracts), with their versions recorded', () => {
    const contracts = publishedContracts();
    for (const c of contracts)
      expect(readFileSync(join(DIR, c.file), 'utf8'), `${c.file} is stale: npm run contracts`).toBe(contractText(c));
    expect(read('versions.json')).toEqual(versionsFile(contracts));
    expect(versionProblems(contracts, read('versions.json') as Record<string, VersionEntry>)).toEqual([]);
  });

  it('a document that changes under the same version is refused; a raised revision is not', () => {
    const [health] = publishedContracts();
    const recorded = versionsFile([health]);
    const changed = { ...health, schema: { ...health.schema, description: 'a new field' } };
    expect(versionProblems([changed], recorded)).toEqual([expect.stringMatching(/^health.schema.json changed but its version/)]);
    expect(versionProblems([{ ...changed, revision: health.revision + 1 }], recorded)).toEqual([]);
    expect(versionProblems([{ ...health, revision: health.revision - 1 }], recorded)).toEqual([expect.stringMatching(/older than/)]);
  });

  it('name every method, event and error code the agent has', () => {
    const api = read('api.schema.json') as { definitions: Record<string, unknown> };
    for (const m of METHODS) {
      expect(api.definitions[`params.${m}`], m).toBeDefined();
      expect(api.definitions[`result.${m}`], m).toBeDefined();
    }
    for (const e of Object.keys(EVENTS)) expect(api.definitions[`event.${e}`], e).toBeDefined();
    expect(JSON.stringify(api.definitions.error)).toContain(JSON.stringify([...API_ERROR_CODES]));
  });
});

describe('real traffic against the published contracts', () => {
  let broker: Broker;
  let agent: AgentProcess;
  let watcher: mqtt.MqttClient;
  const messages: Array<{ topic: string; payload: string }> = [];
  const check = contractChecker();
  const fleetKey = keypair('fleet-1');
  const DEVICE = 'bike-contract-1';

  beforeAll(async () => {
    broker = await Broker.start();
    const keys = tempDir('contract-keys-');
    writeFileSync(join(keys, 'fleet.pem'), fleetKey.trusted.publicKeyPem);
    agent = await startAgentProcess({
      device: { id: DEVICE },
      mqtt: { enabled: true, url: broker.url },
      commands: { trustedKeys: [{ id: 'fleet-1', publicKeyFile: join(keys, 'fleet.pem') }] },
      ota: { enabled: true, trustedKeys: [{ id: 'fleet-1', publicKeyFile: join(keys, 'fleet.pem') }] },
    });
    watcher = mqtt.connect(broker.url, { clientId: 'contract-watcher' });
    watcher.on('message', (topic, payload) => messages.push({ topic, payload: payload.toString() }));
    await new Promise<void>((resolve) => watcher.on('connect', () => resolve()));
    await watcher.subscribeAsync(`bike/${DEVICE}/#`);
  }, 60_000);

  afterAll(async () => {
    await watcher?.endAsync();
    await agent?.stop();
    await broker?.down();
  });

  it('every method of the local API answers as api.schema.json says, and every event on every stream', async () => {
    const c = await ApiClient.connect(agent.socketPath);
    const events: Array<{ event: string; data: unknown }> = [];
    c.onEvent((event, data) => events.push({ event, data }));
    try {
      await waitFor(() => events.some((e) => e.event === 'hello'), 'hello event');
      const results: Array<[string, unknown]> = [];
      const call = async (method: (typeof METHODS)[number], params: Record<string, unknown> = {}): Promise<unknown> => {
        const r = await c.requestRaw(method, params);
        results.push([method, r]);
        return r;
      };
      await call('hello');
      await call('subscribe', { streams: ['live', 'summary', 'health', 'rides', 'log'] });
      await waitFor(() => events.some((e) => e.event === 'summary') && events.some((e) => e.event === 'health'), 'summary and health');
      await call('health');
      await call('ride.current');
      const started = (await call('ride.start', { member: 'member-contract', classId: 'class-1' })) as { started: { ride: string } };
      await call('ride.start', {}); // replaces the first: `ended` is a summary this time
      await call('ride.current');
      await call('live.history', { seconds: 5 });
      await call('capture.start', { seconds: 0.5 });
      await waitFor(() => events.some((e) => e.event === 'capture.end'), 'capture end', 5_000);
      await call('ride.end');
      await call('rides.list', { limit: 5 });
      await call('rides.get', { ride: started.started.ride });
      await call('member.purge', { member: 'member-contract' });
      await call('log.recent');
      await call('board.info');
      await call('board.upload', { offset: 0, data: Buffer.from('not an image').toString('base64') });
      await call('unsubscribe', { streams: ['summary'] });
      for (const [m, r] of results) check(`api.schema.json#result.${m}`, r);
      const called = new Set(results.map(([m]) => m));
      // board.update takes a real image (test/firmware/board-update.test.ts); capture.stop answers when one runs.
      expect(METHODS.filter((m) => !called.has(m)).sort()).toEqual(['board.update', 'capture.stop']);

      // Refusals: the error shape, each with its code.
      const refusals: Array<[string, Record<string, unknown>, string]> = [
        ['board.update', { sha256: '0'.repeat(64) }, 'bad_request'],
        ['capture.stop', {}, 'not_found'],
        ['ride.end', {}, 'no_ride'],
        ['rides.get', { ride: 'nope' }, 'not_found'],
        ['no.such.method', {}, 'unknown_method'],
        ['rides.list', { limit: 'ten' }, 'bad_request'],
      ];
      const raw = await rawReplies(
        agent.socketPath,
        refusals.map(([method, params]) => ({ method, params })),
      );
      raw.forEach((reply, i) => {
        check('api.schema.json#error', reply);
        expect((reply as { error: { code: string } }).error.code).toBe(refusals[i][2]);
      });

      // A refused fleet command is logged as a warning: the `log` stream carries it.
      await watcher.publishAsync(`bike/${DEVICE}/cmd`, 'not a command', { qos: 1 });
      await waitFor(() => events.some((e) => e.event === 'ride') && events.some((e) => e.event === 'log'), 'ride and log events');
      const seen = new Set<string>();
      for (const e of events) {
        check(`api.schema.json#event.${e.event}`, e.data);
        seen.add(e.event);
      }
      // `board` events come with a board update (checked in the board-update test's traffic).
      expect([...seen].sort()).toEqual(['capture', 'capture.end', 'health', 'hello', 'live', 'log', 'ride', 'summary']);
    } finally {
      c.close();
    }
  }, 60_000);

  it('`status --json` is the health document plus `running` and the OTA `update` state', async () => {
    const status = cli(['status', '--json', '--socket', agent.socketPath]);
    expect((await status.exited).code).toBe(0);
    const { running, update, ...health } = JSON.parse(status.stdout.join('\n')) as Record<string, unknown>;
    expect(running).toBe(true);
    expect(update).toBeDefined();
    check('health.schema.json', health);
  });

  it('the bike’s MQTT messages are as mqtt.schema.json says: status, command results, OTA status', async () => {
    const key = createPrivateKey(fleetKey.privateKeyPem);
    const expiresAt = new Date(Date.now() + 600_000).toISOString();
    const command = (cmd: Record<string, unknown>): string =>
      JSON.stringify({ cmd, keyId: 'fleet-1', sig: sign(null, Buffer.from(canonicalJson(cmd)), key).toString('base64') });
    const publish = (topic: string, payload: string): Promise<unknown> => watcher.publishAsync(topic, payload, { qos: 1 });
    const cmdTopic = `bike/${DEVICE}/cmd`;
    await publish(cmdTopic, command({ id: 'contract-cmd-1', to: DEVICE, action: 'upload.now', params: {}, expiresAt }));
    await publish(
      cmdTopic,
      command({ id: 'contract-cmd-2', to: DEVICE, action: 'config.set', params: { key: 'log.level', value: 'info' }, expiresAt }),
    );
    await publish(cmdTopic, 'not json');
    await publish(cmdTopic, command({ id: 'contract-cmd-3', to: 'another-bike', action: 'upload.now', params: {}, expiresAt }));
    // A forged offer: refused by the agent before the updater sees it, said on status/ota.
    await publish(`bike/${DEVICE}/ota`, JSON.stringify({ offer: { id: 'offer-forged-1' }, keyId: 'fleet-1', sig: 'AAAA' }));

    const on = (suffix: string) => messages.filter((m) => m.topic === `bike/${DEVICE}/${suffix}`);
    await waitFor(() => on('cmd/result').length >= 5 && on('status/ota').length >= 1 && on('status').length >= 1, 'mqtt messages', 15_000);
    for (const m of on('status')) check('mqtt.schema.json#DeviceStatus', JSON.parse(m.payload));
    const results = on('cmd/result').map((m) => JSON.parse(m.payload) as { id: string | null; ok: boolean });
    for (const r of results) check('mqtt.schema.json#CommandResult', r);
    // Matched by id (docs/fleet.md): a refusal is published at once, a command that runs after it has run, so
    // a refusal that arrived in the same read as an earlier command can be answered first. The two unreadable
    // ones (id null) are the API test's malformed command and 'not json'.
    expect(results.map((r) => `${r.id}:${r.ok}`).sort()).toEqual(
      ['null:false', 'contract-cmd-1:true', 'contract-cmd-2:true', 'null:false', 'contract-cmd-3:false'].sort(),
    );
    for (const m of on('status/ota')) check('mqtt.schema.json#OtaStatusMessage', JSON.parse(m.payload));
  }, 30_000);
});

/** Send request lines on a fresh connection; the reply lines as sent (events skipped), in order. */
async function rawReplies(socketPath: string, requests: Array<{ method: string; params: Record<string, unknown> }>): Promise<unknown[]> {
  const sock = createConnection(socketPath);
  const replies: unknown[] = [];
  let buf = '';
  sock.setEncoding('utf8');
  sock.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const msg = JSON.parse(buf.slice(0, nl)) as { event?: string };
      buf = buf.slice(nl + 1);
      if (!msg.event) replies.push(msg);
    }
  });
  await new Promise<void>((resolve, reject) => sock.once('connect', resolve).once('error', reject));
  requests.forEach((r, i) => sock.write(`${JSON.stringify({ id: i + 1, method: r.method, params: r.params })}\n`));
  await waitFor(() => replies.length >= requests.length, 'replies');
  sock.destroy();
  return replies;
}
