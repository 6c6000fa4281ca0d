/**
 * Is the pipeline alive? What the watchdog asks before each ping. A stuck
 * event loop needs no check (the ping timer cannot fire); this catches a
 * pipeline that runs but no longer does its job:
 * - the board's frames are decoded but no 10 Hz record comes out of the engine;
 * - the spool's once-a-second commit loop has stopped.
 * A board that is absent or silent is not a dead pipeline (the link keeps
 * trying, the agent keeps serving and uploading), and neither is a full disk
 * (records wait in memory).
 */
export interface PipelineSnapshot {
  nowMs: number;
  linkOpen: boolean;
  /** Frames the protocol driver decoded so far. */
  frames: number;
  /** Records the engine emitted so far. */
  records: number;
  /** When the spool last ran its commit, or null without a spool. */
  spoolLastFlushMs: number | null;
}

export interface PipelineVerdict {
  alive: boolean;
  reason: string | null;
}

export class PipelineWatch {
  private last: PipelineSnapshot | null = null;
  /** Since when frames arrive without records (null: records are coming, or no frames). */
  private framesWithoutRecordsSince: number | null = null;

  constructor(
    /** Frames decoded for this long without a record: dead. */
    private readonly stallMs: number,
    /** The spool's commit loop silent for this long: dead. */
    private readonly spoolStallMs: number,
  ) {}

  check(s: PipelineSnapshot): PipelineVerdict {
    const prev = this.last;
    this.last = { ...s };
    if (s.spoolLastFlushMs !== null && s.nowMs - s.spoolLastFlushMs > this.spoolStallMs) {
      return { alive: false, reason: `the spool has not committed for ${Math.round((s.nowMs - s.spoolLastFlushMs) / 1000)} s` };
    }
    if (!prev) return { alive: true, reason: null };
    const framesMoved = s.frames > prev.frames;
    const recordsMoved = s.records > prev.records;
    if (s.linkOpen && framesMoved && !recordsMoved) {
      this.framesWithoutRecordsSince ??= prev.nowMs;
      if (s.nowMs - this.framesWithoutRecordsSince > this.stallMs) {
        return {
          alive: false,
          reason: `frames decoded for ${Math.round((s.nowMs - this.framesWithoutRecordsSince) / 1000)} s without a record from the engine`,
        };
      }
    } else if (recordsMoved || !framesMoved) {
      this.framesWithoutRecordsSince = null;
    }
    return { alive: true, reason: null };
  }
}
