/**
 * The typed way into the engine for protocol drivers: a reading is filled in
 * one of two registers the engine owns (allocated once) and committed. The
 * driver names what it measured; the engine alone knows how its ring stores
 * it. Fields hold doubles in place (no number is boxed, nothing is allocated
 * per reading); test/metrics/zero-alloc.test.ts holds the line.
 */

/** A board that counts (fwp): cumulative crank revolutions and flywheel ticks with their event times. */
export class CounterReading {
  /** Engine time, µs (the board clock unwrapped). */
  tUs = 0;
  /** The board's own 32-bit clock, µs. */
  boardT32 = 0;
  flyTicks = 0;
  flyTickUs = 0;
  /** Cumulative, 16-bit, with its event time in 1/1024 s (Bluetooth CSC style). */
  crankRevs = 0;
  crankEvt = 0;
  resistanceRaw = 0;
  /** 0: the board has no heart rate. */
  hrBpm = 0;
  flags = 0;
}

/** A board that computes for itself (the polled bus): each value optional (NaN: not in this reading). */
export class ValueReading {
  tUs = 0;
  cadenceRpm = NaN;
  powerW = NaN;
  resistanceRaw = NaN;
  resistancePct = NaN;
  /** 0: no heart rate (an explicit absence); NaN: not in this reading. */
  hrBpm = NaN;
  flags = 0;

  /** Start a reading at `tUs` that carries nothing yet. */
  clear(tUs: number): void {
    this.tUs = tUs;
    this.cadenceRpm = NaN;
    this.powerW = NaN;
    this.resistanceRaw = NaN;
    this.resistancePct = NaN;
    this.hrBpm = NaN;
    this.flags = 0;
  }
}
