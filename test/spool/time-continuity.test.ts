/**
 * The time contract across agent restarts (SPEC.md 7, packet.cddl t_ms): an
 * agent killed with SIGKILL and started again, while the board runs on
 * through its 32-bit clock wrap, keeps engine time non-decreasing in
 * sequence order. Before, each run anchored engine time afresh and t_ms went
 * back to about 0 after a restart.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';
import { cli, type Child } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A simulated board (its clock starting at `clockStartUs`) on a pty, and an agent configuration for it. */
async function boardAndConfig(dir: string, clockStartUs: number, records: 'none' | '1hz'): Promise<{ sim: Child; config: string }> {
  const sim = cli(['simulate', '--dir', join(dir, 'pty'), '--clock-start', String(clockStartUs)]);
  await waitFor(() => sim.stdout.length > 0, 'the simulator', 10_000);
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      serial: { path: sim.stdout[0].trim(), reopenBaseMs: 50, reopenCapMs: 200 },
      dataDir: join(dir, 'data'),
      mqtt: { enabled: false },
      api: { socketPath: join(dir, 'api.sock') },
      log: { records, statsIntervalS: 0 },
    }),
  );
  return { sim, config };
}

/** What the cloud gets: the spool in sequence order, checked to be in order by seq and never back in t_ms. */
async function spoolInOrder(config: string): Promise<Array<{ seq: number; tMs: number; wallTime: string }>> {
  const exp = cli(['spool', 'export', '--format', 'json', '-c', config]);
  expect((await exp.exited).code).toBe(0);
  const rows = exp.stdout.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { seq: number; tMs: number; wallTime: string });
  for (let i = 1; i < rows.length; i++) {
    expect(rows[i].seq).toBeGreaterThan(rows[i - 1].seq);
    expect(rows[i].tMs, `seq ${rows[i].seq}`).toBeGreaterThanOrEqual(rows[i - 1].tMs);
  }
  return rows;
}

describe('engine time across agent restarts', () => {
  it('killed and restarted around the board clock wrap: t_ms non-decreasing in sequence order, the second run after the first', async () => {
    // The board clock starts 3 s before its 32-bit wrap; the wrap comes while the agent is down.
    const { sim, config } = await boardAndConfig(tempDir('time-cont-'), 2 ** 32 - 3_000_000, '1hz');
    const runs: Child[] = [];
    try {
      const run = async (ms: number, signal: NodeJS.Signals): Promise<number[]> => {
        const a = cli(['run', '-c', config]);
        runs.push(a);
        await waitFor(() => a.json().some((l) => l.msg === 'agent started'), 'agent started', 20_000);
        await sleep(ms);
        a.proc.kill(signal);
        await a.exited;
        return a
          .json()
          .filter((l) => l.msg === 'record')
          .map((l) => (l.record as { tUs: number }).tUs);
      };
      const first = await run(2200, 'SIGKILL');
      await sleep(2000);
      const second = await run(2500, 'SIGTERM');
      expect(first.length).toBeGreaterThan(0);
      expect(second.length).toBeGreaterThan(0);
      const rows = await spoolInOrder(config);
      expect(rows.length).toBeGreaterThan(30);
      // The restarted agent's records come after everything the first one kept.
      expect(Math.min(...second)).toBeGreaterThan(rows.filter((r) => r.tMs * 1000 <= Math.max(...first)).at(-1)!.tMs * 1000);
    } finally {
      for (const r of runs) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
      sim.proc.kill('SIGTERM');
      await sim.exited;
    }
  });

  it('a restart whose spool is locked at first: the records held in memory meanwhile are lifted above the previous run, t_ms never goes back', async () => {
    const dir = tempDir('time-held-');
    // The board's 32-bit clock wraps between the runs: the second run's raw engine time starts near 0, below the first's.
    const { sim, config } = await boardAndConfig(dir, 2 ** 32 - 7_000_000, 'none');
    const runs: Child[] = [];
    let holder: ReturnType<typeof spawn> | null = null;
    try {
      // A first run long enough that its engine time is well past where a fresh start would begin.
      const first = cli(['run', '-c', config]);
      runs.push(first);
      await waitFor(() => first.json().some((l) => l.msg === 'agent started'), 'agent started', 20_000);
      await sleep(4000);
      first.proc.kill('SIGKILL');
      await first.exited;
      // Another process holds the spool's write lock past the agent's busy wait: the second run starts without it.
      const sqlite = createRequire(import.meta.url).resolve('better-sqlite3');
      const lockFor = 7000;
      holder = spawn(process.execPath, [
        '-e',
        `const D = require(${JSON.stringify(sqlite)}); const db = new D(${JSON.stringify(join(dir, 'data', 'spool.db'))}); db.exec('BEGIN EXCLUSIVE'); console.log('locked'); setTimeout(() => { db.exec('COMMIT'); process.exit(0); }, ${lockFor});`,
      ]);
      await new Promise<void>((r) => holder!.stdout!.once('data', () => r()));
      const second = cli(['run', '-c', config]);
      runs.push(second);
      await waitFor(
        () => second.json().some((l) => l.msg === 'spool unavailable: holding the newest records in memory and trying again'),
        'held',
        20_000,
      );
      await waitFor(
        () => second.json().some((l) => l.msg === 'spool available: records held in memory are numbered and queued'),
        'adopted',
        30_000,
      );
      const adopted = second.json().find((l) => l.msg === 'spool available: records held in memory are numbered and queued') as {
        adopted: number;
      };
      expect(adopted.adopted).toBeGreaterThan(10);
      await sleep(2000);
      second.proc.kill('SIGTERM');
      expect((await second.exited).code).toBe(0);
      const rows = await spoolInOrder(config);
      for (let i = 1; i < rows.length; i++) {
        expect(Date.parse(rows[i].wallTime), `wall time at seq ${rows[i].seq}`).toBeGreaterThanOrEqual(Date.parse(rows[i - 1].wallTime));
      }
    } finally {
      for (const r of runs) if (r.proc.exitCode === null && r.proc.signalCode === null) r.proc.kill('SIGKILL');
      holder?.kill('SIGKILL');
      sim.proc.kill('SIGTERM');
      await sim.exited;
    }
  }, 90_000);
});
