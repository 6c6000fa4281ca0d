/**
 * The real recording of an original bike's bus (../shared/data/peloton-bus/,
 * present in CI, absent from a user's clone): parsed by the codec, replayed
 * through the driver and the engine, and through the `replay` command.
 */
import { existsSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { parseCapture } from '../../src/capture/format.js';
import { replayCapture } from '../../src/capture/replay.js';
import { createLogger } from '../../src/log/logger.js';
import { RecordFlag } from '../../src/metrics/record.js';
import { PelotonParser } from '../../src/protocol/peloton/codec.js';
import { cli } from '../helpers/cli.js';

const RECORDING = fileURLToPath(new URL('../../../shared/data/peloton-bus/resistance-stepped-10s.bin', import.meta.url));

describe.skipIf(!existsSync(RECORDING))('the recorded ride on the original bike (resistance stepped every ~10 s)', () => {
  const bytes = existsSync(RECORDING) ? readFileSync(RECORDING) : Buffer.alloc(0);

  it('parses into 8,420 frames (4,210 requests, 4,210 replies) with no checksum error and no stray byte', () => {
    expect(bytes.length).toBe(54_731);
    const p = new PelotonParser({ onRequest: () => {}, onReply: () => {} });
    p.feed(bytes, 0, bytes.length);
    expect(p.requests + p.replies).toBe(8420);
    expect(p.requests).toBe(4210);
    expect(p.replies).toBe(4210);
    expect(p.errorsByName()).toEqual({ checksum: 0, length: 0, digit: 0, framing: 0, stray: 0 });
  });

  it('replays through the driver and the engine: the power, cadence and raw-resistance series, and resistance stepping through the levels', async () => {
    const pct: number[] = [];
    let flagged = 0;
    let records = 0;
    const r = await replayCapture(parseCapture(bytes), {
      protocol: 'peloton',
      calibration: 'peloton-v1',
      realtime: false,
      baudRate: 19200,
      log: createLogger('silent'),
      onRecord: (rec) => {
        records++;
        pct.push(rec.resistancePct);
        if (rec.flags & RecordFlag.DEFAULT_CALIBRATION) flagged++;
      },
    });
    expect(r.frames).toBe(8420);
    expect(r.decodeErrors).toMatchObject({ checksum: 0, length: 0, digit: 0, framing: 0, unmatched: 0 });
    expect(r.lostFrames).toBe(0);
    // Every value reply, as on the wire.
    expect(r.wire).toEqual({
      power: { count: 1404, min: 0, max: 923 },
      cadence: { count: 1403, min: 0, max: 88 },
      resistanceRaw: { count: 1403, min: 155, max: 968 },
    });
    // 4,210 polls at 100 ms: a 10 Hz record for each.
    expect(r.records).toBe(4209);
    expect(r.series.powerW).toEqual({ count: 4209, min: 0, max: 92.3 });
    expect(r.series.cadenceRpm.max).toBe(88);
    expect(r.series.hrBpm.count).toBe(0);
    // The recording does not include the head unit's boot: the default table, flagged on every record.
    expect(r.calibration).toBe('default');
    expect(flagged).toBe(records);

    // Plateaus: runs of at least 5 s within 2 % of their start.
    const plateaus: number[] = [];
    let start = 0;
    for (let i = 1; i <= pct.length; i++) {
      if (i === pct.length || Math.abs(pct[i] - pct[start]) > 2) {
        if (i - start >= 50) plateaus.push(Math.round(pct[start + Math.floor((i - start) / 2)]));
        start = i;
      }
    }
    const top = plateaus.indexOf(Math.max(...plateaus));
    const up = plateaus.slice(0, top + 1);
    const down = plateaus.slice(top);
    // Up from 0 to 100 % in steps of about 10 %, then back down.
    expect(up[0]).toBeLessThanOrEqual(1);
    expect(up[up.length - 1]).toBeGreaterThanOrEqual(98);
    expect(up.length).toBeGreaterThanOrEqual(10);
    for (let i = 1; i < up.length; i++) {
      expect(up[i] - up[i - 1]).toBeGreaterThanOrEqual(7);
      expect(up[i] - up[i - 1]).toBeLessThanOrEqual(13);
    }
    expect(down.length).toBeGreaterThanOrEqual(8);
    for (let i = 1; i < down.length; i++) expect(down[i]).toBeLessThan(down[i - 1]);
    expect(down[down.length - 1]).toBeLessThanOrEqual(10);
  });

  it('`bike-telemetry replay` recognises the dump as the polled bus and prints the same figures', async () => {
    const c = cli(['replay', RECORDING, '--json']);
    const { code } = await c.exited;
    expect(code).toBe(0);
    const j = JSON.parse(c.stdout.join('\n'));
    expect(j).toMatchObject({ protocol: 'peloton', format: 'dump', frames: 8420, records: 4209, calibration: 'default' });
    expect(j.wire.power).toEqual({ count: 1404, min: 0, max: 923 });
    const human = cli(['replay', RECORDING]);
    await human.exited;
    expect(human.stdout.join('\n')).toMatch(/Frames\s+8,420 \(4,210 samples\) · no decode errors/);
  });
});
