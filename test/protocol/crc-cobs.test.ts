import { describe, expect, it } from 'vitest';
import { COBS_ERR_OVERRUN, COBS_ERR_ZERO_BYTE, cobsDecode, cobsEncode } from '../../src/protocol/fwp/cobs.js';
import { crc16CcittFalse } from '../../src/protocol/fwp/crc16.js';
import { seededRandom } from '../../src/sim/rng.js';

describe('CRC-16/CCITT-FALSE', () => {
  it('has the catalogue check value 0x29B1 for "123456789"', () => {
    const b = Buffer.from('123456789', 'ascii');
    expect(crc16CcittFalse(b, 0, b.length)).toBe(0x29b1);
  });
  it('is 0xFFFF (the init value) over no bytes', () => {
    expect(crc16CcittFalse(new Uint8Array(0), 0, 0)).toBe(0xffff);
  });
});

describe('COBS', () => {
  const rand = seededRandom(42);
  const roundTrip = (p: Uint8Array): Uint8Array => {
    const enc = new Uint8Array(p.length + 2);
    const n = cobsEncode(p, 0, p.length, enc, 0);
    expect(enc.subarray(0, n).includes(0)).toBe(false);
    expect(n).toBeLessThanOrEqual(p.length + 1);
    const dec = new Uint8Array(254);
    const m = cobsDecode(enc, 0, n, dec);
    expect(m).toBe(p.length);
    return dec.subarray(0, m);
  };

  it('round-trips every length from 0 to 254 with random content and with runs of zeros', () => {
    for (let len = 0; len <= 254; len++) {
      const p = new Uint8Array(len);
      for (let i = 0; i < len; i++) p[i] = rand() < 0.2 ? 0 : Math.floor(rand() * 256);
      expect(Buffer.from(roundTrip(p))).toEqual(Buffer.from(p));
      expect(Buffer.from(roundTrip(new Uint8Array(len)))).toEqual(Buffer.from(new Uint8Array(len)));
    }
  });

  it('keeps a 254-byte payload without zeros at 255 encoded bytes (one block)', () => {
    const p = new Uint8Array(254).fill(0x11);
    const enc = new Uint8Array(260);
    expect(cobsEncode(p, 0, 254, enc, 0)).toBe(255);
    expect(enc[0]).toBe(0xff);
  });

  it('rejects a block that runs past the end and a zero inside a frame', () => {
    const out = new Uint8Array(254);
    expect(cobsDecode(Uint8Array.from([5, 1, 2]), 0, 3, out)).toBe(COBS_ERR_OVERRUN);
    expect(cobsDecode(Uint8Array.from([3, 1, 0]), 0, 3, out)).toBe(COBS_ERR_ZERO_BYTE);
  });
});
