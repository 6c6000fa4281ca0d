/**
 * Readings as they arrive from a protocol driver, kept in a preallocated
 * struct of typed arrays. A slot holds either raw counters (the flywheel board)
 * or already computed values (boards that report values); NaN marks a value a
 * reading did not carry.
 */
export const ReadingKind = {
  COUNTERS: 1,
  VALUES: 2,
} as const;

export class SampleRing {
  readonly tUs: Float64Array;
  readonly kind: Uint8Array;
  readonly boardT32: Uint32Array;
  readonly flyTicks: Uint32Array;
  readonly flyTickUs: Uint32Array;
  readonly crankRevs: Uint16Array;
  readonly crankEvt: Uint16Array;
  readonly resistanceRaw: Float32Array;
  readonly resistancePct: Float32Array;
  readonly cadenceRpm: Float32Array;
  readonly powerW: Float32Array;
  readonly hrBpm: Float32Array;
  readonly flags: Uint16Array;
  private readonly mask: number;
  /** Total readings written; the slot of reading n is n & mask. */
  written = 0;

  constructor(capacityPow2: number) {
    if (capacityPow2 < 2 || (capacityPow2 & (capacityPow2 - 1)) !== 0) throw new RangeError('ring capacity must be a power of two');
    const n = capacityPow2;
    this.mask = n - 1;
    this.tUs = new Float64Array(n);
    this.kind = new Uint8Array(n);
    this.boardT32 = new Uint32Array(n);
    this.flyTicks = new Uint32Array(n);
    this.flyTickUs = new Uint32Array(n);
    this.crankRevs = new Uint16Array(n);
    this.crankEvt = new Uint16Array(n);
    this.resistanceRaw = new Float32Array(n);
    this.resistancePct = new Float32Array(n);
    this.cadenceRpm = new Float32Array(n);
    this.powerW = new Float32Array(n);
    this.hrBpm = new Float32Array(n);
    this.flags = new Uint16Array(n);
  }

  get capacity(): number {
    return this.mask + 1;
  }

  /** Claim the next slot; the caller fills every field of it. */
  claim(): number {
    return this.written++ & this.mask;
  }

  /** Slot of reading number n (n < written and n >= written - capacity). */
  slot(n: number): number {
    return n & this.mask;
  }
}
