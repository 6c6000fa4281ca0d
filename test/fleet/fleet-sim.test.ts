/**
 * The fleet simulator at test scale (docs/fleet-simulator.md has the 1,000-bike runs):
 * real spools and uploaders in two worker processes, a private Mosquitto, the
 * reference consumer counting.
 */
import { describe, expect, it } from 'vitest';
import { cli } from '../helpers/cli.js';
import { tempDir } from '../helpers/agent.js';

async function fleet(args: string[]) {
  const c = cli(['fleet-sim', '--workers', '2', '--dir', tempDir('fleet-'), ...args]);
  const { code } = await c.exited;
  const lines = c.json();
  const result = lines.find((l) => 'result' in l)?.result as Record<string, number | boolean | number[]> | undefined;
  return { code, lines, result: result!, stderr: c.stderr() };
}

describe('fleet-sim', () => {
  it('outage: 100 bikes, broker down 30 s then up: reconnections spread by jitter, every record acknowledged and received, none lost', async () => {
    const r = await fleet([
      '--bikes',
      '100',
      '--seconds',
      '40',
      '--scenario',
      'outage',
      '--outage-at',
      '5',
      '--outage-s',
      '30',
      '--backoff-base-ms',
      '1000',
      '--backoff-cap-ms',
      '32000',
    ]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const res = r.result;
    expect(res.made as number).toBeGreaterThan(100 * 10 * 35);
    expect(res.acknowledged).toBe(res.made);
    expect(res.received).toBe(res.made);
    expect(res.lost).toBe(0);
    expect(res.invalid).toBe(0);
    expect(res.duplicatesAreWholePackets).toBe(true);
    // Per-second lines, the outage visible in them.
    const seconds = r.lines.filter((l) => 't' in l);
    expect(seconds.some((l) => l.phase === 'outage')).toBe(true);
    expect(seconds.every((l) => typeof l.backlog === 'number' && typeof l.connectsOpened === 'number')).toBe(true);
    // After the outage, reconnections are spread over the backoff window, not one burst. With full
    // jitter and a 32 s cap each bike's remaining wait when the broker returns has density
    // (1 - r/32)/16, so the busiest second expects 100/16 = 6.25 reconnections (Poisson). The old
    // bound of 10 (a tenth of the fleet) failed in about one run in ten (11 and 12 seen, issue 11);
    // 2.5 times the expected peak fails about one run in 3,000, and a burst (no jitter) puts 100 in
    // one second. The jitter is seeded per bike (fleet-sim), so the draws are the same every run.
    const hist = res.reconnectHistogram as number[];
    const after = hist.slice(35);
    expect(after.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(100);
    expect(Math.max(...after)).toBeLessThanOrEqual(Math.floor((100 / 16) * 2.5));
  }, 180_000);

  it('a fleet limit set mid-run brings the aggregate upload rate to the sum of the limits within 10 %', async () => {
    // An outage first builds a backlog, so the limit binds.
    const r = await fleet([
      '--bikes',
      '20',
      '--seconds',
      '40',
      '--scenario',
      'outage',
      '--outage-at',
      '6',
      '--outage-s',
      '14',
      '--backoff-base-ms',
      '300',
      '--backoff-cap-ms',
      '2000',
      '--limit-at',
      '4',
      '--limit',
      '100',
    ]);
    expect(r.code).toBe(0);
    const agg = r.result.aggregateBytesPerSAfterLimit as number;
    expect(Math.abs(agg / (20 * 100) - 1)).toBeLessThan(0.1);
    expect(r.result.received).toBe(r.result.made);
  }, 180_000);
});
