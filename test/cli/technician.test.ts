/**
 * The technician's subcommands against a running agent (`run --simulate`, a
 * child process) with a real Mosquitto, and against a stopped one.
 */
import { spawnSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseCapture } from '../../src/capture/format.js';
import { ApiClient } from '../../src/api/client.js';
import { BIN, cli, type Child } from '../helpers/cli.js';
import { tempDir } from '../helpers/agent.js';
import { Broker } from '../helpers/broker.js';
import { Consumer } from '../helpers/consumer.js';
import { waitFor } from '../helpers/wait.js';

let broker: Broker;
let consumer: Consumer;
let agent: Child;
let dir: string;
let config: string;
let ptyPath: string;
const children: Child[] = [];

interface Done {
  code: number | null;
  out: string;
  err: string;
}

async function run(args: string[]): Promise<Done> {
  const c = cli(args);
  children.push(c);
  const { code } = await c.exited;
  return { code, out: c.stdout.join('\n'), err: c.stderr() };
}

const runJson = async (args: string[]) => {
  const r = await run([...args, '--json']);
  return { ...r, json: JSON.parse(r.out) };
};

function writeConfig(name: string, value: Record<string, unknown>): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify(value));
  return file;
}

beforeAll(async () => {
  broker = await Broker.start();
  consumer = await Consumer.connect(broker.url);
  dir = tempDir('tech-');
  config = writeConfig('config.json', {
    device: { id: 'tech-bike' },
    dataDir: join(dir, 'data'),
    api: { socketPath: join(dir, 'api.sock') },
    mqtt: { url: broker.url, backoffBaseMs: 200, backoffCapMs: 1000 },
    rides: { idleEndS: 10 },
    log: { records: 'none', statsIntervalS: 0 },
  });
  agent = cli(['run', '--simulate', '-c', config]);
  await waitFor(() => agent.json().some((l) => l.msg === 'api listening'), 'agent api', 15_000);
  const c = await ApiClient.connect(join(dir, 'api.sock'));
  await waitFor(() => true, '');
  for (let i = 0; i < 100; i++) {
    const h = await c.request('health');
    ptyPath = h.link.path;
    if (h.healthy && h.upload.state === 'connected') break;
    await sleep(100);
  }
  c.close();
}, 30_000);

afterAll(async () => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  agent?.proc.kill('SIGTERM');
  await agent?.exited;
  consumer?.client.end(true);
  await broker?.down();
});

describe('status', () => {
  it('one screen for a human, JSON for scripts; exit 0 when healthy', async () => {
    const human = await run(['status', '-c', config]);
    expect(human.code).toBe(0);
    expect(human.out).toMatch(/^tech-bike · agent \S+ · HEALTHY/);
    for (const label of ['Link', 'Board', 'Spool', 'Upload', 'Ride', 'API', 'Last error'])
      expect(human.out).toMatch(new RegExp(`^${label} `, 'm'));
    expect(human.out).toMatch(/Link\s+open .* frames · 0 decode errors/);
    expect(human.out).toMatch(/Board\s+firmware 1\.0\.0 · serial \w+/);
    expect(human.out).toMatch(/Upload\s+connected mqtt:\/\/127\.0\.0\.1:\d+ · MQTT 5/);

    const { code, json } = await runJson(['status', '-c', config]);
    expect(code).toBe(0);
    expect(json).toMatchObject({
      running: true,
      healthy: true,
      problems: [],
      deviceId: 'tech-bike',
      link: { state: 'open', path: ptyPath },
      board: { hello: { firmware: '1.0.0' } },
      spool: { state: 'open', schemaVersion: 2 },
      upload: { state: 'connected' },
    });
    expect(json.link.counters.framesIn).toBeGreaterThan(0);
  });

  it('exit 4 with the problem named when the agent runs but is unhealthy; exit 5 when it is not running', async () => {
    const sick = writeConfig('sick.json', {
      device: { id: 'sick-bike' },
      dataDir: join(dir, 'sick'),
      serial: { path: join(dir, 'no-such-tty') },
      api: { socketPath: join(dir, 'sick.sock') },
      mqtt: { enabled: false },
      log: { records: 'none' },
    });
    const sickAgent = cli(['run', '-c', sick]);
    children.push(sickAgent);
    await waitFor(() => sickAgent.json().some((l) => l.msg === 'api listening'), 'sick agent api', 15_000);
    const r = await runJson(['status', '-c', sick]);
    expect(r.code).toBe(4);
    expect(r.json.healthy).toBe(false);
    expect(r.json.problems.join('\n')).toMatch(/serial link (waiting|opening).*no-such-tty/);
    const human = await run(['status', '-c', sick]);
    expect(human.code).toBe(4);
    expect(human.out).toMatch(/UNHEALTHY\n {2}! serial link/);
    // The file edited since the agent started, into one it would refuse: status still asks the agent that runs.
    const edited = writeConfig('sick-edited.json', { api: { socketPath: join(dir, 'sick.sock') }, serial: { baudrate: 9600 } });
    const asked = await runJson(['status', '-c', edited]);
    expect(asked.code).toBe(4);
    expect(asked.json.deviceId).toBe('sick-bike');
    sickAgent.proc.kill('SIGTERM');
    await sickAgent.exited;

    // Stopped: status says so, and still summarises the spool it left.
    const stopped = await runJson(['status', '-c', sick]);
    expect(stopped.code).toBe(5);
    expect(stopped.json).toMatchObject({ running: false, healthy: false, spool: { schemaVersion: 2, deviceId: 'sick-bike' } });
    expect(stopped.json.error).toMatch(/not running: no API socket at .*sick\.sock/);
    const human2 = await run(['status', '-c', sick]);
    expect(human2.code).toBe(5);
    expect(human2.out).toMatch(/^AGENT NOT RUNNING/);
    expect(human2.out).toMatch(/Spool {5}/);
    const live = await run(['live', '-c', sick]);
    expect(live.code).toBe(5);
    expect(live.err).toMatch(/is not running/);
    // What works from the spool file alone still works.
    const spool = await runJson(['spool', '-c', sick]);
    expect(spool.code).toBe(0);
    expect(spool.json).toMatchObject({ deviceId: 'sick-bike', schemaVersion: 2 });
    const rides = await runJson(['ride', 'list', '-c', sick]);
    expect(rides.code).toBe(0);
    expect(rides.json).toEqual([]);
    const exported = await run(['spool', 'export', '-c', sick]);
    expect(exported.code).toBe(0);
    expect(exported.out.split('\n')[0]).toMatch(/^seq,ride,wallTime/);
  });
});

describe('rides through the agent, the cloud and the CLI', () => {
  it('a ride started by the app: packets carry its id, its summary reaches the broker pseudonymised, `ride list` and `ride chart` show it; a purge reaches the broker', async () => {
    const c = await ApiClient.connect(join(dir, 'api.sock'));
    const { started } = await c.request('ride.start', {
      member: 'dana@example.com',
      classId: 'climb-30',
    });
    await sleep(4000);
    const ended = await c.request('ride.end');
    await waitFor(() => consumer.rideSummaries.some((s) => s.ride === started.ride), 'ride summary at the broker', 10_000);
    const summary = consumer.rideSummaries.find((s) => s.ride === started.ride)!;
    expect(summary).toMatchObject({ v: 1, dev: 'tech-bike', member: started.member, class: 'climb-30', started_by: 'api', end: 'api' });
    expect(summary.duration_s).toBe(ended.durationS);
    const seq = summary.seq as [number, number];
    // Every record of the ride went in packets naming the ride, and only those.
    await waitFor(() => consumer.seen.has(seq[1]), 'last record of the ride', 10_000);
    const ridePackets = consumer.packets.filter((p) => p.ride === started.ride);
    const rideSeqs = ridePackets.flatMap((p) => p.seqs);
    expect(Math.min(...rideSeqs)).toBe(seq[0]);
    expect(Math.max(...rideSeqs)).toBe(seq[1]);
    expect(new Set(rideSeqs).size).toBe(seq[1] - seq[0] + 1);
    for (const p of consumer.packets) if (p.ride !== started.ride) expect(p.seqs.some((s) => s >= seq[0] && s <= seq[1])).toBe(false);
    // The member id itself is nowhere: not at the broker, not in the logs.
    expect(JSON.stringify(consumer.rideSummaries)).not.toContain('dana');
    expect(agent.stdout.join('\n')).not.toContain('dana');

    const list = await runJson(['ride', 'list', '-c', config]);
    expect(list.code).toBe(0);
    const row = (list.json as Array<Record<string, unknown>>).find((r) => r.ride === started.ride)!;
    expect(row).toMatchObject({ member: started.member, classId: 'climb-30', endReason: 'api' });
    const human = await run(['ride', 'list', '-c', config]);
    expect(human.out).toMatch(new RegExp(`${started.ride}\\s+\\d{4}-\\d\\d-\\d\\d \\d\\d:\\d\\d:\\d\\d\\s+0:0\\d`));

    const svgFile = join(dir, 'ride.svg');
    const chart = await run(['ride', 'chart', started.ride, '--out', svgFile, '-c', config]);
    expect(chart.code).toBe(0);
    expect(chart.out).toMatch(/ride.svg: ride .*, 0:0\d, \d+ points/);
    const svg = readFileSync(svgFile, 'utf8');
    expect(svg).toMatch(/^<\?xml version="1.0"/);
    expect(svg).toContain('class climb-30');
    expect(svg).toMatch(/Power avg \d+ W · max \d+ W/);
    for (const s of ['Power', 'Cadence', 'Heart rate']) expect(svg).toContain(`data-series="${s}"`);
    expect((svg.match(/<polyline /g) ?? []).length).toBeGreaterThanOrEqual(3);
    // Well-formed: every element closes (a strict XML parse in Chromium is in the page test's browser; here a structural check).
    expect(svg.trim().endsWith('</svg>')).toBe(true);
    const missing = await run(['ride', 'chart', 'no-such-ride', '--out', svgFile, '-c', config]);
    expect(missing.code).toBe(6);
    expect(missing.err).toMatch(/no ride no-such-ride/);

    const purge = await c.request('member.purge', { member: 'dana@example.com' });
    expect(purge).toMatchObject({ member: started.member, rides: 1 });
    await waitFor(() => consumer.purges.length > 0, 'purge notice at the broker', 10_000);
    expect(consumer.purges[0]).toMatchObject({ v: 1, dev: 'tech-bike', member: started.member, rides: [{ ride: started.ride, seq }] });
    c.close();
  });
});

describe('spool', () => {
  it('summary and export while the broker is away; --from/--to select by sequence number; bad bounds exit 2', async () => {
    await broker.down();
    await sleep(3500);
    const s = await runJson(['spool', '-c', config]);
    expect(s.code).toBe(0);
    expect(s.json.records).toBeGreaterThanOrEqual(20);
    expect(s.json).toMatchObject({ schemaVersion: 2, deviceId: 'tech-bike', gaps: [] });
    expect(s.json.freeDiskBytes).toBeGreaterThan(0);
    const human = await run(['spool', '-c', config]);
    expect(human.out).toMatch(/Backlog\s+\d+ records not yet acknowledged/);

    const first = s.json.oldestSeq as number;
    const csv = await run(['spool', 'export', '-c', config, '--format', 'csv', '--from', String(first), '--to', String(first + 9)]);
    expect(csv.code).toBe(0);
    const lines = csv.out.split('\n').filter(Boolean);
    expect(lines[0]).toBe('seq,ride,wallTime,tMs,cadenceRpm,powerW,resistancePct,flywheelRpm,speedKmh,hrBpm,distanceM,energyKj,flags');
    expect(lines).toHaveLength(11);
    expect(lines.slice(1).map((l) => Number(l.split(',')[0]))).toEqual(Array.from({ length: 10 }, (_, i) => first + i));
    // Piped: no progress bar.
    expect(csv.err).toBe('');
    const js = await run(['spool', '-c', config, 'export', '--format', 'json']);
    const recs = js.out
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l));
    expect(recs.length).toBeGreaterThanOrEqual(s.json.records);
    expect(recs[0]).toMatchObject({ seq: first, wallTime: expect.stringMatching(/^\d{4}-/), powerW: expect.any(Number) });
    const bad = await run(['spool', 'export', '-c', config, '--from', 'yesterday-ish']);
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/--from must be a sequence number or a date/);
    await broker.up();
  });
});

describe('capture and replay', () => {
  it('captures through the running agent and replays the file and a plain byte dump through the decoder', async () => {
    const capFile = join(dir, 'ride.cap');
    const cap = await runJson(['capture', '-c', config, '--out', capFile, '--seconds', '2']);
    expect(cap.code).toBe(0);
    expect(cap.json).toMatchObject({ file: capFile, source: 'agent', path: ptyPath });
    expect(cap.json.bytesFromBoard).toBeGreaterThan(2000);
    const parsed = parseCapture(readFileSync(capFile));
    expect(parsed.header).toMatchObject({ protocol: 'fwp', baudRate: 115200, source: 'agent', deviceId: 'tech-bike' });

    const rep = await runJson(['replay', capFile]);
    expect(rep.code).toBe(0);
    expect(rep.json.format).toBe('capture');
    // 2 s of 50 Hz samples plus 1 Hz status.
    expect(rep.json.frames).toBeGreaterThan(80);
    expect(Object.values(rep.json.decodeErrors as Record<string, number>).reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(1);
    expect(rep.json.records).toBeGreaterThanOrEqual(15);
    expect(rep.json.rides).toHaveLength(1);

    const dumpFile = join(dir, 'ride.dump');
    writeFileSync(dumpFile, Buffer.concat(parsed.chunks.filter((ch) => ch.dir === 0).map((ch) => ch.bytes)));
    const dump = await runJson(['replay', dumpFile]);
    expect(dump.code).toBe(0);
    expect(dump.json).toMatchObject({ format: 'dump', frames: rep.json.frames, records: rep.json.records });

    const records = await run(['replay', capFile, '--records']);
    const recs = records.out.split('\n').map((l) => JSON.parse(l));
    expect(recs).toHaveLength(rep.json.records);
    for (let i = 1; i < recs.length; i++) expect(recs[i].tUs - recs[i - 1].tUs).toBe(100_000);

    const human = await run(['replay', capFile]);
    expect(human.out).toMatch(/Frames\s+\d+ \(\d+ samples\)/);
    expect(human.out).toMatch(/Ride\s+0:0\d/);

    // Real time: paced by the capture's timestamps.
    const t0 = Date.now();
    const rt = await runJson(['replay', capFile, '--realtime']);
    expect(rt.json.records).toBe(rep.json.records);
    expect(Date.now() - t0).toBeGreaterThan(1500);
  });

  it('bad input: a missing file exits 6, a truncated capture and bytes with no frames exit 1 with a reason', async () => {
    expect((await run(['replay', join(dir, 'nope.cap')])).code).toBe(6);
    const capFile = join(dir, 'ride.cap');
    const truncated = join(dir, 'truncated.cap');
    const full = readFileSync(capFile);
    writeFileSync(truncated, full.subarray(0, full.length - 3));
    const t = await run(['replay', truncated]);
    expect(t.code).toBe(1);
    expect(t.err).toMatch(/capture truncated at byte \d+/);
    const noise = join(dir, 'noise.bin');
    writeFileSync(noise, Buffer.from(Array.from({ length: 4096 }, (_, i) => ((i * 37 + 11) % 255) + 1)));
    const n = await runJson(['replay', noise]);
    expect(n.code).toBe(1);
    expect(n.json.frames).toBe(0);
  });
});

describe('ports and selftest', () => {
  it('ports without udev (no udevadm on PATH) says why it cannot list, and still answers for the configured path', async () => {
    const cfg = writeConfig('ports-noudev.json', { serial: { path: ptyPath } });
    const c = cli(['ports', '-c', cfg, '--json'], { env: { PATH: join(dir, 'no-bin') } });
    children.push(c);
    const { code } = await c.exited;
    expect(code).toBe(0);
    const j = JSON.parse(c.stdout.join('\n')) as { configured: { exists: boolean }; ports: unknown[]; listError: string };
    expect(j.configured.exists).toBe(true);
    expect(j.ports).toEqual([]);
    expect(j.listError).toMatch(/cannot list serial ports .*udevadm.*is udev installed/);
  });

  it('ports lists the serial ports and finds the configured one', async () => {
    const cfg = writeConfig('ports.json', { serial: { path: ptyPath } });
    const r = await runJson(['ports', '-c', cfg]);
    expect(r.code).toBe(0);
    expect(r.json.configured).toMatchObject({ path: ptyPath, exists: true });
    expect(Array.isArray(r.json.ports)).toBe(true);
    const missing = await runJson(['ports', '-c', writeConfig('ports2.json', { serial: { path: join(dir, 'ttyNOPE') } })]);
    expect(missing.code).toBe(6);
    expect(missing.json.configured.exists).toBe(false);
    const human = await run(['ports', '-c', writeConfig('ports3.json', { serial: { path: join(dir, 'ttyNOPE') } })]);
    expect(human.out).toMatch(/ttyNOPE does not exist: is the board plugged in/);
  });

  it('selftest passes against the running agent, and names what fails: the broker down, a missing serial device', async () => {
    const ok = await runJson(['selftest', '-c', config]);
    expect(ok.code).toBe(0);
    expect(ok.json.ok).toBe(true);
    expect(ok.json.checks.map((c: { name: string; result: string }) => `${c.name}:${c.result}`)).toEqual([
      'config:pass',
      'calibration:pass',
      'agent:pass',
      'spool:pass',
      'serial:pass',
      'broker:pass',
    ]);
    const human = await run(['selftest', '-c', config]);
    expect(human.out).toMatch(/^CHECK\s+RESULT\s+TIME\s+DETAIL/);
    expect(human.out).toMatch(/selftest passed$/);

    // No agent; the board through a simulator of its own; no broker.
    const sim = cli(['simulate', '--dir', tempDir('selftest-sim-')]);
    children.push(sim);
    await waitFor(() => sim.stdout.some((l) => l.includes('/')), 'simulator pty', 10_000);
    const simPath = sim.stdout.find((l) => l.includes('/'))!.trim();
    const alone = writeConfig('alone.json', {
      dataDir: join(dir, 'alone'),
      serial: { path: simPath },
      api: { socketPath: join(dir, 'alone.sock') },
      mqtt: { url: 'mqtt://127.0.0.1:1' },
    });
    const r = await runJson(['selftest', '-c', alone, '--timeout', '3']);
    expect(r.code).toBe(4);
    const byName = Object.fromEntries((r.json.checks as Array<{ name: string; result: string; detail: string }>).map((c) => [c.name, c]));
    expect(byName.agent.detail).toMatch(/not running/);
    expect(byName.serial).toMatchObject({ result: 'pass', detail: expect.stringMatching(/firmware 1\.0\.0/) });
    expect(byName.broker).toMatchObject({ result: 'fail', detail: expect.stringMatching(/mqtt:\/\/127\.0\.0\.1:1: .*ECONNREFUSED/) });
    // capture with no agent reads the port itself.
    const capFile = join(dir, 'direct.cap');
    const cap = await runJson(['capture', '-c', alone, '--out', capFile, '--seconds', '1']);
    expect(cap.code).toBe(0);
    expect(cap.json).toMatchObject({ source: 'port', path: simPath });
    expect(cap.json.bytesFromBoard).toBeGreaterThan(500);
    const rep = await runJson(['replay', capFile]);
    expect(rep.code).toBe(0);
    expect(rep.json.frames).toBeGreaterThan(30);
    sim.proc.kill('SIGTERM');

    const noTty = writeConfig('notty.json', {
      dataDir: join(dir, 'alone'),
      serial: { path: join(dir, 'ttyGONE') },
      api: { socketPath: join(dir, 'alone.sock') },
      mqtt: { enabled: false },
    });
    const r2 = await runJson(['selftest', '-c', noTty, '--timeout', '2']);
    expect(r2.code).toBe(4);
    const serial = (r2.json.checks as Array<{ name: string; result: string; detail: string }>).find((c) => c.name === 'serial')!;
    expect(serial).toMatchObject({ result: 'fail', detail: expect.stringMatching(/ttyGONE/) });
    expect((r2.json.checks as Array<{ name: string; result: string }>).find((c) => c.name === 'broker')!.result).toBe('skip');
    const badConfig = await runJson(['selftest', '-c', writeConfig('bad.json', { serial: { baudRate: 'fast' } })]);
    expect(badConfig.code).toBe(4);
    expect(badConfig.json.checks).toEqual([
      expect.objectContaining({ name: 'config', result: 'fail', detail: expect.stringMatching(/serial.baudRate/) }),
    ]);
  });
});

const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });

describe('the terminal view, in a real terminal', () => {
  it('live shows changing figures and sparklines, and quits on q with exit 0', async () => {
    const session = `live-${process.pid}`;
    const status = join(dir, 'live.exit');
    tmux(
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '120',
      '-y',
      '16',
      `${process.execPath} ${BIN} live -c ${config}; echo $? > ${status}; sleep 30`,
    );
    try {
      const screen = () => tmux('capture-pane', '-p', '-t', session).stdout;
      await waitFor(() => /Power\s+\d+ W/.test(screen()), 'live view drawn', 10_000);
      const figures = (s: string) => [...s.matchAll(/(Power|Cadence|Heart)\s+(\d+)/g)].map((m) => Number(m[2]));
      const a = screen();
      expect(a).toMatch(/bike-telemetry live · tech-bike · link open/);
      expect(a).toMatch(/Cadence\s+\d+ rpm\s+[▁▂▃▄▅▆▇█ ]+/);
      expect(a).toMatch(/Heart\s+\d+ bpm/);
      expect(a).toMatch(/Speed [\d.]+ km\/h · Resistance \d+ %/);
      let changed = false;
      for (let i = 0; i < 30 && !changed; i++) {
        await sleep(200);
        changed = JSON.stringify(figures(screen())) !== JSON.stringify(figures(a));
      }
      expect(changed).toBe(true);
      tmux('send-keys', '-t', session, 'q');
      await waitFor(
        () => {
          try {
            return readFileSync(status, 'utf8').trim() !== '';
          } catch {
            return false;
          }
        },
        'live to quit',
        5000,
      );
      expect(readFileSync(status, 'utf8').trim()).toBe('0');
    } finally {
      tmux('kill-session', '-t', session);
    }
  });

  it('spool export draws a progress bar on a terminal', async () => {
    const session = `export-${process.pid}`;
    const out = join(dir, 'export.csv');
    const done = join(dir, 'export.exit');
    tmux(
      'new-session',
      '-d',
      '-s',
      session,
      '-x',
      '120',
      '-y',
      '10',
      `${process.execPath} ${BIN} spool export -c ${config} --out ${out}; echo $? > ${done}; sleep 30`,
    );
    try {
      await waitFor(
        () => {
          try {
            return readFileSync(done, 'utf8').trim() !== '';
          } catch {
            return false;
          }
        },
        'export to finish',
        10_000,
      );
      const screen = tmux('capture-pane', '-p', '-t', session).stdout;
      expect(screen).toMatch(/exporting \[#+\] [\d,]+\/[\d,]+ records/);
      expect(screen).toMatch(/[\d,]+ records written to .*export\.csv/);
    } finally {
      tmux('kill-session', '-t', session);
    }
  });
});
