/**
 * The sd_notify protocol against a fake NOTIFY_SOCKET: a real Unix datagram
 * socket the test binds, as systemd's would be, and the real `run` process.
 */
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { PipelineWatch } from '../../src/service/pipeline-watch.js';
import { tempDir } from '../helpers/agent.js';
import { cli, type Child } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

interface DgramSocket {
  bind(path: string): void;
  close(): void;
  on(event: 'message', listener: (buf: Buffer) => void): void;
  on(event: 'error', listener: (err: Error) => void): void;
}
const dgram = createRequire(import.meta.url)('unix-dgram') as { createSocket(type: 'unix_dgram'): DgramSocket };

const cleanups: Array<() => void | Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function fakeSystemd(): { path: string; messages: Array<{ at: number; text: string }> } {
  const path = join(tempDir('notify-'), 'notify.sock');
  const messages: Array<{ at: number; text: string }> = [];
  const sock = dgram.createSocket('unix_dgram');
  sock.on('message', (buf) => messages.push({ at: Date.now(), text: buf.toString() }));
  sock.on('error', () => {});
  sock.bind(path);
  cleanups.push(() => sock.close());
  return { path, messages };
}

function runAgent(env: NodeJS.ProcessEnv): Child {
  const dir = tempDir('notify-agent-');
  // No broker here: the machine's own Mosquitto is not the tests' to use.
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ dataDir: join(dir, 'data'), mqtt: { enabled: false }, log: { records: 'none' } }),
  );
  const c = cli(['run', '--simulate', '-c', join(dir, 'config.json')], { cwd: dir, env });
  cleanups.push(async () => {
    if (c.proc.exitCode === null) {
      c.proc.kill('SIGCONT');
      c.proc.kill('SIGKILL');
    }
    await c.exited;
  });
  return c;
}

describe('systemd notify and watchdog', () => {
  it('READY once the spool is open and the pipeline runs, WATCHDOG every half period, none while the process is stuck, STOPPING on SIGTERM', async () => {
    const sd = fakeSystemd();
    const agent = runAgent({ NOTIFY_SOCKET: sd.path, WATCHDOG_USEC: '1000000' });
    await waitFor(() => sd.messages.some((m) => m.text.startsWith('READY=1')), 'READY', 15_000);
    const ready = sd.messages.find((m) => m.text.startsWith('READY=1'))!;
    expect(ready.text).toMatch(/^READY=1\nSTATUS=.*link (open|opening)/);
    expect(ready.text).toContain(`MAINPID=${agent.proc.pid}`);
    // Ready only after the spool opened and the pipeline started.
    const lines = agent.json();
    expect(lines.some((l) => l.msg === 'spool open')).toBe(true);
    expect(lines.some((l) => l.msg === 'agent started')).toBe(true);
    expect(sd.messages.filter((m) => m.text.startsWith('WATCHDOG=1'))).toHaveLength(0);

    await sleep(3000);
    const pings = sd.messages.filter((m) => m.text.startsWith('WATCHDOG=1'));
    // Every 500 ms for WATCHDOG_USEC = 1 s.
    expect(pings.length).toBeGreaterThanOrEqual(5);
    expect(pings.length).toBeLessThanOrEqual(7);
    expect(pings[pings.length - 1].text).toMatch(/STATUS=recording; link open/);

    // A stuck process (SIGSTOP: no event loop at all) sends nothing; systemd would restart it.
    agent.proc.kill('SIGSTOP');
    const stoppedAt = Date.now();
    await sleep(2000);
    agent.proc.kill('SIGCONT');
    const during = sd.messages.filter((m) => m.at > stoppedAt + 50 && m.at < stoppedAt + 1950);
    expect(during).toEqual([]);
    await waitFor(() => sd.messages.some((m) => m.at > stoppedAt + 2000 && m.text.startsWith('WATCHDOG=1')), 'pings again', 5000);

    agent.proc.kill('SIGTERM');
    const { code } = await agent.exited;
    expect(code).toBe(0);
    expect(sd.messages.some((m) => m.text.startsWith('STOPPING=1'))).toBe(true);
  });

  it('without NOTIFY_SOCKET nothing is sent and nothing fails; without WATCHDOG_USEC only READY', async () => {
    const sd = fakeSystemd();
    const agent = runAgent({ NOTIFY_SOCKET: sd.path, WATCHDOG_USEC: '' });
    await waitFor(() => sd.messages.length > 0, 'READY', 15_000);
    await sleep(1500);
    expect(sd.messages.map((m) => m.text.split('\n')[0])).toEqual(['READY=1']);
    const plain = runAgent({ NOTIFY_SOCKET: '' });
    await waitFor(() => plain.json().some((l) => l.msg === 'agent started'), 'agent started', 15_000);
    expect(plain.json().some((l) => /notify/.test(String(l.msg)))).toBe(false);
    void agent;
  });
});

describe('pipeline watch (what the watchdog asks before each ping)', () => {
  const snap = (nowMs: number, frames: number, records: number, linkOpen = true, spoolLastFlushMs: number | null = nowMs) => ({
    nowMs,
    frames,
    records,
    linkOpen,
    spoolLastFlushMs,
  });

  it('frames decoded without records for longer than the stall time: dead; records again: alive', () => {
    const w = new PipelineWatch(3000, 10_000);
    expect(w.check(snap(0, 0, 0)).alive).toBe(true);
    expect(w.check(snap(1000, 50, 10)).alive).toBe(true);
    expect(w.check(snap(2000, 100, 10)).alive).toBe(true);
    expect(w.check(snap(3000, 150, 10)).alive).toBe(true);
    expect(w.check(snap(4000, 200, 10)).alive).toBe(true);
    const v = w.check(snap(5000, 250, 10));
    expect(v.alive).toBe(false);
    expect(v.reason).toMatch(/frames decoded for 4 s without a record/);
    expect(w.check(snap(6000, 300, 20)).alive).toBe(true);
  });

  it('a board that is absent or silent is not a dead pipeline; a spool whose commit loop stopped is', () => {
    const w = new PipelineWatch(3000, 10_000);
    for (let t = 0; t < 20_000; t += 1000) expect(w.check(snap(t, 0, 0, false)).alive).toBe(true);
    for (let t = 20_000; t < 40_000; t += 1000) expect(w.check(snap(t, 100, 100, true)).alive).toBe(true);
    const v = w.check(snap(60_000, 100, 100, true, 45_000));
    expect(v.alive).toBe(false);
    expect(v.reason).toMatch(/spool has not committed for 15 s/);
  });
});

describe('logs for journald', () => {
  it('each JSON line carries its syslog priority when stdout is the journal (<6> info, <4> warning, <3> error)', async () => {
    const { createLogger } = await import('../../src/log/logger.js');
    const { readFileSync } = await import('node:fs');
    const file = join(tempDir('journal-'), 'log');
    const log = createLogger('debug', { deviceId: 'j' }, { journald: true, destination: file });
    log.debug('d');
    log.info('i');
    log.warn({ x: 1 }, 'w');
    log.error('e');
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['<7>', '<6>', '<4>', '<3>']);
    for (const l of lines) expect(JSON.parse(l.slice(3))).toMatchObject({ svc: 'bike-telemetry', deviceId: 'j' });
  });
});
