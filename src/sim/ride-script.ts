/**
 * Ride scripts drive the simulator: segments of cadence, resistance and heart
 * rate, each either constant or a linear ramp [from, to] over the segment.
 */
import { issuesText } from '../util/zod-issues.js';
import { ConfigError } from '../config/errors.js';
import { readFileSync } from 'node:fs';
import { z } from 'zod';

const Level = z.union([z.number(), z.tuple([z.number(), z.number()])]);

export const RideScriptSchema = z
  .object({
    name: z.string().default('ride'),
    /** Start again from the first segment after the last one; otherwise the rider stops. */
    loop: z.boolean().default(false),
    segments: z
      .array(
        z
          .object({
            durationS: z.number().positive(),
            cadenceRpm: Level,
            resistancePct: Level,
            hrBpm: Level.default(0),
          })
          .strict(),
      )
      .min(1),
  })
  .strict();
export type RideScript = z.infer<typeof RideScriptSchema>;

export interface RideTarget {
  cadenceRpm: number;
  resistancePct: number;
  hrBpm: number;
}

function level(v: number | [number, number], frac: number): number {
  return typeof v === 'number' ? v : v[0] + (v[1] - v[0]) * frac;
}

export class RideScriptPlayer {
  readonly totalS: number;
  constructor(readonly script: RideScript) {
    this.totalS = script.segments.reduce((s, x) => s + x.durationS, 0);
  }

  /** Targets at `tS` seconds into the ride, written into `out`. */
  at(tS: number, out: RideTarget): RideTarget {
    let t = tS;
    if (t >= this.totalS) {
      if (!this.script.loop) {
        const last = this.script.segments[this.script.segments.length - 1];
        out.cadenceRpm = 0;
        out.resistancePct = level(last.resistancePct, 1);
        out.hrBpm = 0;
        return out;
      }
      t %= this.totalS;
    }
    for (const seg of this.script.segments) {
      if (t < seg.durationS) {
        const f = t / seg.durationS;
        out.cadenceRpm = level(seg.cadenceRpm, f);
        out.resistancePct = level(seg.resistancePct, f);
        out.hrBpm = level(seg.hrBpm, f);
        return out;
      }
      t -= seg.durationS;
    }
    return out;
  }
}

export function parseRideScript(json: unknown, source: string): RideScript {
  const r = RideScriptSchema.safeParse(json);
  if (!r.success) {
    throw new ConfigError(`ride script ${source}: ${issuesText(r.error, '(root)', true)}`, 'ride_script_invalid');
  }
  return r.data;
}

export function loadRideScript(file: string): RideScript {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ConfigError(`ride script ${file}: ${(err as Error).message}`, 'ride_script_invalid', { cause: err });
  }
  return parseRideScript(json, file);
}

/** The demo ride: warm-up, intervals, cool-down, repeated. */
export const DEMO_RIDE: RideScript = {
  name: 'demo-intervals',
  loop: true,
  segments: [
    { durationS: 60, cadenceRpm: [60, 85], resistancePct: [25, 35], hrBpm: [95, 120] },
    { durationS: 60, cadenceRpm: 90, resistancePct: 45, hrBpm: [120, 145] },
    { durationS: 30, cadenceRpm: 105, resistancePct: 60, hrBpm: [145, 165] },
    { durationS: 45, cadenceRpm: 75, resistancePct: 35, hrBpm: [165, 130] },
    { durationS: 30, cadenceRpm: 110, resistancePct: 65, hrBpm: [130, 170] },
    { durationS: 60, cadenceRpm: [85, 60], resistancePct: [35, 20], hrBpm: [170, 110] },
  ],
};
