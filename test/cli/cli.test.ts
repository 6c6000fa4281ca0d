/** The `bike-telemetry` executable as a user runs it: child processes, real ptys. */
import Database from 'better-sqlite3';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { ExitCode } from '../../src/cli/exit-codes.js';
import { createLogger } from '../../src/log/logger.js';
import { ROW_COLUMNS } from '../../src/spool/columns.js';
import { SPOOL_FILE, Spool } from '../../src/spool/spool.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { FwpFrame, FwpResult, MsgType, decodeFrame } from '../../src/protocol/fwp/codec.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { BIN, cli, type Child } from '../helpers/cli.js';
import { useCliChildren, writeJson } from '../helpers/cli-children.js';
import { waitFor } from '../helpers/wait.js';

/** A port nothing listens on: the uploader keeps retrying, as in an outage. */
const NO_BROKER = 'mqtt://127.0.0.1:1';
const { start, cleanups } = useCliChildren();

describe('bike-telemetry run', () => {
  it('run --simulate: logs structured 10 Hz records matching the ride script; SIGTERM stops cleanly within 5 s', async () => {
    const dir = tempDir('cli-run-');
    const script = writeJson(dir, 'ride.json', {
      name: 'steady',
      loop: true,
      segments: [{ durationS: 600, cadenceRpm: 80, resistancePct: 55, hrBpm: 125 }],
    });
    const config = writeJson(dir, 'config.json', {
      device: { id: 'bike-cli-1' },
      dataDir: dir,
      simulator: { script },
      mqtt: { url: NO_BROKER },
    });
    const c = start(['run', '--config', config, '--simulate']);
    await waitFor(() => c.json().filter((l) => l.msg === 'record').length >= 40, '4 s of records', 20_000);

    const lines = c.json();
    expect(c.stdout.filter((l) => l.trim()).every((l) => l.startsWith('{'))).toBe(true);
    expect(lines.every((l) => l.svc === 'bike-telemetry' && l.deviceId === 'bike-cli-1' && typeof l.time === 'string')).toBe(true);
    expect(lines.some((l) => l.msg === 'simulator started')).toBe(true);
    expect(lines.some((l) => l.msg === 'board hello' || l.msg === 'board booted')).toBe(true);
    const cal = loadCalibration('sim-bike-v1');
    const model = cal.brakeWatts(80 * cal.gearRatio, 55);
    const records = lines.filter((l) => l.msg === 'record').map((l) => l.record as Record<string, number>);
    for (const r of records.slice(-15)) {
      expect(Math.abs(r.cadenceRpm - 80)).toBeLessThanOrEqual(1);
      expect(Math.abs(r.powerW - model) / model).toBeLessThanOrEqual(0.02);
      expect(r.hrBpm).toBe(125);
    }

    const t0 = Date.now();
    c.proc.kill('SIGTERM');
    const { code } = await c.exited;
    expect(code).toBe(0);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(c.json().some((l) => l.msg === 'stopped')).toBe(true);
  });

  it('SIGTERM while still starting up stops cleanly too', async () => {
    const dir = tempDir('cli-early-');
    const c = start(['run', '--simulate', '--records', 'none', '-c', writeJson(dir, 'c.json', { dataDir: dir, mqtt: { url: NO_BROKER } })]);
    await waitFor(() => c.stdout.length > 0, 'first log line', 15_000);
    c.proc.kill('SIGTERM');
    expect(await c.exited).toEqual({ code: 0, signal: null });
  });

  it('SIGINT (Ctrl-C) stops cleanly too, also while the uploader cannot reach its broker', async () => {
    const dir = tempDir('cli-int-');
    const c = start(['run', '--simulate', '--records', 'none', '-c', writeJson(dir, 'c.json', { dataDir: dir, mqtt: { url: NO_BROKER } })]);
    await waitFor(() => c.json().some((l) => l.msg === 'link open'), 'link open', 15_000);
    c.proc.kill('SIGINT');
    expect((await c.exited).code).toBe(0);
  });

  it('runs against a separately started simulator via --config serial.path', async () => {
    const dir = tempDir('cli-sep-');
    // A --dir that does not exist yet is made (it used to fail with socat's "No such file or directory").
    const links = join(dir, 'links/board-a');
    const sim = start(['simulate', '--dir', links, '--duration', '30']);
    await waitFor(() => sim.stdout.length > 0, 'simulator path');
    expect(sim.stdout[0]).toBe(join(links, 'console'));
    const config = writeJson(dir, 'config.json', {
      serial: { path: sim.stdout[0] },
      dataDir: dir,
      log: { records: '1hz' },
      mqtt: { enabled: false },
    });
    const c = start(['run', '-c', config]);
    await waitFor(() => c.json().filter((l) => l.msg === 'record').length >= 3, 'records at 1 Hz', 15_000);
    c.proc.kill('SIGTERM');
    sim.proc.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    expect((await sim.exited).code).toBe(0);
    expect(sim.stderr()).toMatch(/simulator stopped/);
  });
});

describe('run spools every record', () => {
  it('SIGTERM commits every record emitted; after SIGKILL at most the last second is lost; sequence numbers never repeat', async () => {
    const Database = (await import('better-sqlite3')).default;
    const dir = tempDir('cli-spool-');
    const config = writeJson(dir, 'config.json', { device: { id: 'bike-spool-1' }, dataDir: join(dir, 'data'), mqtt: { enabled: false } });
    const records = (c: Child) => c.json().filter((l) => l.msg === 'record').length;
    const spooled = () => {
      const db = new Database(join(dir, 'data', 'spool.db'), { readonly: true });
      const seqs = (db.prepare('SELECT seq FROM records ORDER BY seq').raw(true).all() as number[][]).map((r) => r[0]);
      db.close();
      return seqs;
    };

    const a = start(['run', '--config', config, '--simulate']);
    await waitFor(() => records(a) >= 35, '3.5 s of records', 20_000);
    a.proc.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
    const first = spooled();
    expect(first.length).toBe(records(a)); // every record emitted was committed before exit
    expect(first).toEqual(Array.from({ length: first.length }, (_, i) => i + 1));

    const b = start(['run', '--config', config, '--simulate']);
    await waitFor(() => records(b) >= 25, '2.5 s of records', 20_000);
    b.proc.kill('SIGKILL');
    await b.exited;
    const second = spooled().slice(first.length);
    expect(second.length).toBeGreaterThanOrEqual(records(b) - 12); // commits are at least once a second
    expect(second[0]).toBeGreaterThan(first[first.length - 1]);
    for (let i = 1; i < second.length; i++) expect(second[i]).toBe(second[i - 1] + 1);

    const c = start(['run', '--config', config, '--simulate', '--records', 'none']);
    await waitFor(() => c.json().some((l) => l.msg === 'spool open'), 'spool open', 20_000);
    const open = c.json().find((l) => l.msg === 'spool open') as { spool: { records: number; nextSeq: number } };
    expect(open.spool.records).toBe(first.length + second.length);
    // Numbers the killed run may have used are never handed out again.
    expect(open.spool.nextSeq).toBeGreaterThan(second[second.length - 1]);
    c.proc.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
  });
});

describe('run survives what the field throws at it', () => {
  it('a spool overwritten with garbage before start: the agent starts, moves it aside, and records new data', async () => {
    const dir = tempDir('cli-garbage-');
    const dataDir = join(dir, 'data');
    mkdirSync(dataDir, { recursive: true });
    writeFileSync(join(dataDir, 'spool.db'), Buffer.alloc(100_000, 0x5a));
    const config = writeJson(dir, 'config.json', { dataDir, mqtt: { enabled: false }, log: { records: 'none' } });
    const c = start(['run', '--config', config, '--simulate']);
    await waitFor(() => c.json().some((l) => l.msg === 'spool open'), 'spool open', 20_000);
    const moved = c.json().find((l) => l.msg === 'spool unreadable: moved aside, starting a new one') as { movedTo: string } | undefined;
    expect(moved?.movedTo).toMatch(/spool\.db\.corrupt-/);
    expect(readdirSync(dataDir).some((f) => f.startsWith('spool.db.corrupt-'))).toBe(true);
    await sleep(2500);
    c.proc.kill('SIGTERM');
    expect((await c.exited).code).toBe(0);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(dataDir, 'spool.db'), { readonly: true });
    expect((db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n).toBeGreaterThan(15);
    db.close();
  });
});

describe('configuration errors are clear and exit 3', () => {
  const cases: Array<[string, unknown, RegExp]> = [
    ['an unknown key (a typo)', { serial: { baudrate: 9600 } }, /serial\.baudrate: unknown key/],
    ['a wrong type', { serial: { baudRate: '115200' } }, /serial\.baudRate: Expected number, received string/],
    ['an invalid device id', { device: { id: 'bike 1/../x' } }, /device\.id: letters, digits/],
    ['a bad MQTT url', { mqtt: { url: 'not a url' } }, /mqtt\.url: Invalid url/],
    ['an unknown calibration', { metrics: { calibration: 'no-such-bike' } }, /calibration no-such-bike: cannot read/],
  ];
  for (const [what, json, message] of cases) {
    it(`${what}`, async () => {
      const dir = tempDir('cli-bad-');
      const c = start(['run', '--config', writeJson(dir, 'c.json', json)]);
      const { code } = await c.exited;
      expect(code).toBe(3);
      expect(c.stderr()).toMatch(/configuration error/);
      expect(c.stderr()).toMatch(message);
    });
  }

  it('a file that is not JSON, or missing', async () => {
    const dir = tempDir('cli-bad-');
    const file = join(dir, 'c.json');
    writeFileSync(file, '{ "serial": ');
    const a = start(['run', '--config', file]);
    expect((await a.exited).code).toBe(3);
    expect(a.stderr()).toMatch(/c\.json: not valid JSON/);
    const b = start(['run', '--config', join(dir, 'missing.json')]);
    expect((await b.exited).code).toBe(3);
    expect(b.stderr()).toMatch(/missing\.json: cannot read/);
  });

  it('status with no agent to ask reports the file the schema refuses', async () => {
    const dir = tempDir('cli-bad-');
    const file = writeJson(dir, 'c.json', {
      dataDir: join(dir, 'data'),
      api: { socketPath: join(dir, 'api.sock') },
      serial: { baudrate: 9600 },
    });
    const c = start(['status', '--config', file]);
    expect((await c.exited).code).toBe(3);
    expect(c.stderr()).toMatch(/serial\.baudrate: unknown key/);
  });

  it('wrong command-line usage exits 2', async () => {
    const a = start(['run', '--no-such-flag']);
    expect((await a.exited).code).toBe(2);
    expect(a.stderr()).toMatch(/unknown option/);
    const b = start(['simulate', '--rate', '0']);
    expect((await b.exited).code).toBe(2);
    expect(b.stderr()).toMatch(/--rate must be an integer from 1 to 200/);
  });
});

describe('bike-telemetry simulate', () => {
  it('--stdout streams valid fwp frames: HELLO first, then SAMPLEs at the set rate and STATUS at 1 Hz', async () => {
    const c = start(['simulate', '--stdout', '--duration', '2', '--rate', '25']);
    const chunks: Buffer[] = [];
    c.proc.stdout!.removeAllListeners('data');
    c.proc.stdout!.on('data', (d: Buffer) => chunks.push(d));
    expect((await c.exited).code).toBe(0);
    const bytes = Buffer.concat(chunks);
    const f = new FwpFrame();
    const types: number[] = [];
    let start0 = 0;
    let leading = 0;
    for (let i = 0; i < bytes.length; i++) {
      if (bytes[i] !== 0) continue;
      const r = decodeFrame(bytes, start0, i, f);
      start0 = i + 1;
      // Each frame is sent with a leading delimiter too (SPEC.md §2.3).
      if (r === FwpResult.EMPTY) {
        leading++;
        continue;
      }
      expect(r).toBe(FwpResult.OK);
      types.push(f.type);
    }
    expect(leading).toBe(types.length);
    expect(types[0]).toBe(MsgType.HELLO);
    const samples = types.filter((t) => t === MsgType.SAMPLE).length;
    expect(samples).toBeGreaterThanOrEqual(45);
    expect(samples).toBeLessThanOrEqual(55);
    expect(types.filter((t) => t === MsgType.STATUS).length).toBeGreaterThanOrEqual(2);
  });

  it('injects faults on the pty: bad CRC and dropped frames show in the agent counters', async () => {
    const dir = tempDir('cli-faults-');
    const sim = start(['simulate', '--dir', dir, '--bad-crc', '0.1', '--drop', '0.1', '--noise', '200', '--seed', '4']);
    await waitFor(() => sim.stdout.length > 0, 'simulator path');
    const { agent, records } = startAgent(sim.stdout[0]);
    cleanups.push(() => agent.stop());
    await waitFor(() => records.length >= 30, 'records despite faults', 15_000);
    const h = agent.health();
    expect(h.protocol.errors.crc + h.protocol.errors.cobs + h.protocol.errors.truncated).toBeGreaterThan(5);
    expect(h.protocol.lostFrames).toBeGreaterThan(5);
    expect(h.link.state).toBe('open');
    sim.proc.kill('SIGTERM');
    expect((await sim.exited).code).toBe(0);
  });

  it('--unplug-every pulls the cable; the agent reopens each time', async () => {
    const dir = tempDir('cli-unplug-');
    const sim = start(['simulate', '--dir', dir, '--unplug-every', '1.5', '--unplug-for', '0.7']);
    await waitFor(() => sim.stdout.length > 0, 'simulator path');
    const { agent } = startAgent(sim.stdout[0]);
    cleanups.push(() => agent.stop());
    await waitFor(() => agent.link.counters.opens >= 3, 'two replugs', 20_000);
    // Each outage is noticed: by the device vanishing, or else by the silence watchdog.
    expect(agent.link.counters.disconnects + agent.link.counters.silenceTimeouts).toBeGreaterThanOrEqual(2);
    expect(sim.stderr()).toMatch(/"msg":"unplugged"/);
    expect(sim.stderr()).toMatch(/"msg":"replugged"/);
    sim.proc.kill('SIGTERM');
    await sim.exited;
  });
});

describe('bike-telemetry status and spool without an agent', () => {
  it('status and spool with no spool file say so without loading SQLite', async () => {
    const dir = tempDir('cli-nospool-');
    const config = writeJson(dir, 'c.json', { dataDir: join(dir, 'data'), api: { socketPath: join(dir, 'api.sock') } });
    // Says at exit how many of better-sqlite3's modules the process loaded (CommonJS: require.cache holds them).
    const preload = join(dir, 'loaded.cjs');
    writeFileSync(
      preload,
      "process.on('exit', () => process.stderr.write('loaded: ' + JSON.stringify(Object.keys(require.cache).filter((k) => k.includes('better-sqlite3')).length) + '\\n'));",
    );
    const c = cli(['status', '--json', '--config', config], { env: { NODE_OPTIONS: `--require ${preload}` } });
    expect((await c.exited).code).toBe(ExitCode.NOT_RUNNING);
    const out = JSON.parse(c.stdout.join('\n')) as { running: boolean; spool: { error: string } };
    expect(out.running).toBe(false);
    expect(out.spool.error).toBe(`no spool at ${join(dir, 'data', 'spool.db')}`);
    expect(c.stderr()).toMatch(/^loaded: 0$/m);
    const s = cli(['spool', '--config', config], { env: { NODE_OPTIONS: `--require ${preload}` } });
    expect((await s.exited).code).toBe(ExitCode.NOT_FOUND);
    expect(s.stderr()).toContain(`bike-telemetry spool: no spool at ${join(dir, 'data', 'spool.db')}`);
    expect(s.stderr()).toMatch(/^loaded: 0$/m);
  });

  it("status, spool and ports run without V8's optimising compiler, which would only page in its code", async () => {
    // --trace-opt prints a line for each function V8 marks for, or finishes, optimising; this Node does:
    const hot = spawnSync(process.execPath, [
      '--trace-opt',
      '-e',
      'let s = 0; const f = (x) => x * 2 + 1; for (let i = 0; i < 1e7; i++) s += f(i);',
    ]);
    const optimising = /marking .* for optimization|completed (compiling|optimizing)/;
    expect(hot.stdout.toString()).toMatch(optimising);

    const dir = tempDir('cli-quick-');
    const config = writeJson(dir, 'c.json', { dataDir: join(dir, 'data'), api: { socketPath: join(dir, 'api.sock') } });
    const traced = { launcher: { command: process.execPath, args: ['--trace-opt', BIN] } };
    const c = cli(['status', '--config', config], traced);
    expect((await c.exited).code).toBe(ExitCode.NOT_RUNNING);
    expect(c.stdout).toContain(`AGENT NOT RUNNING: the agent is not running: no API socket at ${join(dir, 'api.sock')}`);
    expect(c.stdout.filter((l) => optimising.test(l))).toEqual([]);
    const s = cli(['spool', '--config', config], traced);
    expect((await s.exited).code).toBe(ExitCode.NOT_FOUND);
    expect(s.stdout.filter((l) => optimising.test(l))).toEqual([]);
    // The port lister's modules (serialport, child_process): 16 functions optimised before.
    const p = cli(['ports', '--config', config], traced);
    expect((await p.exited).code).toBe(ExitCode.NOT_FOUND); // the configured port is not there
    expect(p.stdout).toContain('PATH        USB ID  MANUFACTURER  SERIAL');
    expect(p.stdout.filter((l) => optimising.test(l))).toEqual([]);
  });
});

describe('a reader that closes the pipe early (`spool export | head`)', () => {
  it('ends the command at once and quietly: no EPIPE stack trace, the exit code it had', async () => {
    const dir = tempDir('cli-pipe-');
    const dataDir = join(dir, 'data');
    // 20,000 records (about 2 MB of CSV, far beyond a pipe's buffer), written as the agent's schema holds them.
    Spool.open({
      dir: dataDir,
      deviceId: 'pipe-bike',
      maxBytes: 64 << 20,
      synchronous: 'NORMAL',
      memoryRecords: 100,
      log: createLogger('silent'),
    }).close();
    const db = new Database(join(dataDir, SPOOL_FILE));
    const insert = db.prepare(`INSERT INTO records (${ROW_COLUMNS.join(', ')}) VALUES (${ROW_COLUMNS.map(() => '?').join(', ')})`);
    db.transaction(() => {
      for (let i = 1; i <= 20_000; i++)
        insert.run(i, 0, i * 100_000, 1_765_000_000_000 + i * 100, 800, 1500, 450, 2400, 3000, 120, i, i * 10, 0);
    })();
    db.close();
    const config = writeJson(dir, 'c.json', { dataDir, api: { socketPath: join(dir, 'api.sock') } });

    // The reader's end is closed before the command writes (it starts in tens of milliseconds): every write fails.
    const exp = cli(['spool', 'export', '--config', config]);
    exp.proc.stdout!.destroy();
    expect(await exp.exited).toEqual({ code: ExitCode.OK, signal: null });
    expect(exp.stderr()).toBe('');

    // `status` keeps its own code (the agent is not running).
    const status = cli(['status', '--config', config]);
    status.proc.stdout!.destroy();
    expect((await status.exited).code).toBe(ExitCode.NOT_RUNNING);
    expect(status.stderr()).toBe('');
    const rides = cli(['ride', 'list', '--config', config]);
    rides.proc.stdout!.destroy();
    expect((await rides.exited).code).toBe(ExitCode.OK);
    expect(rides.stderr()).toBe('');
  });
});
