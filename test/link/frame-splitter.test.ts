import { describe, expect, it } from 'vitest';
import { createRequire } from 'node:module';
import type * as Delimiter from '@serialport/parser-delimiter';
import { FrameSplitter } from '../../src/link/frame-splitter.js';
import { seededRandom } from '../../src/sim/rng.js';

const { DelimiterParser } = createRequire(import.meta.url)('@serialport/parser-delimiter') as typeof Delimiter;

function collect(max: number) {
  const frames: string[] = [];
  const s = new FrameSplitter(max, (b, start, end) => frames.push(b.toString('hex', start, end)));
  const write = (bytes: number[] | Buffer) => {
    const b = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes);
    s.feed(b, 0, b.length);
  };
  return { s, frames, write };
}

describe('FrameSplitter', () => {
  it('splits at 0x00 across read boundaries and hands on no empty frames (0x00 runs are padding)', () => {
    const c = collect(255);
    c.write([0, 1, 2, 0, 3]);
    c.write([4, 0, 0, 5]);
    c.write([6, 0]);
    expect(c.frames).toEqual(['0102', '0304', '0506']);
    expect(c.s.frames).toBe(3);
    expect(c.s.oversized).toBe(0);
  });

  it('hands on frames where they lie in the bytes read, and only the bytes between from and to', () => {
    const seen: Array<[Buffer, number, number]> = [];
    const s = new FrameSplitter(255, (b, start, end) => seen.push([b, start, end]));
    const read = Buffer.from([9, 9, 1, 2, 0, 3, 0, 9, 9]);
    s.feed(read, 2, 7);
    expect(seen.map(([b, start, end]) => [b === read, start, end])).toEqual([
      [true, 2, 4],
      [true, 5, 6],
    ]);
  });

  it('drops a run longer than the cap once, even across many reads, buffering at most the cap, and keeps the next frame', () => {
    const c = collect(255);
    for (let i = 0; i < 40; i++) c.write(Buffer.alloc(1000, 0x55)); // 40 kB without a delimiter
    c.write([0x55, 0x00, 0x07, 0x08, 0x00]);
    expect(c.frames).toEqual(['0708']);
    expect(c.s.oversized).toBe(1);
  });

  it('drops a too-long frame that arrives whole in one read, and accepts one of exactly the cap, whole or in pieces', () => {
    const c = collect(255);
    c.write(Buffer.concat([Buffer.alloc(256, 1), Buffer.from([0]), Buffer.alloc(255, 2), Buffer.from([0])]));
    c.write(Buffer.alloc(200, 3));
    c.write(Buffer.concat([Buffer.alloc(55, 3), Buffer.from([0])]));
    expect(c.s.oversized).toBe(1);
    expect(c.frames).toEqual([Buffer.alloc(255, 2).toString('hex'), Buffer.alloc(255, 3).toString('hex')]);
  });

  it('forgets a partial frame on reset (a reopened port)', () => {
    const c = collect(255);
    c.write([1, 2, 3]);
    c.s.reset();
    c.write([4, 0]);
    expect(c.frames).toEqual(['04']);
  });

  it('gives the frames @serialport/parser-delimiter gives, on seeded random streams cut at random places', () => {
    const random = seededRandom(20261206);
    for (let round = 0; round < 50; round++) {
      // Frames of 0-40 bytes (never over the cap, which the library lacks), zeros only as delimiters, some doubled.
      const parts: number[] = [];
      for (let f = 0; f < 200; f++) {
        const len = Math.floor(random() * 41);
        for (let i = 0; i < len; i++) parts.push(1 + Math.floor(random() * 255));
        parts.push(0);
        if (random() < 0.05) parts.push(0);
      }
      const stream = Buffer.from(parts);
      const ours: string[] = [];
      const s = new FrameSplitter(64, (b, start, end) => ours.push(b.toString('hex', start, end)));
      const theirs: string[] = [];
      const p = new DelimiterParser({ delimiter: [0x00], includeDelimiter: false });
      p.on('data', (f: Buffer) => theirs.push(f.toString('hex')));
      for (let at = 0; at < stream.length;) {
        const n = 1 + Math.floor(random() * 150);
        const piece = stream.subarray(at, Math.min(stream.length, at + n));
        s.feed(piece, 0, piece.length);
        p.write(piece);
        at += n;
      }
      expect(ours).toEqual(theirs);
      expect(s.oversized).toBe(0);
    }
  });
});
