/**
 * The installed console under a real systemd (systemd-nspawn, systemd 252 as
 * PID 1): the units exactly as shipped, the agent's READY and watchdog, the
 * start limit, and the hardening seen from inside the running service.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Broker } from '../helpers/broker.js';
import { Consumer } from '../helpers/consumer.js';
import { waitFor } from '../helpers/wait.js';
import { PtyBoard } from './helpers/board.js';
import { Container } from './helpers/container.js';
import { consoleImage } from './helpers/image.js';

const DEVICE = 'bike-box-1';
const UNIT = 'bike-telemetry.service';
let broker: Broker;
let consumer: Consumer;
let board: PtyBoard;
let box: Container;

function config(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    device: { id: DEVICE },
    serial: { path: '/dev/flywheel' },
    dataDir: '/var/lib/bike-telemetry',
    log: { records: 'none' },
    mqtt: { url: broker.url, backoffBaseMs: 200, backoffCapMs: 2000 },
    ...extra,
  };
}

/** Journal entries of the agent's unit as JSON. */
async function entries(priority?: string): Promise<Array<Record<string, string>>> {
  const out = await box.journal(UNIT, ['-o', 'json', ...(priority ? ['-p', priority] : [])]);
  return out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, string>);
}

beforeAll(async () => {
  broker = await Broker.start();
  consumer = await Consumer.connect(broker.url);
  board = await PtyBoard.start();
  box = await Container.create({ name: 'bike-box', image: consoleImage(), config: {}, board: board.device });
  box.writeConfig(config());
  // The hardening probe (see the test): a script the agent's user runs inside the agent's sandbox.
  writeFileSync(join(box.merged, 'usr/local/lib/bike-probe.mjs'), PROBE);
});

afterAll(async () => {
  if (box) {
    if (process.env.BIKE_SYSTEM_KEEP) console.log(box.console().slice(-5000));
    await box.destroy();
  }
  await board?.stop();
  await consumer?.close();
  await broker?.down();
});

describe('the console in a container (systemd-nspawn)', () => {
  it('boots to READY with the shipped units; records reach the broker; warnings in the journal are warnings', async () => {
    await box.boot();
    const s = await box.waitActive(UNIT);
    const bootToReadyMs = Date.now() - box.bootStartedAt;
    const startToReadyMs = (Number(s.ActiveEnterTimestampMonotonic) - Number(s.ExecMainStartTimestampMonotonic)) / 1000;
    console.log(JSON.stringify({ measure: 'container boot to READY', bootToReadyMs, agentStartToReadyMs: startToReadyMs }));
    expect(s.NRestarts).toBe('0');
    expect(startToReadyMs).toBeGreaterThan(0);
    // Records flow: packets from this device arrive at the broker on the host.
    await waitFor(() => consumer.seen.size >= 30, 'records from the container', 60_000, 100);
    expect(consumer.invalid).toEqual([]);
    // The watchdog is armed and fed.
    const w1 = Number((await box.show(UNIT, ['WatchdogTimestampMonotonic'])).WatchdogTimestampMonotonic);
    await sleep(16_000);
    const w2 = Number((await box.show(UNIT, ['WatchdogTimestampMonotonic'])).WatchdogTimestampMonotonic);
    expect(w2).toBeGreaterThan(w1);
    // The technician's command works inside, as root on the console.
    const st = await box.run(['bike-telemetry', 'status', '--json']);
    expect(st.status, st.stderr).toBe(0);
    const health = JSON.parse(st.stdout) as { link: { state: string }; spool: { state: string } };
    expect(health.link.state).toBe('open');
    expect(health.spool.state).toBe('open');
    // Priorities: journald keeps each line's level, so -p warning shows warnings and worse only.
    const all = await entries();
    const started = all.find((e) => /"msg":"agent started"/.test(e.MESSAGE ?? ''));
    expect(started?.PRIORITY).toBe('6');
    for (const e of await entries('warning')) {
      expect(Number(e.PRIORITY)).toBeLessThanOrEqual(4);
      const level = (JSON.parse(e.MESSAGE) as { level: number }).level;
      expect(level).toBeGreaterThanOrEqual(40);
    }
    expect(all.every((e) => !String(e.MESSAGE).startsWith('<'))).toBe(true);
  });

  it('a stopped agent (SIGSTOP) is killed and restarted by the watchdog; records flow again, no sequence number reused', async () => {
    const before = await box.show(UNIT, ['MainPID', 'NRestarts', 'WatchdogUSec']);
    const watchdogS = seconds(before.WatchdogUSec);
    const maxBefore = Math.max(...consumer.seen.keys());
    const stoppedAt = Date.now();
    await box.run(['kill', '-STOP', before.MainPID]);
    const after = await box.waitActive(
      UNIT,
      120_000,
      (s) => s.NRestarts === String(Number(before.NRestarts) + 1) && s.MainPID !== before.MainPID,
    );
    const restartMs = Date.now() - stoppedAt;
    console.log(JSON.stringify({ measure: 'watchdog restart', watchdogSec: watchdogS, stopToReadyAgainMs: restartMs }));
    expect(restartMs).toBeGreaterThan(watchdogS * 1000 * 0.5);
    expect(restartMs).toBeLessThan(watchdogS * 1000 + 20_000);
    expect(await box.journal(UNIT)).toMatch(/[Ww]atchdog timeout/);
    expect(after.MainPID).not.toBe(before.MainPID);
    // Records again, numbered above everything sent before the stop; duplicates only as whole packets.
    await waitFor(() => Math.max(...consumer.seen.keys()) > maxBefore + 30, 'records after the restart', 60_000, 100);
    expect(consumer.duplicatesAreWholePackets()).toBe(true);
    expect(consumer.invalid).toEqual([]);
  });

  it('hardening seen from inside: the agent user writes only its State/Runtime folders and opens only tty devices; systemd-analyze agrees with the offline score', async () => {
    const { MainPID } = await box.show(UNIT, ['MainPID']);
    // The unified hierarchy's path, relative to the container's own cgroup root (where its PID 1's scope is).
    const unified = (pid: string) => async () => /^0::(.*)$/m.exec((await box.run(['cat', `/proc/${pid}/cgroup`])).stdout)?.[1] ?? '';
    const rootCg = (await unified('1')()).replace(/\/init\.scope$/, '');
    const cg = (await unified(MainPID)()).slice(rootCg.length);
    expect(cg).toBe('/system.slice/bike-telemetry.service');
    const ids = (await box.run(['id', '-u', 'bike-telemetry'])).stdout.trim();
    const gid = (await box.run(['id', '-g', 'bike-telemetry'])).stdout.trim();
    const groups = (await box.run(['id', '-G', 'bike-telemetry'])).stdout.trim().split(/\s+/).join(',');
    // Only the device policy stands between the user and this one: it is made world-writable first.
    await box.run(['chmod', '0666', '/dev/net/tun']);
    // The probe joins the service's cgroup (device policy), mount namespace (ProtectSystem=strict,
    // PrivateTmp, ...) and credentials, then tries.
    const r = await box.sh(
      `echo $$ > /sys/fs/cgroup${cg}/cgroup.procs && exec nsenter -t ${MainPID} -m -- setpriv --reuid=${ids} --regid=${gid} --groups=${groups} --no-new-privs --inh-caps=-all --bounding-set=-all /usr/bin/node /usr/local/lib/bike-probe.mjs`,
    );
    expect(r.status, r.stderr).toBe(0);
    const p = JSON.parse(r.stdout) as { write: Record<string, string>; open: Record<string, string> };
    console.log(JSON.stringify({ measure: 'hardening probe', ...p }));
    for (const ok of ['/var/lib/bike-telemetry/probe', '/run/bike-telemetry/probe', '/tmp/probe']) expect(p.write[ok], ok).toBe('ok');
    for (const no of [
      '/etc/bike-telemetry/probe',
      '/opt/bike-telemetry/probe',
      '/usr/local/probe',
      '/var/lib/probe',
      '/var/log/probe',
      '/root/probe',
      '/home/probe',
      '/srv/probe',
    ]) {
      expect(['EROFS', 'EACCES', 'EPERM', 'ENOENT'], no).toContain(p.write[no]);
    }
    expect(p.open['/dev/flywheel']).toBe('ok');
    expect(p.open['/dev/null']).toBe('ok');
    expect(p.open['/dev/net/tun']).toBe('EPERM');
    // The running unit's exposure equals the score of the unit file alone.
    const running = await box.run(['systemd-analyze', 'security', '--no-pager', UNIT]);
    const offline = await box.run(['systemd-analyze', 'security', '--no-pager', '--offline=true', `/etc/systemd/system/${UNIT}`]);
    const score = (s: string) => /Overall exposure level for [^:]+: ([\d.]+)/.exec(s)?.[1];
    console.log(JSON.stringify({ measure: 'systemd-analyze security', running: score(running.stdout), offline: score(offline.stdout) }));
    expect(score(running.stdout)).toBeDefined();
    expect(score(running.stdout)).toBe(score(offline.stdout));
  });

  it('a bad configuration fails the unit after StartLimitBurst, the reason in the journal; a good one starts it again', async () => {
    const limits = await box.show(UNIT, ['StartLimitBurst', 'StartLimitIntervalUSec']);
    box.writeConfig({ ...config(), serial: { path: '/dev/flywheel', baudRate: -5 } });
    const since = (await box.run(['date', '+%Y-%m-%d %H:%M:%S'])).stdout.trim();
    await box.run(['systemctl', 'restart', UNIT]);
    let s: Record<string, string>;
    const deadline = Date.now() + 180_000;
    for (;;) {
      s = await box.show(UNIT, ['ActiveState', 'Result', 'NRestarts']);
      // Between failed starts the unit is briefly "failed" too; systemd 252 keeps Result=exit-code
      // when the start limit ends it, and says so in the journal.
      if (s.ActiveState === 'failed' && /Start request repeated too quickly/.test(await box.journal(UNIT, ['--since', since]))) break;
      if (Date.now() > deadline) throw new Error(`the unit never failed: ${JSON.stringify(s)}`);
      await sleep(500);
    }
    expect(['start-limit-hit', 'exit-code']).toContain(s.Result);
    expect(Number(s.NRestarts)).toBeGreaterThan(0);
    // It stays failed: no loop behind the limit.
    await sleep(5000);
    expect((await box.show(UNIT, ['ActiveState'])).ActiveState).toBe('failed');
    const j = await box.journal(UNIT, ['--since', since, '-o', 'json']);
    const lines = j
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, string>);
    const reasons = lines.filter((e) => /baudRate/.test(e.MESSAGE ?? ''));
    expect(reasons.length).toBeGreaterThan(0);
    expect(Number(reasons[0].PRIORITY)).toBeLessThanOrEqual(3);
    expect(lines.some((e) => /Start request repeated too quickly/.test(e.MESSAGE ?? ''))).toBe(true);
    console.log(
      JSON.stringify({
        measure: 'bad configuration',
        startLimitBurst: limits.StartLimitBurst,
        restartsBeforeFailed: s.NRestarts,
        reason: reasons[0].MESSAGE,
      }),
    );
    box.writeConfig(config());
    await box.run(['systemctl', 'reset-failed', UNIT]);
    await box.run(['systemctl', 'start', UNIT]);
    await box.waitActive(UNIT);
  });
});

/** A systemd time span as `systemctl show` prints it ("30s", "1min 30s", "500ms") in seconds. */
function seconds(span: string): number {
  const unit: Record<string, number> = { us: 1e-6, ms: 1e-3, s: 1, min: 60, h: 3600 };
  let total = 0;
  for (const m of span.matchAll(/([\d.]+)\s*(us|ms|s|min|h)/g)) total += Number(m[1]) * unit[m[2]];
  return total;
}

/** Tries to write files and open devices; prints what happened to each as JSON. */
const PROBE = `
import { openSync, closeSync, writeFileSync, constants } from 'node:fs';
const write = {};
for (const f of ['/var/lib/bike-telemetry/probe', '/run/bike-telemetry/probe', '/tmp/probe', '/etc/bike-telemetry/probe', '/opt/bike-telemetry/probe', '/usr/local/probe', '/var/lib/probe', '/var/log/probe', '/root/probe', '/home/probe', '/srv/probe']) {
  try { writeFileSync(f, 'x'); write[f] = 'ok'; } catch (e) { write[f] = e.code; }
}
const open = {};
for (const d of ['/dev/flywheel', '/dev/null', '/dev/net/tun']) {
  try { closeSync(openSync(d, constants.O_RDWR | constants.O_NONBLOCK | constants.O_NOCTTY)); open[d] = 'ok'; } catch (e) { open[d] = e.code; }
}
console.log(JSON.stringify({ write, open }));
`;
