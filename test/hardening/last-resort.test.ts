/**
 * The last line of defence (issue 15): an uncaught exception or unhandled
 * rejection in the real agent process is logged with its stack, the records
 * held in memory are committed, and the process exits non-zero so systemd
 * starts a clean one. The fault is injected by a fixture around the real
 * `run` command, never by anything the agent accepts from outside.
 */
import Database from 'better-sqlite3';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';

const FIXTURE = fileURLToPath(new URL('../fixtures/crash-agent.mjs', import.meta.url));

async function crash(
  kind: 'throw' | 'reject',
): Promise<{ code: number | null; lines: Array<Record<string, unknown>>; spoolRecords: number }> {
  const dir = tempDir('last-resort-');
  const config = join(dir, 'config.json');
  writeFileSync(
    config,
    JSON.stringify({
      device: { id: 'bike-lr' },
      dataDir: join(dir, 'data'),
      mqtt: { enabled: false },
      log: { records: 'all', statsIntervalS: 0 },
      api: { socketPath: join(dir, 'api.sock') },
    }),
  );
  // 2.45 s after start: records are waiting for the next once-a-second commit.
  const proc = spawn(process.execPath, [FIXTURE, config, '2450', kind], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => proc.on('exit', (c) => r(c)));
  const lines = out
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  const db = new Database(join(dir, 'data', 'spool.db'), { readonly: true });
  const spoolRecords = (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
  db.close();
  return { code, lines, spoolRecords };
}

describe('uncaught exceptions and unhandled rejections', () => {
  for (const kind of ['throw', 'reject'] as const) {
    it(`${kind}: logged with its stack, every record made is committed, exit 1`, async () => {
      const r = await crash(kind);
      expect(r.code).toBe(1);
      const fatal = r.lines.find((l) => l.lvl === 'fatal');
      expect(fatal?.kind).toBe(kind === 'throw' ? 'uncaughtException' : 'unhandledRejection');
      const err = fatal?.err as { message: string; stack: string };
      expect(err.message).toMatch(/injected (fault|rejection) for the last-resort test/);
      expect(err.stack).toMatch(/crash-agent\.mjs/);
      const committed = r.lines.find((l) => l.msg === 'held records committed');
      expect(committed).toBeDefined();
      // Every record the agent made (each is logged after it is queued for the spool) is in the spool.
      const made = r.lines.filter((l) => l.msg === 'record').length;
      expect(made).toBeGreaterThan(15);
      expect(r.spoolRecords).toBe(made);
    });
  }
});
