/**
 * Raw resistance (the brake's ADC value) to percent, by the bike's own
 * 31-entry calibration table (entry i is resistance i * 100/30 %), linearly
 * interpolated between neighbouring entries and clamped to 0-100 %.
 */
export const TABLE_ENTRIES = 31;

/** One bike's table, as published; used when the bike's own cannot be read (records are flagged then). */
export const DEFAULT_RESISTANCE_TABLE: readonly number[] = [
  164, 169, 186, 222, 297, 369, 440, 497, 558, 609, 653, 687, 726, 757, 783, 803, 827, 845, 861, 874, 889, 901, 911, 921, 930, 938, 944,
  952, 958, 963, 967,
];

/**
 * `table` holds TABLE_ENTRIES strictly increasing raw values. Returns a
 * fractional number: V8 boxes that when the call is not inlined, so the hot
 * path uses writeResistancePct instead.
 */
export function resistancePct(table: Float64Array, raw: number): number {
  if (!(raw > table[0])) return 0;
  const last = TABLE_ENTRIES - 1;
  if (raw >= table[last]) return 100;
  // 31 entries: a linear scan is as fast as a bisection and simpler.
  let i = 1;
  while (table[i] < raw) i++;
  const lo = table[i - 1];
  const hi = table[i];
  return ((i - 1 + (raw - lo) / (hi - lo)) * 100) / last;
}

/** Why a table read from a bike cannot be used, or null when it can. */
export function tableProblem(t: ArrayLike<number>): string | null {
  if (t.length !== TABLE_ENTRIES) return `${t.length} entries, not ${TABLE_ENTRIES}`;
  for (let i = 1; i < t.length; i++) if (!(t[i] > t[i - 1])) return `entry ${i} (${t[i]}) not above entry ${i - 1} (${t[i - 1]})`;
  return null;
}

/** resistancePct written straight into `dst[i]` (the engine's ring slot): no number crosses a call. */
export function writeResistancePct(table: Float64Array, raw: number, dst: Float32Array, i: number): void {
  if (!(raw > table[0])) {
    dst[i] = 0;
    return;
  }
  const last = TABLE_ENTRIES - 1;
  if (raw >= table[last]) {
    dst[i] = 100;
    return;
  }
  let k = 1;
  while (table[k] < raw) k++;
  const lo = table[k - 1];
  dst[i] = ((k - 1 + (raw - lo) / (table[k] - lo)) * 100) / last;
}
