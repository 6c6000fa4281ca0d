/**
 * The record columns as stored and sent: each value a scaled integer, NULL
 * (or the packet's null) for an unknown value. One table serves the spool,
 * the export and the packet encoder.
 */
import type { LiveRecord } from '../metrics/record.js';

export interface ValueColumn {
  /** Column name in the spool and key in packets. */
  name: string;
  /** Stored integer = round(value * scale). */
  scale: number;
  /** The LiveRecord field. */
  field: 'cadenceRpm' | 'powerW' | 'resistancePct' | 'flywheelRpm' | 'speedKmh' | 'hrBpm' | 'distanceM' | 'energyKj';
}

export const VALUE_COLUMNS: readonly ValueColumn[] = [
  { name: 'cadence_drpm', scale: 10, field: 'cadenceRpm' },
  { name: 'power_dw', scale: 10, field: 'powerW' },
  { name: 'resistance_dpct', scale: 10, field: 'resistancePct' },
  { name: 'flywheel_drpm', scale: 10, field: 'flywheelRpm' },
  { name: 'speed_ckmh', scale: 100, field: 'speedKmh' },
  { name: 'hr_bpm', scale: 1, field: 'hrBpm' },
  { name: 'distance_dm', scale: 10, field: 'distanceM' },
  { name: 'energy_j', scale: 1000, field: 'energyKj' },
];

/** A committed record's columns in the order the spool stores them and the uploader reads them (SpoolRow). */
export const ROW_COLUMNS = ['seq', 'ride', 't_us', 'wall_ms', ...VALUE_COLUMNS.map((c) => c.name), 'flags'] as const;

/** Marks an unknown value in the integer columns of a batch. */
export const NULL_INT = -2147483648;

export function scaled(value: number, scale: number): number {
  return value === value ? Math.round(value * scale) : NULL_INT;
}

/**
 * The LiveRecord value of column i, scaled. Reads the field here instead of
 * calling scaled(): a fractional number passed to a call V8 does not inline
 * is boxed, and this runs for every column of every record.
 */
export function scaledField(r: LiveRecord, i: number): number {
  let v: number;
  let k: number;
  switch (i) {
    case 0:
      v = r.cadenceRpm;
      k = 10;
      break;
    case 1:
      v = r.powerW;
      k = 10;
      break;
    case 2:
      v = r.resistancePct;
      k = 10;
      break;
    case 3:
      v = r.flywheelRpm;
      k = 10;
      break;
    case 4:
      v = r.speedKmh;
      k = 100;
      break;
    case 5:
      v = r.hrBpm;
      k = 1;
      break;
    case 6:
      v = r.distanceM;
      k = 10;
      break;
    default:
      v = r.energyKj;
      k = 1000;
  }
  return v === v ? Math.round(v * k) : NULL_INT;
}
