import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { unitNodeFlags } from '../../scripts/bench/unit-flags.js';

// The V8 flags the shipped unit runs the agent with (systemd/bike-telemetry.service, ExecStart).
const flags = unitNodeFlags();
const HOTPATH = fileURLToPath(new URL('../../scripts/bench/hotpath.js', import.meta.url));

describe("the hot path under the unit's V8 flags", () => {
  it('the unit passes V8 flags (the ones measured in docs/performance.md)', () => {
    expect(flags).toContain('--optimize-for-size');
    expect(flags).toContain('--single-threaded');
  });

  for (const protocol of ['fwp', 'peloton']) {
    it(`${protocol}: a million frames, optimised as it runs in the field, cause zero GC events`, () => {
      // The built agent (dist/), as the unit runs it; a flag that kept the optimising compiler from
      // removing the hot path's temporaries (--lite-mode, --jitless do) would show as collections here.
      const r = spawnSync(process.execPath, [...flags, HOTPATH, '--frames', '1000000', '--protocol', protocol], {
        encoding: 'utf8',
        timeout: 120_000,
      });
      expect(r.status, r.stderr).toBe(0);
      const out = JSON.parse(r.stdout.trim().split('\n').pop() ?? '{}') as { gcEvents: number; heapDeltaBytes: number; records: number };
      expect(out.records).toBeGreaterThan(0);
      expect(out.gcEvents).toBe(0);
      expect(out.heapDeltaBytes).toBeLessThan(1024 * 1024);
    });
  }
});
