import { describe, expect, it } from 'vitest';
import { BoundedDelimiterParser } from '../../src/link/bounded-delimiter.js';

function collect(max: number) {
  const frames: string[] = [];
  let oversized = 0;
  const p = new BoundedDelimiterParser(max, () => oversized++);
  p.on('data', (f: Buffer) => frames.push(f.toString('hex')));
  return { p, frames, oversized: () => oversized };
}

describe('BoundedDelimiterParser', () => {
  it('splits at 0x00 across chunk boundaries and passes no empty frames', () => {
    const c = collect(255);
    c.p.write(Buffer.from([1, 2, 0, 3]));
    c.p.write(Buffer.from([4, 0, 0, 5]));
    c.p.write(Buffer.from([0]));
    // The empty frame between two delimiters (a leading delimiter) never reaches the driver.
    expect(c.frames).toEqual(['0102', '0304', '05']);
    expect(c.oversized()).toBe(0);
  });

  it('drops a run longer than the cap once, even when it spans many chunks, and keeps the next frame', () => {
    const c = collect(255);
    for (let i = 0; i < 40; i++) c.p.write(Buffer.alloc(1000, 0x55)); // 40 kB without a delimiter
    expect(c.p.buffer.length).toBeLessThanOrEqual(255); // never buffered beyond the cap
    c.p.write(Buffer.from([0x55, 0x00, 0x07, 0x08, 0x00]));
    expect(c.frames).toEqual(['0708']);
    expect(c.oversized()).toBe(1);
  });

  it('drops a too-long frame that arrives complete in one chunk, and accepts one of exactly the cap', () => {
    const c = collect(255);
    c.p.write(Buffer.concat([Buffer.alloc(256, 1), Buffer.from([0]), Buffer.alloc(255, 2), Buffer.from([0])]));
    expect(c.oversized()).toBe(1);
    expect(c.frames).toEqual([Buffer.alloc(255, 2).toString('hex')]);
  });
});
