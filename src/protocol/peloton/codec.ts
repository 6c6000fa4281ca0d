/**
 * The original bike's polled serial bus (firmware-protocol/PELOTON.md).
 *
 *   console -> bike:  [type] [cmd] [sum] F6            type F5 read value, F7 read calibration entry cmd, FE startup
 *   bike -> console:  F1 [cmd] [len] [len ASCII digits, least significant first] [sum] F6
 *
 * sum = the low byte of the sum of every byte before it. There is no length
 * limit on the wire; the parser's is the longest reply any command has (9
 * digits), so a stray byte stream is never buffered without bound.
 *
 * The parser is a byte-at-a-time state machine over one direction or both
 * interleaved (a sniffed recording): it recognises requests and replies by
 * their first byte, checks structure and checksum, and on any error skips to
 * the byte after the next F6, the frame end, to resynchronise. It allocates
 * nothing: a frame is reported as small integers through two callbacks.
 */

export const REQ_READ = 0xf5;
export const REQ_CALIBRATION = 0xf7;
export const REQ_STARTUP = 0xfe;
export const REPLY = 0xf1;
export const END = 0xf6;

/** Value commands (the cmd byte of an F5 request and of its reply). */
export const PelotonCmd = {
  CADENCE: 0x41,
  POWER: 0x44,
  RESISTANCE_RAW: 0x4a,
  RESISTANCE_PCT: 0x49,
  BIKE_ID: 0xfb,
  STARTUP: 0xfe,
  /** The reply to an F7 (calibration entry) request. */
  CALIBRATION: 0xf7,
} as const;

/** The longest run of digits a reply carries. */
export const MAX_DIGITS = 9;

export const PelotonError = {
  CHECKSUM: 0,
  /** A reply whose length byte is 0 or above MAX_DIGITS. */
  LENGTH: 1,
  /** A reply digit that is not ASCII 0-9. */
  DIGIT: 2,
  /** A frame that did not end with F6 where it had to. */
  FRAMING: 3,
  /** Bytes outside any frame (noise, a frame's tail after an error), skipped. */
  STRAY: 4,
} as const;
export const PELOTON_ERROR_NAMES = ['checksum', 'length', 'digit', 'framing', 'stray'] as const;

export interface PelotonFrameSink {
  /** A request: its type byte and cmd byte. */
  onRequest(type: number, cmd: number): void;
  /** A reply: cmd, the decoded number, how many digits carried it. */
  onReply(cmd: number, value: number, digits: number): void;
}

// Parser states.
const HUNT = 0;
const REQ_CMD = 1;
const REQ_SUM = 2;
const REQ_END = 3;
const REP_CMD = 4;
const REP_LEN = 5;
const REP_DIGITS = 6;
const REP_SUM = 7;
const REP_END = 8;
const SKIP = 9;

export class PelotonParser {
  readonly errors = new Uint32Array(PELOTON_ERROR_NAMES.length);
  requests = 0;
  replies = 0;
  private state = HUNT;
  private sum = 0;
  private type = 0;
  private cmd = 0;
  private len = 0;
  private got = 0;
  private value = 0;
  private scale = 1;

  constructor(private readonly sink: PelotonFrameSink) {}

  errorsByName(): Record<string, number> {
    const out: Record<string, number> = {};
    PELOTON_ERROR_NAMES.forEach((n, i) => (out[n] = this.errors[i]));
    return out;
  }

  get errorTotal(): number {
    let n = 0;
    for (let i = 0; i < this.errors.length; i++) if (i !== PelotonError.STRAY) n += this.errors[i];
    return n;
  }

  /** Forget a partial frame (the port was reopened). */
  reset(): void {
    this.state = HUNT;
  }

  feed(b: Uint8Array, start: number, end: number): void {
    for (let i = start; i < end; i++) this.byte(b[i]);
  }

  private fail(kind: number, x: number): void {
    this.errors[kind]++;
    // The frame end resynchronises: skip to the byte after the next F6 (unless this is it).
    this.state = x === END ? HUNT : SKIP;
  }

  private byte(x: number): void {
    switch (this.state) {
      case HUNT:
        if (x === REQ_READ || x === REQ_CALIBRATION || x === REQ_STARTUP) {
          this.type = x;
          this.sum = x;
          this.state = REQ_CMD;
        } else if (x === REPLY) {
          this.sum = x;
          this.state = REP_CMD;
        } else this.errors[PelotonError.STRAY]++;
        return;
      case SKIP:
        this.errors[PelotonError.STRAY]++;
        if (x === END) this.state = HUNT;
        return;
      case REQ_CMD:
        this.cmd = x;
        this.sum = (this.sum + x) & 0xff;
        this.state = REQ_SUM;
        return;
      case REQ_SUM:
        if (x !== this.sum) return this.fail(PelotonError.CHECKSUM, x);
        this.state = REQ_END;
        return;
      case REQ_END:
        if (x !== END) return this.fail(PelotonError.FRAMING, x);
        this.state = HUNT;
        this.requests++;
        this.sink.onRequest(this.type, this.cmd);
        return;
      case REP_CMD:
        this.cmd = x;
        this.sum = (this.sum + x) & 0xff;
        this.state = REP_LEN;
        return;
      case REP_LEN:
        if (x === 0 || x > MAX_DIGITS) return this.fail(PelotonError.LENGTH, x);
        this.len = x;
        this.got = 0;
        this.value = 0;
        this.scale = 1;
        this.sum = (this.sum + x) & 0xff;
        this.state = REP_DIGITS;
        return;
      case REP_DIGITS:
        if (x < 0x30 || x > 0x39) return this.fail(PelotonError.DIGIT, x);
        // Least significant digit first.
        this.value += (x - 0x30) * this.scale;
        this.scale *= 10;
        this.sum = (this.sum + x) & 0xff;
        if (++this.got === this.len) this.state = REP_SUM;
        return;
      case REP_SUM:
        if (x !== this.sum) return this.fail(PelotonError.CHECKSUM, x);
        this.state = REP_END;
        return;
      case REP_END:
        if (x !== END) return this.fail(PelotonError.FRAMING, x);
        this.state = HUNT;
        this.replies++;
        this.sink.onReply(this.cmd, this.value, this.len);
        return;
    }
  }
}

/** Write a request into `out` (4 bytes) at 0; returns 4. */
export function encodeRequestInto(out: Uint8Array, type: number, cmd: number): number {
  out[0] = type;
  out[1] = cmd;
  out[2] = (type + cmd) & 0xff;
  out[3] = END;
  return 4;
}

export function encodeRequest(type: number, cmd: number): Buffer {
  const b = Buffer.alloc(4);
  encodeRequestInto(b, type, cmd);
  return b;
}

/** A reply carrying `value` in `digits` ASCII digits, least significant first (the simulator and the vectors). */
export function encodeReply(cmd: number, value: number, digits: number): Buffer {
  if (!Number.isInteger(value) || value < 0 || value >= 10 ** digits) throw new RangeError(`value ${value} does not fit ${digits} digits`);
  const b = Buffer.alloc(digits + 5);
  b[0] = REPLY;
  b[1] = cmd;
  b[2] = digits;
  let v = value;
  for (let i = 0; i < digits; i++) {
    b[3 + i] = 0x30 + (v % 10);
    v = Math.floor(v / 10);
  }
  let sum = 0;
  for (let i = 0; i < digits + 3; i++) sum = (sum + b[i]) & 0xff;
  b[digits + 3] = sum;
  b[digits + 4] = END;
  return b;
}

/** Digits each reply uses on the wire. */
export const REPLY_DIGITS: Record<number, number> = {
  [PelotonCmd.CADENCE]: 3,
  [PelotonCmd.POWER]: 5,
  [PelotonCmd.RESISTANCE_RAW]: 4,
  [PelotonCmd.RESISTANCE_PCT]: 3,
  [PelotonCmd.CALIBRATION]: 4,
};
