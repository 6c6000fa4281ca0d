/**
 * The agent's one periodic timer: order, periods, a failing task, and the
 * real timer (unref'd, stoppable).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { Heartbeat } from '../../src/util/heartbeat.js';

describe('Heartbeat', () => {
  it('runs its tasks in the order they were added, each at the first beat at or after its period', () => {
    const errors: string[] = [];
    const hb = new Heartbeat(250, (task) => errors.push(task));
    const ran: string[] = [];
    hb.every('commit', 250, () => ran.push('commit'));
    hb.every('poll', 1000, () => ran.push('poll'));
    hb.every('odd', 600, () => ran.push('odd'));
    for (let i = 1; i <= 8; i++) {
      hb.beat();
      ran.push(`|${i}`);
    }
    expect(ran.join(' ')).toBe(
      ['commit |1', 'commit |2', 'commit odd |3', 'commit poll |4', 'commit |5', 'commit odd |6', 'commit |7', 'commit poll |8'].join(' '),
    );
    expect(errors).toEqual([]);
  });

  it('a task that throws is reported with its name; the others and later beats go on', () => {
    const errors: Array<[string, unknown]> = [];
    const hb = new Heartbeat(1000, (task, err) => errors.push([task, err]));
    let after = 0;
    let throws = 0;
    hb.every('broken', 1000, () => {
      throws++;
      throw new Error('disk on fire');
    });
    hb.every('after', 1000, () => after++);
    hb.beat();
    hb.beat();
    expect(throws).toBe(2);
    expect(after).toBe(2);
    expect(errors.map(([t, e]) => [t, (e as Error).message])).toEqual([
      ['broken', 'disk on fire'],
      ['broken', 'disk on fire'],
    ]);
  });

  it('refuses a period that is not positive', () => {
    expect(() => new Heartbeat(0, () => {})).toThrow(RangeError);
  });

  it('on its real timer: beats until stopped; a second start adds no second timer', async () => {
    const hb = new Heartbeat(20, () => {});
    let beats = 0;
    hb.every('count', 20, () => beats++);
    hb.start();
    hb.start(); // a second start is a no-op, not a second timer
    await sleep(150);
    hb.stop();
    const atStop = beats;
    expect(atStop).toBeGreaterThanOrEqual(3);
    // Twice the beats in 150 ms would mean two timers.
    expect(atStop).toBeLessThanOrEqual(8);
    await sleep(80);
    expect(beats).toBe(atStop);
  });
});
