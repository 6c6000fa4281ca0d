import { describe, expect, it } from 'vitest';
import { measureHotPath } from '../../src/bench/hotpath.js';

describe('hot path discipline', () => {
  it('1,000,000 frames through decode, ring buffer and the 10 Hz engine cause zero GC events', async () => {
    const r = await measureHotPath(1_000_000);
    expect(r.decodeErrors).toBe(0);
    // 50 Hz samples -> one record per 5 frames.
    expect(r.records).toBeGreaterThanOrEqual(199_999);
    expect(r.records).toBeLessThanOrEqual(200_001);
    expect(r.gcEvents).toBe(0);
    // No growth: nothing retained per frame (a small allowance for V8's own bookkeeping).
    expect(r.heapDeltaBytes).toBeLessThan(64 * 1024);
  });
});
