/**
 * A virtual original bike on its polled bus: it says nothing until asked,
 * and answers each request with the rider's current cadence, power or raw
 * resistance (from a ride script and the calibrated brake model) or an entry
 * of its resistance calibration table. Transport-free like SimBoard: the
 * runner puts it on a pty.
 *
 * Faults: noise bytes on the line, replies with a bad checksum, polls left
 * unanswered, a bike gone silent, and a calibration table it refuses to give.
 */
import type { Calibration } from '../metrics/calibration.js';
import {
  encodeReply,
  encodeRequest,
  PelotonCmd,
  PelotonParser,
  REPLY_DIGITS,
  REQ_CALIBRATION,
  REQ_READ,
  REQ_STARTUP,
} from '../protocol/peloton/codec.js';
import { DEFAULT_RESISTANCE_TABLE, TABLE_ENTRIES } from '../protocol/peloton/resistance.js';
import { RideScriptPlayer, type RideScript, type RideTarget } from './ride-script.js';
import { seededRandom } from './rng.js';
import type { SimulatedBoard } from './runner.js';

export interface PelotonFaults {
  noiseBytesPerS?: number;
  /** Fraction of replies sent with a wrong checksum. */
  badChecksumRate?: number;
  /** Fraction of polls not answered. */
  dropRate?: number;
  /** Answer nothing at all (the bike's board hung, the cable is half out). */
  silent?: boolean;
  /** Answer polls but not calibration-table requests. */
  refuseCalibration?: boolean;
}

export interface PelotonSimOptions {
  seed?: number;
  /** The bike's own resistance table (default: the published one). */
  table?: readonly number[];
  faults?: PelotonFaults;
}

export class PelotonSimCounters {
  requests = 0;
  replies = 0;
  dropped = 0;
  corrupted = 0;
  noiseBytes = 0;
  calibrationRequests = 0;
}

export class PelotonSimBoard implements SimulatedBoard {
  readonly counters = new PelotonSimCounters();
  readonly player: RideScriptPlayer;
  readonly target: RideTarget = { cadenceRpm: 0, resistancePct: 0, hrBpm: 0 };
  readonly table: readonly number[];
  private readonly faults: Required<PelotonFaults>;
  private readonly rand: () => number;
  private readonly parser: PelotonParser;
  private out: Buffer[] = [];
  /** The last requests' (type << 8 | cmd), oldest first, for tests that check the polling. */
  readonly requestLog: number[] = [];
  private elapsedUs = 0;
  private noiseCarry = 0;

  constructor(
    private readonly cal: Calibration,
    script: RideScript,
    opts: PelotonSimOptions = {},
  ) {
    this.player = new RideScriptPlayer(script);
    this.rand = seededRandom(opts.seed ?? 1);
    this.table = opts.table ?? DEFAULT_RESISTANCE_TABLE;
    this.faults = { noiseBytesPerS: 0, badChecksumRate: 0, dropRate: 0, silent: false, refuseCalibration: false, ...opts.faults };
    this.parser = new PelotonParser({ onRequest: (t, c) => this.onRequest(t, c), onReply: () => {} });
  }

  setFaults(f: PelotonFaults): void {
    Object.assign(this.faults, f);
  }

  boot(): Buffer[] {
    return [];
  }

  advanceTo(elapsedUs: number): Buffer[] {
    this.elapsedUs = elapsedUs;
    this.player.at(elapsedUs / 1e6, this.target);
    const out: Buffer[] = [];
    if (this.faults.noiseBytesPerS > 0) {
      const due = (this.faults.noiseBytesPerS * (elapsedUs - this.noiseCarry)) / 1e6;
      if (due >= 1) {
        const n = Math.floor(due);
        this.noiseCarry = elapsedUs;
        const b = Buffer.alloc(n);
        for (let i = 0; i < n; i++) b[i] = Math.floor(this.rand() * 256);
        this.counters.noiseBytes += n;
        out.push(b);
      }
    }
    return out;
  }

  receive(chunk: Buffer): Buffer[] {
    this.out = [];
    this.parser.feed(chunk, 0, chunk.length);
    return this.out;
  }

  /** What the bike reports now, as the integers on the wire. */
  wireValue(cmd: number): number {
    this.player.at(this.elapsedUs / 1e6, this.target);
    const cadence = Math.round(this.target.cadenceRpm);
    switch (cmd) {
      case PelotonCmd.CADENCE:
        return cadence;
      case PelotonCmd.POWER:
        return Math.round(this.cal.brakeWatts(cadence * this.cal.gearRatio, this.target.resistancePct) * 10);
      case PelotonCmd.RESISTANCE_RAW:
        return Math.round(this.rawFor(this.target.resistancePct));
      case PelotonCmd.RESISTANCE_PCT:
        return Math.round(this.target.resistancePct);
      default:
        return 0;
    }
  }

  /** The raw value the bike's table maps to `pct` (its inverse, linear between entries). */
  rawFor(pct: number): number {
    const x = (Math.max(0, Math.min(100, pct)) / 100) * (TABLE_ENTRIES - 1);
    const i = Math.min(TABLE_ENTRIES - 2, Math.floor(x));
    return this.table[i] + (x - i) * (this.table[i + 1] - this.table[i]);
  }

  private onRequest(type: number, cmd: number): void {
    this.counters.requests++;
    this.requestLog.push((type << 8) | cmd);
    if (this.requestLog.length > 1000) this.requestLog.shift();
    if (this.faults.silent) return;
    let reply: Buffer | null = null;
    if (type === REQ_READ && REPLY_DIGITS[cmd]) {
      if (this.rand() < this.faults.dropRate) {
        this.counters.dropped++;
        return;
      }
      reply = encodeReply(cmd, this.wireValue(cmd), REPLY_DIGITS[cmd]);
    } else if (type === REQ_CALIBRATION) {
      this.counters.calibrationRequests++;
      if (this.faults.refuseCalibration || cmd >= TABLE_ENTRIES) return;
      reply = encodeReply(PelotonCmd.CALIBRATION, this.table[cmd], 4);
    } else if (type === REQ_STARTUP) {
      reply = encodeReply(PelotonCmd.STARTUP, 0, 1);
    }
    if (!reply) return;
    if (this.rand() < this.faults.badChecksumRate) {
      reply[reply.length - 2] ^= 0x5a;
      this.counters.corrupted++;
    }
    this.counters.replies++;
    this.out.push(reply);
  }
}

/** Wire bytes of `pairs` poll/reply exchanges of a ride, and where each frame starts and ends. */
export function pelotonWireStream(pairs: number): { bytes: Buffer; starts: Uint32Array; ends: Uint32Array } {
  const cmds = [PelotonCmd.POWER, PelotonCmd.RESISTANCE_RAW, PelotonCmd.CADENCE];
  const parts: Buffer[] = [];
  const starts = new Uint32Array(pairs * 2);
  const ends = new Uint32Array(pairs * 2);
  let at = 0;
  for (let i = 0; i < pairs; i++) {
    const cmd = cmds[i % 3];
    const req = encodeRequest(REQ_READ, cmd);
    const k = Math.floor(i / 3);
    const value = cmd === PelotonCmd.POWER ? 1500 + (k % 900) : cmd === PelotonCmd.CADENCE ? 60 + (k % 50) : 300 + (k % 600);
    const rep = encodeReply(cmd, value, REPLY_DIGITS[cmd]);
    starts[2 * i] = at;
    ends[2 * i] = at + req.length;
    at += req.length;
    starts[2 * i + 1] = at;
    ends[2 * i + 1] = at + rep.length;
    at += rep.length;
    parts.push(req, rep);
  }
  return { bytes: Buffer.concat(parts), starts, ends };
}
