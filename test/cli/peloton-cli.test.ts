/** The polled-bus protocol through the executables: `run --simulate --protocol peloton`, and `simulate --protocol peloton` with faults. */
import type { PelotonBoardInfo } from '../../src/contracts/health.js';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.js';
import type { AgentHealth } from '../../src/contracts/health.js';
import { tempDir } from '../helpers/agent.js';
import { cli, type Child } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const children: Child[] = [];
afterEach(async () => {
  for (const c of children.splice(0)) {
    if (c.proc.exitCode === null) c.proc.kill('SIGTERM');
    await c.exited;
  }
});
const start = (args: string[]) => {
  const c = cli(args);
  children.push(c);
  return c;
};

describe('peloton through the executables', () => {
  it('run --simulate --protocol peloton: the agent polls the simulated original bike and logs 10 Hz records; status shows the bus', async () => {
    const dir = tempDir('pelo-cli-');
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        dataDir: join(dir, 'data'),
        api: { socketPath: join(dir, 'api.sock') },
        mqtt: { enabled: false },
        log: { records: 'all', statsIntervalS: 0 },
      }),
    );
    const agent = start(['run', '--simulate', '--protocol', 'peloton', '-c', config]);
    await waitFor(() => agent.json().filter((l) => l.msg === 'record').length >= 30, '3 s of records', 20_000);
    const lines = agent.json();
    expect(lines.find((l) => l.msg === 'simulator started')).toMatchObject({ protocol: 'peloton' });
    expect(lines.some((l) => l.msg === "bike's resistance calibration table loaded")).toBe(true);
    const recs = lines.filter((l) => l.msg === 'record').map((l) => l.record as Record<string, number | null>);
    const last = recs.slice(-10);
    for (const r of last) {
      expect(r.powerW as number).toBeGreaterThan(10);
      expect(r.cadenceRpm as number).toBeGreaterThan(40);
      expect(r.resistancePct as number).toBeGreaterThan(0);
      expect(r.speedKmh as number).toBeGreaterThan(5);
      expect(r.flywheelRpm).toBeNull();
    }
    const status = start(['status', '-c', config, '--json']);
    expect((await status.exited).code).toBe(0);
    const h = JSON.parse(status.stdout.join('\n')) as AgentHealth & { running: boolean };
    expect(h.protocol).toMatchObject({ name: 'peloton', requestTimeouts: 0 });
    expect((h.board as PelotonBoardInfo).calibration).toMatchObject({ source: 'bike', error: null });
    const human = start(['status', '-c', config]);
    await human.exited;
    expect(human.stdout.join('\n')).toMatch(/Board\s+polled bus \(peloton\) · resistance table read from the bike/);
  });

  it('simulate --protocol peloton with faults: corrupted replies and noise are counted by the agent; a refused table is flagged', async () => {
    const dir = tempDir('pelo-sim-');
    const sim = start(['simulate', '--protocol', 'peloton', '--dir', dir, '--bad-crc', '0.2', '--noise', '100', '--refuse-calibration']);
    await waitFor(() => sim.stdout.length > 0, 'simulator pty', 10_000);
    const path = sim.stdout[0].trim();
    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        serial: { path, protocol: 'peloton', requestTimeoutMs: 100, requestRetries: 2, calibrationRetryS: 60 },
        dataDir: join(dir, 'data'),
        api: { socketPath: join(dir, 'api.sock') },
        mqtt: { enabled: false },
        log: { records: 'none', statsIntervalS: 0 },
      }),
    );
    const agent = start(['run', '-c', config]);
    await waitFor(() => agent.json().some((l) => l.msg === 'api listening'), 'agent api', 15_000);
    await waitFor(() => agent.json().some((l) => /calibration table did not load/.test(String(l.msg))), 'calibration error', 15_000);
    const c = await ApiClient.connect(join(dir, 'api.sock'));
    await new Promise((r) => setTimeout(r, 3000));
    const h = await c.request('health');
    const live = await c.request('live.history', { seconds: 2 });
    c.close();
    expect(h.protocol.errors.checksum).toBeGreaterThan(0);
    expect(h.protocol.errors.stray).toBeGreaterThan(0);
    expect((h.board as PelotonBoardInfo).calibration).toMatchObject({
      source: 'default',
      error: expect.stringMatching(/entry 0 not answered after 2 attempts/),
    });
    expect(live.powerW.filter((p) => p !== null).length).toBeGreaterThan(10);
  });
});
