/**
 * Start-up and configuration findings of issue 15: M7 (an unreadable TLS
 * file), a second agent on the same data folder, an API socket path that
 * names a regular file, and configuration values that broke the agent later.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiHub } from '../../src/api/hub.js';
import { SocketPathError, UnixApiServer } from '../../src/api/unix-server.js';
import { ConfigError, loadConfig, parseConfig } from '../../src/config/load.js';
import { loadCalibration } from '../../src/metrics/calibration.js';
import { SimBoard } from '../../src/sim/board.js';
import { DEMO_RIDE } from '../../src/sim/ride-script.js';
import { SimRunner } from '../../src/sim/runner.js';
import { startAgent, tempDir } from '../helpers/agent.js';
import { cli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe('M7: an unreadable mqtt.tls file', () => {
  it('names the key, leaves the spool recording, and shows upload as unavailable (not "spool unavailable")', async () => {
    const sim = new SimRunner({ board: new SimBoard(loadCalibration('sim-bike-v1'), DEMO_RIDE) });
    const path = await sim.startOnPty(tempDir('m7-pty-'));
    cleanups.push(() => sim.stop());
    const missing = join(tempDir('m7-'), 'ca.pem');
    const { agent } = startAgent(path, { mqtt: { enabled: true, url: 'mqtts://127.0.0.1:1', tls: { caFile: missing } } });
    cleanups.push(() => agent.stop());
    await waitFor(() => agent.health().engine.records > 20, 'records');
    const h = agent.health();
    expect(h.spool.state).toBe('open');
    expect(h.spool.state === 'open' && h.spool.records + h.spool.pendingRecords).toBeGreaterThan(0);
    expect(h.upload).toMatchObject({ state: 'unavailable', error: expect.stringContaining(`mqtt.tls.caFile ${missing}`) });
    expect(h.problems.join(' ')).toMatch(/upload cannot start: mqtt\.tls\.caFile/);
    expect(h.problems.join(' ')).not.toMatch(/spool unavailable/);
  });
});

describe('one agent per data folder', () => {
  it('a second `run` on the same dataDir refuses to start (exit 1) and the first keeps running', async () => {
    const dir = tempDir('lock-');
    const mk = (name: string) => {
      const f = join(dir, `${name}.json`);
      writeFileSync(
        f,
        JSON.stringify({
          dataDir: join(dir, 'data'),
          mqtt: { enabled: false },
          log: { records: 'none' },
          api: { socketPath: join(dir, `${name}.sock`) },
        }),
      );
      return f;
    };
    const first = cli(['run', '--simulate', '-c', mk('a')]);
    cleanups.push(async () => {
      first.proc.kill('SIGTERM');
      await first.exited;
    });
    await waitFor(() => first.json().some((l) => l.msg === 'agent started'), 'first agent', 20_000);
    const second = cli(['run', '--simulate', '-c', mk('b')]);
    expect((await second.exited).code).toBe(1);
    expect(second.json().some((l) => l.msg === 'not starting: another agent is running on this data folder')).toBe(true);
    expect(first.proc.exitCode).toBeNull();
  });
});

describe('api.socketPath naming something that is not a socket', () => {
  it('is refused and left exactly as it was', async () => {
    const file = join(tempDir('sockpath-'), 'precious.txt');
    writeFileSync(file, 'do not delete');
    const hub = new ApiHub({ deviceId: 'x', agentVersion: '0', health: () => ({ healthy: true, problems: [] }) } as never, {
      clientQueueBytes: 1 << 20,
      log: { warn: () => {}, info: () => {} },
    });
    const server = new UnixApiServer(hub, { path: file, maxLineBytes: 1024, maxClients: 1, idleTimeoutMs: 1000 });
    await expect(server.start()).rejects.toBeInstanceOf(SocketPathError);
    expect(readFileSync(file, 'utf8')).toBe('do not delete');
  });
});

describe('configuration that used to break the agent later', () => {
  it('refuses values that overflow timers, non-broker urls and ".." in dataDir, naming the key', () => {
    const bad: Array<[object, RegExp]> = [
      [{ log: { statsIntervalS: 1e9 } }, /log\.statsIntervalS/],
      [{ mqtt: { sessionExpirySec: 2 ** 40 } }, /mqtt\.sessionExpirySec/],
      [{ mqtt: { backoffCapMs: 2 ** 32 } }, /mqtt\.backoffCapMs/],
      [{ serial: { reopenCapMs: 2 ** 32 } }, /serial\.reopenCapMs/],
      [{ mqtt: { url: 'ftp://example.com/' } }, /mqtt\.url: a broker url/],
      [{ mqtt: { url: 'javascript:alert(1)' } }, /mqtt\.url/],
      [{ dataDir: '../../../../etc' }, /dataDir: no "\.\." in the path/],
    ];
    for (const [json, why] of bad) expect(() => parseConfig(json), JSON.stringify(json)).toThrow(why);
    expect(() => parseConfig({ mqtt: { url: 'mqtts://broker.example:8883' } })).not.toThrow();
    expect(() => parseConfig({ log: { statsIntervalS: 1e9 } })).toThrow(ConfigError);
  });

  it("a relative dataDir in a config file is taken from the file's folder, not the working directory", () => {
    const dir = tempDir('reldir-');
    mkdirSync(join(dir, 'etc'));
    writeFileSync(join(dir, 'etc', 'config.json'), JSON.stringify({ dataDir: 'state' }));
    expect(loadConfig(join(dir, 'etc', 'config.json')).dataDir).toBe(join(dir, 'etc', 'state'));
    expect(existsSync(join(dir, 'etc', 'state'))).toBe(false); // loading creates nothing
  });
});
