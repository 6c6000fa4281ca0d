/**
 * A full disk is a state, not an error (issue 15: H4, H5). A real agent
 * process keeps its data on a real 4 MiB tmpfs, uploads to a real Mosquitto
 * and takes signed commands; the disk is filled mid-ride, the agent is
 * restarted while it is full, a command arrives, then the space comes back.
 * Live figures never stop, the condition is on `status` and the status topic,
 * the agent never exits on its own, and every sequence number reaches the
 * cloud once (duplicates only as whole packets).
 */
import { execFileSync } from 'node:child_process';
import { createPrivateKey, sign } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readdirSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fetchAgentHealth } from '../../src/api/client.js';
import { canonicalJson } from '../../src/signing/signature.js';
import { startAgentProcess, type AgentProcess } from '../helpers/agent-process.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { cli } from '../helpers/cli.js';
import { Consumer } from '../helpers/consumer.js';
import { keypair } from '../helpers/ota.js';
import { waitFor } from '../helpers/wait.js';

const DEVICE = 'bike-hard-1';
const fleet = keypair('fleet-disk');
let broker: Broker;
let consumer: Consumer;
let results: MqttClient;
const cmdResults: Array<Record<string, unknown>> = [];
let mnt: string;
let dir: string;
let agent: AgentProcess | null = null;

function command(action: string, params: object, id: string): Buffer {
  const cmd = { id, to: DEVICE, action, params, expiresAt: new Date(Date.now() + 600_000).toISOString() };
  const sig = sign(null, Buffer.from(canonicalJson(cmd), 'utf8'), createPrivateKey(fleet.privateKeyPem)).toString('base64');
  return Buffer.from(JSON.stringify({ cmd, keyId: fleet.id, sig }));
}

/** Fill the filesystem to the last byte; returns the filler's path. */
function fill(into: string, name = 'filler'): string {
  const file = join(into, name);
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(16 * 1024, 0x5a);
  try {
    for (;;) writeSync(fd, chunk);
  } catch {
    // ENOSPC: now a byte at a time, so not even a small write fits
    try {
      for (;;) writeSync(fd, chunk, 0, 1);
    } catch {
      // full
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

async function startOnDisk(): Promise<AgentProcess> {
  return startAgentProcess(
    {
      device: { id: DEVICE },
      mqtt: { enabled: true, url: broker.url, backoffBaseMs: 100, backoffCapMs: 1000, pollMs: 200 },
      commands: { trustedKeys: [{ id: fleet.id, publicKeyFile: join(dir, 'fleet.pub.pem') }] },
      // 4 MiB disk: a small spool cap and memory buffer to match.
      spool: { maxBytes: 2 << 20, memoryRecords: 3000 },
    },
    { dataDir: mnt },
  );
}

beforeAll(async () => {
  dir = tempDir('full-disk-');
  mnt = join(dir, 'data');
  mkdirSync(mnt);
  // A real filesystem that really fills up (the agent runs as root here, so a quota would not stop it).
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mnt]);
  writeFileSync(join(dir, 'fleet.pub.pem'), fleet.trusted.publicKeyPem);
  broker = await Broker.start();
  consumer = await Consumer.connect(broker.url);
  results = mqtt.connect(broker.url, { clientId: `results-${process.pid}` });
  results.on('message', (_t, p) => cmdResults.push(JSON.parse(p.toString()) as Record<string, unknown>));
  await new Promise<void>((r) => results.once('connect', () => results.subscribe(`bike/${DEVICE}/cmd/result`, { qos: 1 }, () => r())));
});

afterAll(async () => {
  await agent?.stop();
  await consumer?.client.endAsync();
  await results?.endAsync();
  await broker?.down('SIGTERM');
  try {
    execFileSync('umount', [mnt]);
  } catch {
    // not mounted
  }
});

const statusOf = (): Array<{ spool?: { condition: string } }> => consumer.status;

describe('a full disk (H4, H5)', () => {
  it('holds the newest records, says so, survives a restart while full, refuses commands it cannot record, and recovers by itself', async () => {
    agent = await startOnDisk();
    await waitFor(() => consumer.seen.size > 20, 'records delivered', 20_000);

    // The disk fills mid-ride.
    const filler = fill(mnt);
    await waitFor(() => statusOf().some((s) => s.spool?.condition === 'disk_full'), 'disk_full on the status topic', 15_000);
    const h1 = await fetchAgentHealth(agent.socketPath, 3000);
    expect(h1?.spool.state === 'open' && h1.spool.diskFull).toBe(true);
    expect(h1?.problems.join(' ')).toMatch(/spool cannot write \(disk full\)/);
    const st = cli(['status', '--json', '-c', join(agent.dir, 'config.json')]);
    expect((await st.exited).code).toBe(4); // unhealthy, and says why
    expect(JSON.parse(st.stdout.join('\n')).spool).toMatchObject({ diskFull: true });

    // Live figures go on.
    const r1 = h1!.engine.records;
    await sleep(1500);
    const h2 = await fetchAgentHealth(agent.socketPath, 3000);
    expect(h2!.engine.records - r1).toBeGreaterThanOrEqual(10);
    expect(h2!.spool.state === 'open' && h2!.spool.pendingRecords).toBeGreaterThan(10);

    // H5: a valid signed command whose nonce cannot be written is refused, unrun, and the agent stays up.
    await results.publishAsync(`bike/${DEVICE}/cmd`, command('upload.now', {}, 'cmd-disk-full-1'), { qos: 1 });
    await waitFor(() => cmdResults.some((r) => r.id === 'cmd-disk-full-1'), 'command result', 10_000);
    expect(cmdResults.find((r) => r.id === 'cmd-disk-full-1')).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/could not be recorded \(ENOSPC\)/),
    });
    expect(agent.alive()).toBe(true);

    // H4: restarted while the disk is full: it starts, stays up, and leaves no temporary files.
    expect((await agent.stop()).code).toBe(0);
    // Closing gave the WAL's space back: fill that too, so the start itself meets a full disk.
    const filler2 = fill(mnt, 'filler2');
    agent = await startOnDisk();
    await sleep(3000);
    expect(agent.alive()).toBe(true);
    const h3 = await fetchAgentHealth(agent.socketPath, 3000);
    expect(h3!.engine.records).toBeGreaterThan(20);
    expect(readdirSync(mnt).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    const logs = agent.child.json();
    // The start met the full disk: SQLite could not even map its shared memory, so the spool is
    // "unavailable, retrying" with records held in memory; never set aside as corrupt (M1).
    expect(logs.some((l) => l.msg === 'spool unavailable: holding the newest records in memory and trying again')).toBe(true);
    expect(readdirSync(mnt).filter((f) => f.includes('.corrupt-'))).toEqual([]);
    expect(h3!.spool.state === 'unavailable' && h3!.spool.heldRecords).toBeGreaterThan(0);

    // Space comes back: the spool writes again, the status topic says so, the held records reach the cloud.
    const seenBefore = consumer.seen.size;
    rmSync(filler);
    rmSync(filler2);
    await waitFor(() => statusOf().at(-1)?.spool?.condition === 'ok', 'condition ok again', 15_000);
    await waitFor(() => consumer.seen.size > seenBefore + 30, 'held records delivered', 20_000);
    const h4 = await fetchAgentHealth(agent.socketPath, 3000);
    expect(h4!.healthy).toBe(true);

    // The command the full disk refused can be sent again and now runs.
    await results.publishAsync(`bike/${DEVICE}/cmd`, command('upload.now', {}, 'cmd-disk-full-1'), { qos: 1 });
    await waitFor(() => cmdResults.filter((r) => r.id === 'cmd-disk-full-1').length === 2, 'second result', 10_000);
    expect(cmdResults.filter((r) => r.id === 'cmd-disk-full-1')[1]).toMatchObject({ ok: true });

    // Never a sequence number twice, except inside a packet sent again whole.
    expect(consumer.invalid).toEqual([]);
    const dup = [...consumer.seen.entries()].filter(([, n]) => n > 1).map(([s]) => s);
    const resent = new Set(
      consumer.packets
        .filter((p, i) => consumer.packets.findIndex((q) => q.range[0] === p.range[0] && q.range[1] === p.range[1]) !== i)
        .flatMap((p) => p.seqs),
    );
    for (const s of dup) expect(resent.has(s), `seq ${s} delivered twice outside a whole resent packet`).toBe(true);
    expect(agent.alive()).toBe(true);
  });
});
