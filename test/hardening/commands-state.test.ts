/**
 * Replay protection fails closed (issue 15: M8, H5 and the command lows),
 * with an injected clock: a corrupt nonce file never lets an old command run
 * again, and bounds on expiry and ids keep one message from filling the log.
 */
import { createPrivateKey, sign } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CommandProcessor, type CommandResult, type CommandTarget } from '../../src/commands/commands.js';
import { canonicalJson } from '../../src/signing/signature.js';
import { tempDir } from '../helpers/agent.js';
import { keypair } from '../helpers/ota.js';

const fleet = keypair('fleet-state');
const HOUR = 3_600_000;
const T0 = Date.parse('2026-12-05T12:00:00Z');

function command(id: string, expiresAt: number, extra: Record<string, unknown> = {}): Buffer {
  const cmd = { id, to: 'bike-s1', action: 'upload.now', params: {}, expiresAt: new Date(expiresAt).toISOString(), ...extra };
  const sig = sign(null, Buffer.from(canonicalJson(cmd), 'utf8'), createPrivateKey(fleet.privateKeyPem)).toString('base64');
  return Buffer.from(JSON.stringify({ cmd, keyId: fleet.id, sig }));
}

function processor(stateFile: string, clock: { now: number }) {
  const runs: string[] = [];
  const logs: Array<{ msg: string; fields: Record<string, unknown> }> = [];
  const results: CommandResult[] = [];
  const target: CommandTarget = {
    setRemote: () => {},
    purgeMember: () => ({}),
    uploadNow: () => void runs.push('upload'),
    captureToFile: () => Promise.resolve({ file: 'x', bytes: 0 }),
  };
  const log = {
    info: (fields: Record<string, unknown>, msg: string) => void logs.push({ msg, fields }),
    warn: (fields: Record<string, unknown>, msg: string) => void logs.push({ msg, fields }),
    error: (fields: Record<string, unknown>, msg: string) => void logs.push({ msg, fields }),
  };
  const p = new CommandProcessor({
    deviceId: 'bike-s1',
    groups: [],
    trustedKeys: [fleet.trusted],
    stateFile,
    target,
    publishResult: (r) => results.push(r),
    log: log as never,
    maxLifetimeMs: 24 * HOUR,
    now: () => clock.now,
  });
  return { p, runs, logs, results };
}

describe('command nonces', () => {
  it('M8: a corrupt nonce file never lets an earlier command run again; it says so once; fresh full-lifetime commands still run', async () => {
    const file = join(tempDir('cmd-state-'), 'commands-seen.json');
    const clock = { now: T0 };
    const a = processor(file, clock);
    const old = [command('cmd-old-00001', T0 + 2 * HOUR), command('cmd-old-00002', T0 + 20 * HOUR)];
    for (const c of old) expect((await a.p.handle(c)).ok).toBe(true);
    expect(a.runs).toHaveLength(2);
    // The file is damaged (flash corruption, a half-written copy by hand).
    writeFileSync(file, '{"v":2,"seen":{"cmd-old-00001":');
    clock.now = T0 + HOUR;
    const b = processor(file, clock);
    expect(b.logs.filter((l) => l.msg.startsWith('command nonces unreadable')).length).toBe(1);
    for (const c of old) expect((await b.p.handle(c)).reason).toMatch(/^replay protection was reset at/);
    expect(b.runs).toEqual([]);
    // A new command with a full lifetime (expiring after every command seen before the loss could) runs.
    expect(await b.p.handle(command('cmd-new-00001', clock.now + 24 * HOUR))).toMatchObject({ ok: true });
    // The mark survives a restart, and ends once every earlier command has expired.
    const c = processor(file, clock);
    expect((await c.p.handle(old[1])).ok).toBe(false);
    clock.now = T0 + HOUR + 24 * HOUR + 1;
    const d = processor(file, clock);
    expect((await d.p.handle(command('cmd-late-0001', clock.now + HOUR))).ok).toBe(true);
  });

  it('H5: a nonce that cannot be written refuses the command unrun and unremembered (no rejection)', async () => {
    const clock = { now: T0 };
    // The state file's folder does not exist: every write fails, as on a full disk.
    const a = processor(join(tempDir('cmd-nowrite-'), 'gone', 'commands-seen.json'), clock);
    const r = await a.p.handle(command('cmd-nowrite-01', T0 + HOUR));
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/^not run: the command id could not be recorded \(ENOENT\)/) });
    expect(a.runs).toEqual([]);
    expect(a.results).toHaveLength(1);
  });

  it('expiry is bounded by maxLifetime; an over-long id is neither echoed nor logged', async () => {
    const clock = { now: T0 };
    const file = join(tempDir('cmd-bounds-'), 'seen.json');
    const a = processor(file, clock);
    expect((await a.p.handle(command('cmd-far-00001', T0 + 400 * 24 * HOUR))).reason).toMatch(/^expires too far ahead/);
    const huge = 'x'.repeat(5 << 20);
    const r = await a.p.handle(command(huge, T0 + HOUR));
    expect(r.ok).toBe(false);
    expect(r.id).toBeNull();
    expect(JSON.stringify(a.logs).length).toBeLessThan(10_000);
    // Nothing refused was remembered: the nonce file was never written.
    expect(existsSync(file)).toBe(false);
  });
});
