/**
 * `bike-telemetry run` delivering to a real broker through what the field
 * throws at it: kills at seeded random moments, and a three-minute broker
 * outage mid-ride. Its own file (from cli.test.ts) so the two long tests run
 * beside the others.
 */
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/agent.js';
import { useCliChildren, writeJson } from '../helpers/cli-children.js';
import { waitFor } from '../helpers/wait.js';

const { start, cleanups } = useCliChildren();

describe('run uploads to the broker', () => {
  it('SIGKILL at 20 random moments while the broker is up: every record committed reaches the broker; duplicates only as whole packets', async () => {
    const { Broker } = await import('../helpers/broker.js');
    const { Consumer } = await import('../helpers/consumer.js');
    const Database = (await import('better-sqlite3')).default;
    const broker = await Broker.start();
    cleanups.push(() => broker.down());
    const consumer = await Consumer.connect(broker.url);
    cleanups.push(() => consumer.close());
    const dir = tempDir('cli-kill-');
    const dataDir = join(dir, 'data');
    // A tight rate limit keeps a backlog, so every kill lands with committed, unacknowledged records in the spool.
    const settings = (rateBytesPerS: number) => ({
      device: { id: 'bike-kill-1' },
      dataDir,
      mqtt: { url: broker.url, pollMs: 200, backoffBaseMs: 100, backoffCapMs: 500, rateBytesPerS, deflate: false, maxRecordsPerPacket: 20 },
      log: { records: 'none' },
    });
    const config = writeJson(dir, 'config.json', settings(100)); // below the ~250 B/s the ride produces
    const drainConfig = writeJson(dir, 'drain.json', settings(0));
    // Records seen committed in the spool after each kill: the ones at risk. The consumer must end up with all of them.
    const committed = new Set<number>();
    const snapshot = () => {
      const db = new Database(join(dataDir, 'spool.db'), { readonly: true });
      for (const [seq] of db.prepare('SELECT seq FROM records').raw(true).all() as number[][]) committed.add(seq);
      db.close();
    };
    const seed = 20261125;
    let x = seed;
    const rand = () => (x = (x * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 20; k++) {
      const a = start(['run', '--config', config, '--simulate']);
      await waitFor(() => a.json().some((l) => l.msg === 'uploader connected'), 'uploader connected', 20_000);
      await sleep(300 + rand() * 2500);
      a.proc.kill('SIGKILL');
      await a.exited;
      snapshot();
    }
    const last = start(['run', '--config', config, '--simulate']);
    await waitFor(() => last.json().some((l) => l.msg === 'uploader connected'), 'uploader connected', 20_000);
    await sleep(2500);
    last.proc.kill('SIGTERM');
    expect((await last.exited).code).toBe(0);
    snapshot();
    // Whatever the final run committed was uploaded or is still in the spool; drain it with one more run.
    const drain = start(['run', '--config', drainConfig]);
    await waitFor(
      () => {
        const db = new Database(join(dataDir, 'spool.db'), { readonly: true });
        const n = (db.prepare('SELECT count(*) AS n FROM records').get() as { n: number }).n;
        db.close();
        return n === 0;
      },
      'spool drained',
      30_000,
    );
    drain.proc.kill('SIGTERM');
    await drain.exited;
    await waitFor(() => [...committed].every((s) => consumer.seen.has(s)), 'every committed record at the broker', 20_000);
    expect(committed.size).toBeGreaterThan(100); // the kills really did land with records at risk
    // Each kill closed the agent's socket, so the broker published its last will: offline.
    expect(consumer.status.filter((st) => st.state === 'offline' && st.deviceId === 'bike-kill-1').length).toBeGreaterThanOrEqual(20);
    expect(consumer.status.filter((st) => st.state === 'online').length).toBeGreaterThanOrEqual(21);
    expect(consumer.seen.size).toBeGreaterThanOrEqual(committed.size);
    expect(consumer.invalid).toEqual([]);
    expect(consumer.duplicatesAreWholePackets()).toBe(true);
  }, 240_000);
});

describe('run survives a broker outage', () => {
  it('the broker stopped for three minutes of riding, then restarted: every record arrives, orderable by sequence', async () => {
    const { Broker } = await import('../helpers/broker.js');
    const { Consumer } = await import('../helpers/consumer.js');
    const broker = await Broker.start(Broker.persistence(tempDir('mosq-cli-')));
    cleanups.push(() => broker.down());
    const consumer = await Consumer.connect(broker.url);
    cleanups.push(() => consumer.close());
    const dir = tempDir('cli-outage-');
    const config = writeJson(dir, 'config.json', {
      device: { id: 'bike-outage-1' },
      dataDir: join(dir, 'data'),
      mqtt: { url: broker.url, backoffBaseMs: 500, backoffCapMs: 5000, rateBytesPerS: 0 },
      log: { records: 'none' },
    });
    const a = start(['run', '--config', config, '--simulate']);
    await waitFor(() => consumer.seen.size >= 20, 'live upload', 20_000);
    await broker.down('SIGTERM');
    await sleep(180_000);
    await broker.up();
    await waitFor(() => a.json().filter((l) => l.msg === 'uploader connected').length >= 2, 'reconnected', 30_000);
    await sleep(3000);
    a.proc.kill('SIGTERM');
    expect((await a.exited).code).toBe(0);
    const Database = (await import('better-sqlite3')).default;
    const db = new Database(join(dir, 'data', 'spool.db'), { readonly: true });
    // Records committed while stopping stay in the spool for the next run.
    const left = (db.prepare('SELECT seq FROM records').raw(true).all() as number[][]).map((r) => r[0]);
    db.close();
    expect(left.length).toBeLessThanOrEqual(12);
    expect(left.every((q) => !consumer.seen.has(q))).toBe(true); // nothing deleted unacknowledged, nothing kept acknowledged
    const seqs = [...new Set([...consumer.seen.keys(), ...left])].sort((x, y) => x - y);
    expect(consumer.seen.size).toBeGreaterThan(1800); // three minutes at 10 Hz and more, delivered
    // Contiguous from 1: nothing lost in the outage; each packet in order (validated), so the cloud orders by sequence.
    expect(seqs[0]).toBe(1);
    expect(seqs[seqs.length - 1]).toBe(seqs.length);
    expect(consumer.invalid).toEqual([]);
    expect(consumer.duplicatesAreWholePackets()).toBe(true);
  }, 300_000);
});
