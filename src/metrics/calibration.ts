/**
 * Per-bike-model calibration (firmware-protocol/calibration/*.json, model in
 * SPEC.md §6): brake-position raw -> resistance %, and brake power over
 * (flywheel rpm, resistance %). Loaded once at start into typed arrays so the
 * per-tick lookups allocate nothing.
 */
import { issuesText } from '../util/zod-issues.js';
import { ConfigError } from '../config/errors.js';
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';

export const RESISTANCE_TABLE_POINTS = 31;

const SpeedModelSchema = z.discriminatedUnion('kind', [
  z
    .object({
      kind: z.literal('road'),
      riderMassKg: z.number().positive(),
      rollingResistance: z.number().positive(),
      cdaM2: z.number().positive(),
      airDensityKgM3: z.number().positive(),
    })
    .strict(),
  z
    .object({
      kind: z.literal('sqrt-power-polynomial'),
      /** Below this power the `low` coefficients apply. */
      splitW: z.number().positive(),
      /** mph as a polynomial in sqrt(W), highest power first (Horner). */
      low: z.array(z.number()).min(1),
      high: z.array(z.number()).min(1),
      unit: z.enum(['mph', 'kmh']),
    })
    .strict(),
]);
export type SpeedModelSpec = z.infer<typeof SpeedModelSchema>;

const increasing = (xs: number[]): boolean => xs.every((x, i) => i === 0 || x > xs[i - 1]);

export const CalibrationSchema = z
  .object({
    model: z.string().min(1),
    version: z.number().int().positive(),
    description: z.string().optional(),
    ticksPerRev: z.number().int().positive(),
    /** Flywheel revolutions per crank revolution; used by the simulator. */
    gearRatio: z.number().positive(),
    flywheelInertiaKgM2: z.number().nonnegative(),
    resistanceRawTable: z
      .array(z.number().int().min(0).max(65535))
      .length(RESISTANCE_TABLE_POINTS)
      .refine(increasing, 'must be strictly increasing'),
    brakePower: z
      .object({
        flywheelRpm: z.array(z.number().nonnegative()).min(2).refine(increasing, 'must be strictly increasing'),
        resistancePct: z.array(z.number().min(0).max(100)).min(2).refine(increasing, 'must be strictly increasing'),
        /** watts[i][j] at resistancePct[i], flywheelRpm[j]. */
        watts: z.array(z.array(z.number().nonnegative())),
      })
      .strict()
      .refine(
        (b) => b.watts.length === b.resistancePct.length && b.watts.every((row) => row.length === b.flywheelRpm.length),
        'watts must have one row per resistancePct and one column per flywheelRpm',
      ),
    speedModel: SpeedModelSchema,
  })
  .strict();
export type CalibrationSpec = z.infer<typeof CalibrationSchema>;

export class Calibration {
  readonly model: string;
  readonly ticksPerRev: number;
  readonly gearRatio: number;
  readonly inertia: number;
  private readonly rawTable: Float64Array;
  private readonly rpmAxis: Float64Array;
  private readonly pctAxis: Float64Array;
  /** Row-major: pct index * rpm count + rpm index. */
  private readonly grid: Float64Array;

  constructor(readonly spec: CalibrationSpec) {
    this.model = spec.model;
    this.ticksPerRev = spec.ticksPerRev;
    this.gearRatio = spec.gearRatio;
    this.inertia = spec.flywheelInertiaKgM2;
    this.rawTable = Float64Array.from(spec.resistanceRawTable);
    this.rpmAxis = Float64Array.from(spec.brakePower.flywheelRpm);
    this.pctAxis = Float64Array.from(spec.brakePower.resistancePct);
    this.grid = Float64Array.from(spec.brakePower.watts.flat());
  }

  private readonly io = new Float64Array(2);

  /** Resistance % (0-100) from the brake position sensor, clamped to the table. */
  resistancePct(raw: number): number {
    this.io[0] = raw;
    this.resistancePctIO(this.io);
    return this.io[0];
  }

  /**
   * Hot-path forms (the `IO` methods): arguments in io[0], io[1], result in
   * io[0]. V8 boxes fractional numbers passed to or returned from calls it
   * does not inline; a typed array carries them unboxed, so the 10 Hz engine
   * allocates nothing.
   */
  resistancePctIO(io: Float64Array): void {
    resistancePctFromTable(this.rawTable, io);
  }

  /** Inverse of resistancePct: the raw reading expected at a given %. */
  rawForPct(pct: number): number {
    const t = this.rawTable;
    const x = (Math.min(100, Math.max(0, pct)) * (RESISTANCE_TABLE_POINTS - 1)) / 100;
    const i = Math.min(RESISTANCE_TABLE_POINTS - 2, Math.floor(x));
    return t[i] + (t[i + 1] - t[i]) * (x - i);
  }

  /**
   * Brake power by bilinear interpolation; inputs are clamped to the grid so a
   * sensor glitch cannot extrapolate to absurd watts.
   */
  brakeWatts(flywheelRpm: number, pct: number): number {
    this.io[0] = flywheelRpm;
    this.io[1] = pct;
    this.brakeWattsIO(this.io);
    return this.io[0];
  }

  /** io[0] flywheel rpm, io[1] resistance % -> io[0] brake watts. */
  brakeWattsIO(io: Float64Array): void {
    const ra = this.rpmAxis;
    const pa = this.pctAxis;
    const nr = ra.length;
    const np = pa.length;
    const r = Math.min(ra[nr - 1], Math.max(ra[0], io[0]));
    const p = Math.min(pa[np - 1], Math.max(pa[0], io[1]));
    let j = 0;
    while (j < nr - 2 && r > ra[j + 1]) j++;
    let i = 0;
    while (i < np - 2 && p > pa[i + 1]) i++;
    const fr = (r - ra[j]) / (ra[j + 1] - ra[j]);
    const fp = (p - pa[i]) / (pa[i + 1] - pa[i]);
    const g = this.grid;
    const w00 = g[i * nr + j];
    const w01 = g[i * nr + j + 1];
    const w10 = g[(i + 1) * nr + j];
    const w11 = g[(i + 1) * nr + j + 1];
    const lo = w00 + (w01 - w00) * fr;
    const hi = w10 + (w11 - w10) * fr;
    io[0] = lo + (hi - lo) * fp;
  }
}

/**
 * Linear interpolation in an increasing table of raw values for 0 % ..
 * 100 % in equal steps (31 entries: 0, 3.33, ..., 100 %), io[0] raw -> io[0] %.
 * Shared by every protocol whose bike reports a brake position (the original
 * bike sends its table at boot). In/out through io: see resistancePctIO.
 */
export function resistancePctFromTable(t: Float64Array, io: Float64Array): void {
  const raw = io[0];
  const last = t.length - 1;
  if (raw <= t[0]) io[0] = 0;
  else if (raw >= t[last]) io[0] = 100;
  else {
    let i = 0;
    while (raw > t[i + 1]) i++;
    io[0] = ((i + (raw - t[i]) / (t[i + 1] - t[i])) * 100) / last;
  }
}

export function parseCalibration(json: unknown, source: string): Calibration {
  const parsed = CalibrationSchema.safeParse(json);
  if (!parsed.success) {
    throw new ConfigError(`calibration ${source}: ${issuesText(parsed.error, '(root)', true)}`, 'calibration_invalid');
  }
  return new Calibration(parsed.data);
}

/** firmware-protocol/calibration, found from both src/ (tests) and dist/ (built). */
export function calibrationDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  return resolve(here, '..', '..', 'firmware-protocol', 'calibration');
}

/** Load by model name (shipped file) or by path to a JSON file. */
export function loadCalibration(nameOrPath: string): Calibration {
  const file = /[/\\]|\.json$/.test(nameOrPath) ? resolve(nameOrPath) : join(calibrationDir(), `${nameOrPath}.json`);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`calibration ${nameOrPath}: cannot read ${file}: ${(err as Error).message}`, 'calibration_invalid', {
      cause: err,
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    throw new ConfigError(`calibration ${file}: not valid JSON: ${(err as Error).message}`, 'calibration_invalid', { cause: err });
  }
  return parseCalibration(json, file);
}
