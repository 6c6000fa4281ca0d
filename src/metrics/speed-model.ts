/**
 * Virtual road speed from power (SPEC.md §6.4). A stationary bike has no road
 * speed; the console shows the speed a rider of standard mass would reach on
 * flat ground at that power, so distance is comparable across bikes.
 */
import type { SpeedModelSpec } from './calibration.js';

export interface SpeedModel {
  kmh(powerW: number): number;
  /** Hot-path form: io[0] watts -> io[0] km/h (see Calibration.resistancePctIO for why). */
  kmhIO(io: Float64Array): void;
}

abstract class SpeedModelBase implements SpeedModel {
  private readonly io = new Float64Array(1);
  kmh(powerW: number): number {
    this.io[0] = powerW;
    this.kmhIO(this.io);
    return this.io[0];
  }
  abstract kmhIO(io: Float64Array): void;
}

const G = 9.80665;
const MPH_TO_KMH = 1.609344;

/**
 * Steady state on a flat road without wind: P = v (Crr m g + ½ ρ CdA v²).
 * The depressed cubic a v³ + b v − P = 0 has one real root (Cardano), so no
 * iteration and no allocation.
 */
export class RoadSpeedModel extends SpeedModelBase {
  private readonly a: number;
  private readonly b: number;
  constructor(massKg: number, crr: number, cda: number, rho: number) {
    super();
    this.a = 0.5 * rho * cda;
    this.b = crr * massKg * G;
  }
  kmhIO(io: Float64Array): void {
    const powerW = io[0];
    if (!(powerW > 0)) {
      io[0] = 0;
      return;
    }
    const p = this.b / (3 * this.a);
    const q = powerW / (2 * this.a);
    const d = Math.sqrt(q * q + p * p * p);
    io[0] = (Math.cbrt(q + d) + Math.cbrt(q - d)) * 3.6;
  }
}

/** Speed as a polynomial in sqrt(power), as published for the original bike. */
export class SqrtPowerPolynomialSpeedModel extends SpeedModelBase {
  private readonly low: Float64Array;
  private readonly high: Float64Array;
  private readonly toKmh: number;
  constructor(
    private readonly splitW: number,
    low: readonly number[],
    high: readonly number[],
    unit: 'mph' | 'kmh',
  ) {
    super();
    this.low = Float64Array.from(low);
    this.high = Float64Array.from(high);
    this.toKmh = unit === 'mph' ? MPH_TO_KMH : 1;
  }
  kmhIO(io: Float64Array): void {
    const powerW = io[0];
    if (!(powerW > 0)) {
      io[0] = 0;
      return;
    }
    const c = powerW < this.splitW ? this.low : this.high;
    const r = Math.sqrt(powerW);
    let v = 0;
    for (let i = 0; i < c.length; i++) v = v * r + c[i];
    io[0] = v > 0 ? v * this.toKmh : 0;
  }
}

export function createSpeedModel(spec: SpeedModelSpec): SpeedModel {
  switch (spec.kind) {
    case 'road':
      return new RoadSpeedModel(spec.riderMassKg, spec.rollingResistance, spec.cdaM2, spec.airDensityKgM3);
    case 'sqrt-power-polynomial':
      return new SqrtPowerPolynomialSpeedModel(spec.splitW, spec.low, spec.high, spec.unit);
  }
}
