/** Link states in the journal: each change once, a failing retry loop summarised (src/link/link-log.ts). */
import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LinkStateLog } from '../../src/link/link-log.js';
import type { Logger } from '../../src/log/logger.js';
import { tempDir } from '../helpers/agent.js';
import { cli } from '../helpers/cli.js';
import { waitFor } from '../helpers/wait.js';

function capture(): { log: Logger; lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> } {
  const lines: Array<{ level: string; obj: Record<string, unknown>; msg: string }> = [];
  const at = (level: string) => (obj: Record<string, unknown>, msg: string) => lines.push({ level, obj, msg });
  // Only the four levels LinkStateLog uses; the rest of pino's surface is not needed here.
  const log = { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger;
  return { log, lines };
}

describe('link state log', () => {
  it('a device missing for an hour, retried every 5 s: one warning, a summary every 10 minutes, and the open that ends it counts the attempts', () => {
    const { log, lines } = capture();
    let now = 1_000_000;
    const l = new LinkStateLog(log, '/dev/flywheel', 600_000, () => now);
    const reason = 'cannot open /dev/flywheel: No such file or directory';
    for (let i = 0; i < 720; i++) {
      l.onState('opening', {});
      l.onState('waiting', { reason, retryInMs: 5000 });
      now += 5000;
    }
    expect(lines.map((x) => x.msg)).toEqual(['link waiting', ...Array(5).fill('link still waiting')]);
    expect(lines[1].obj).toMatchObject({ reason, attempts: 121, sinceS: 600 });
    l.onState('opening', {});
    l.onState('open', {});
    expect(lines.at(-1)).toMatchObject({ level: 'info', msg: 'link open', obj: { failedAttempts: 720, waitedS: 3600 } });
    // Another reason is news; the same failure after a spell of working is news again.
    l.onState('waiting', { reason: 'device disconnected', retryInMs: 100 });
    l.onState('waiting', { reason: 'device disconnected', retryInMs: 200 });
    l.onState('open', {});
    l.onState('waiting', { reason: 'device disconnected', retryInMs: 100 });
    expect(lines.slice(-4).map((x) => x.msg)).toEqual(['link open', 'link waiting', 'link open', 'link waiting']);
  });

  it('the agent with no board attached: one "link waiting" with the cause said once, not one per retry', async () => {
    const dir = tempDir('link-log-');
    const config = join(dir, 'config.json');
    const path = join(dir, 'no-board');
    writeFileSync(
      config,
      JSON.stringify({
        serial: { path, reopenBaseMs: 20, reopenCapMs: 50 },
        dataDir: join(dir, 'data'),
        mqtt: { enabled: false },
        api: { socketPath: join(dir, 'api.sock') },
        log: { statsIntervalS: 0 },
      }),
    );
    const agent = cli(['run', '-c', config]);
    try {
      await waitFor(() => agent.json().some((l) => l.msg === 'agent started'), 'agent started', 20_000);
      await new Promise((r) => setTimeout(r, 1500));
      const link = agent.json().filter((l) => String(l.msg).startsWith('link '));
      expect(link.map((l) => l.msg)).toEqual(['link waiting']);
      expect(link[0].reason).toBe(`cannot open ${path}: No such file or directory`);
    } finally {
      agent.proc.kill('SIGTERM');
      await agent.exited;
    }
  });
});
