import { describe, expect, it } from 'vitest';
import { LiveRecord } from '../../src/metrics/record.js';
import { RecordBatch } from '../../src/spool/batch.js';

function rec(tUs: number): LiveRecord {
  const r = new LiveRecord();
  r.tUs = tUs;
  r.powerW = tUs;
  return r;
}

/** The records' sequence numbers, oldest first. */
const seqs = (b: RecordBatch): number[] => Array.from({ length: b.length }, (_, k) => b.seq[b.index(k)]);

describe('RecordBatch (the spool queue and the memory buffer of a full disk)', () => {
  it('starts again at index 0 once emptied, so a second of records reuses the same pages', () => {
    const b = new RecordBatch(36_000);
    for (let second = 0; second < 100; second++) {
      for (let i = 0; i < 10; i++) b.push(second * 10 + i + 1, 0, rec(second * 10 + i));
      // What the spool's commit reads: the second's ten records, oldest first, at the front of the arrays.
      expect(b.index(0)).toBe(0);
      expect(b.index(9)).toBe(9);
      expect(seqs(b)).toEqual(Array.from({ length: 10 }, (_, i) => second * 10 + i + 1));
      b.shift(10);
      expect(b.length).toBe(0);
    }
  });

  it('a partial shift keeps the rest in order, and the ring wraps when it fills (oldest dropped and counted)', () => {
    const b = new RecordBatch(5);
    for (let s = 1; s <= 4; s++) b.push(s, 0, rec(s));
    b.shift(3);
    expect(seqs(b)).toEqual([4]);
    for (let s = 5; s <= 10; s++) b.push(s, 0, rec(s));
    // Capacity 5: 4..10 is seven records, the two oldest pushed out.
    expect(seqs(b)).toEqual([6, 7, 8, 9, 10]);
    expect(b.dropped).toBe(2);
    expect([b.droppedFirst, b.droppedLast]).toEqual([4, 5]);
    expect(b.tUs[b.index(0)]).toBe(6);
    // Power (column 1, tenths of a watt) moved with its record.
    expect(b.values[1 * b.capacity + b.index(4)]).toBe(100);
    b.shift(5);
    b.push(11, 0, rec(11));
    expect(b.index(0)).toBe(0);
    expect(seqs(b)).toEqual([11]);
  });
});
