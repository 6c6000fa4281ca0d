/** Signed commands from the cloud: validation (unit) and the agent acting on them over a real broker. */
import { createPrivateKey, sign } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { parseCapture } from '../../src/capture/format.js';
import { CommandProcessor, type CommandResult, type CommandTarget } from '../../src/commands/commands.js';
import { createLogger } from '../../src/log/logger.js';
import { canonicalJson } from '../../src/signing/signature.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SimBoard } from '../../src/sim/board.js';
import { DEMO_RIDE } from '../../src/sim/ride-script.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { keypair, type Key } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const fleet = keypair('fleet-2026a');
const rogue = keypair('fleet-2026a'); // same id, other key material
const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

let n = 0;
function command(cmd: Record<string, unknown>, key: Key = fleet): Buffer {
  const full = {
    id: `cmd-${Date.now()}-${n++}`,
    to: 'bike-c1',
    expiresAt: new Date(Date.now() + 60_000).toISOString(),
    params: {},
    ...cmd,
  };
  const sig = sign(null, Buffer.from(canonicalJson(full), 'utf8'), createPrivateKey(key.privateKeyPem)).toString('base64');
  return Buffer.from(JSON.stringify({ cmd: full, keyId: key.id, sig }));
}

function processor(stateFile = join(tempDir('cmd-'), 'seen.json')) {
  const calls: string[] = [];
  const results: CommandResult[] = [];
  const target: CommandTarget = {
    setRemote: (k, v) => void calls.push(`set ${k}=${String(v)}`),
    purgeMember: (m) => (calls.push(`purge ${m}`), { rides: 0 }),
    uploadNow: () => void calls.push('upload'),
    captureToFile: (s) => (calls.push(`capture ${s}`), Promise.resolve({ file: 'x', bytes: 0 })),
  };
  const p = new CommandProcessor({
    deviceId: 'bike-c1',
    groups: ['berlin-gym'],
    trustedKeys: [fleet.trusted],
    stateFile,
    target,
    publishResult: (r) => results.push(r),
    log: createLogger('silent'),
    maxLifetimeMs: 86_400_000,
  });
  return { p, calls, results, stateFile };
}

describe('signed commands', () => {
  it('a valid command runs; expired, replayed (also after a restart), wrong key, wrong device and malformed ones are refused with a reason', async () => {
    const { p, calls, stateFile } = processor();
    const ok = command({ id: 'cmd-valid-0001', action: 'config.set', params: { key: 'mqtt.rateBytesPerS', value: 5000 } });
    expect(await p.handle(ok)).toMatchObject({ id: 'cmd-valid-0001', ok: true, result: { key: 'mqtt.rateBytesPerS', value: 5000 } });
    expect(calls).toEqual(['set mqtt.rateBytesPerS=5000']);
    const cases: Array<[Buffer, RegExp]> = [
      [command({ action: 'upload.now', expiresAt: new Date(Date.now() - 1).toISOString() }), /^expired at/],
      [ok, /^replayed: command cmd-valid-0001/],
      [command({ action: 'upload.now' }, rogue), /signature does not verify under key "fleet-2026a"/],
      [command({ action: 'upload.now' }, keypair('someone-else')), /signed with key "someone-else", which this device does not trust/],
      [command({ action: 'upload.now', to: 'bike-c2' }), /addressed to bike-c2, not this device/],
      [command({ action: 'upload.now', to: 'group:paris-gym' }), /addressed to group:paris-gym/],
      [Buffer.from('{nope'), /malformed: not JSON/],
      [Buffer.from(JSON.stringify({ cmd: { id: 'x' } })), /malformed: expected \{cmd, keyId, sig\}/],
      [command({ action: 'reboot.now' }), /malformed command: action/],
      [command({ action: 'config.set', params: { key: 'serial.path', value: '/dev/evil' } }), /bad params: key/],
      [command({ action: 'config.set', params: { key: 'mqtt.rateBytesPerS', value: -1 } }), /bad value for mqtt.rateBytesPerS/],
      [command({ action: 'capture', params: { seconds: 100000 } }), /bad params: seconds/],
    ];
    for (const [payload, why] of cases) {
      const r = await p.handle(payload);
      expect(r.ok, String(why)).toBe(false);
      expect(r.reason).toMatch(why);
    }
    expect(calls).toEqual(['set mqtt.rateBytesPerS=5000']);
    // A group command reaches members of the group.
    expect(await p.handle(command({ action: 'upload.now', to: 'group:berlin-gym' }))).toMatchObject({ ok: true });
    // Restarted agent: the nonce is still known.
    const again = processor(stateFile);
    expect((await again.p.handle(ok)).reason).toMatch(/^replayed/);
    expect(JSON.parse(readFileSync(stateFile, 'utf8'))).toHaveProperty(['seen', 'cmd-valid-0001']);
  });

  it('the agent takes commands over its broker session: a setting, an upload, a purge, a capture; results on cmd/result', async () => {
    const broker = await Broker.start();
    cleanups.push(() => broker.down());
    const sim = new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE) });
    const path = await sim.startOnPty(tempDir('cmd-pty-'));
    cleanups.push(() => sim.stop());
    const dir = tempDir('cmd-agent-');
    writeFileSync(join(dir, 'fleet.pub.pem'), fleet.trusted.publicKeyPem);
    const { agent } = startAgent(path, {
      device: { id: 'bike-c1' },
      dataDir: join(dir, 'data'),
      mqtt: { enabled: true, url: broker.url, backoffBaseMs: 200, backoffCapMs: 1000 },
      commands: { trustedKeys: [{ id: fleet.id, publicKeyFile: join(dir, 'fleet.pub.pem') }], groups: ['berlin-gym'] },
    });
    cleanups.push(() => agent.stop());
    const cloud = await mqtt.connectAsync(broker.url, { clientId: 'cloud-cmd', protocolVersion: 5 });
    cleanups.push(() => void cloud.end(true));
    const results: CommandResult[] = [];
    cloud.on('message', (_t, p) => results.push(JSON.parse(p.toString()) as CommandResult));
    await cloud.subscribeAsync('bike/bike-c1/cmd/result', { qos: 1 });
    await waitFor(() => agent.health().upload.state === 'connected', 'connected', 10_000);
    await new Promise((r) => setTimeout(r, 300));
    const send = async (payload: Buffer, topic = 'bike/bike-c1/cmd'): Promise<CommandResult> => {
      const before = results.length;
      await cloud.publishAsync(topic, payload, { qos: 1 });
      await waitFor(() => results.length > before, 'a result', 10_000);
      return results[results.length - 1];
    };

    expect(await send(command({ action: 'config.set', params: { key: 'mqtt.rateBytesPerS', value: 4096 } }))).toMatchObject({ ok: true });
    const up = agent.health().upload;
    expect('rateBytesPerS' in up && up.rateBytesPerS).toBe(4096);
    expect(await send(command({ action: 'upload.now' }))).toMatchObject({ ok: true, result: { uploading: true } });
    expect(await send(command({ action: 'member.purge', params: { member: 'alice@example.com' } }))).toMatchObject({
      ok: true,
      result: { member: expect.stringMatching(/^m1\./), rides: 0 },
    });
    const cap = await send(command({ action: 'capture', params: { seconds: 1 }, to: 'group:berlin-gym' }), 'bike/group/berlin-gym/cmd');
    expect(cap).toMatchObject({ ok: true, result: { file: expect.stringMatching(/captures\/.*\.cap$/) } });
    const file = (cap.result as { file: string }).file;
    expect(existsSync(file)).toBe(true);
    expect(parseCapture(readFileSync(file)).chunks.length).toBeGreaterThan(3);
    expect(await send(command({ action: 'upload.now', expiresAt: new Date(Date.now() - 1000).toISOString() }))).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/^expired/),
    });
    // Logged, with the reason.
    expect(agent.recent.list().some((e) => e.msg === 'command refused' && /expired/.test(String(e.fields.reason)))).toBe(true);
  }, 60_000);
});
