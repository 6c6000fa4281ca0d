import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodeReply, encodeRequest, PELOTON_ERROR_NAMES, PelotonParser } from '../../src/protocol/peloton/codec.js';
import { DEFAULT_RESISTANCE_TABLE, resistancePct, tableProblem } from '../../src/protocol/peloton/resistance.js';

const FILE = fileURLToPath(new URL('../../firmware-protocol/vectors/peloton-v1.vec', import.meta.url));
const vectors = readFileSync(FILE, 'utf8')
  .split('\n')
  .filter((l) => l.trim() && !l.startsWith('#'))
  .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])));

function parse(wire: string) {
  const requests: number[][] = [];
  const replies: number[][] = [];
  const p = new PelotonParser({ onRequest: (t, c) => requests.push([t, c]), onReply: (c, v, d) => replies.push([c, v, d]) });
  const b = Buffer.from(wire, 'hex');
  p.feed(b, 0, b.length);
  const errors = Object.fromEntries(PELOTON_ERROR_NAMES.map((n, i) => [n, p.errors[i]]));
  return { requests, replies, errors, errorTotal: p.errorTotal };
}

describe('polled-bus golden vectors (firmware-protocol/vectors/peloton-v1.vec)', () => {
  it('has vectors of every kind', () => {
    expect(vectors.length).toBeGreaterThanOrEqual(25);
    for (const r of ['ok', 'checksum', 'digit', 'length', 'framing']) expect(vectors.some((v) => v.result === r)).toBe(true);
  });

  for (const v of vectors) {
    it(v.name, () => {
      const got = parse(v.wire);
      if (v.name.startsWith('stream_')) {
        expect(got.requests.length).toBe(Number(v.requests));
        expect(got.replies.length).toBe(Number(v.replies));
        expect(got.errorTotal).toBe(Number(v.errors));
        expect(got.errors.stray).toBe(Number(v.stray));
        return;
      }
      if (v.result !== 'ok') {
        expect(got.requests).toEqual([]);
        expect(got.replies).toEqual([]);
        expect(got.errors[v.result]).toBe(1);
        expect(got.errorTotal).toBe(1);
        expect(got.errors.stray).toBe(Number(v.stray));
        return;
      }
      expect(got.errorTotal).toBe(0);
      if (v.frame === 'request') {
        expect(got.requests).toEqual([[Number(v.type), Number(v.cmd)]]);
        expect(encodeRequest(Number(v.type), Number(v.cmd)).toString('hex')).toBe(v.wire);
      } else {
        expect(got.replies).toEqual([[Number(v.cmd), Number(v.value), Number(v.digits)]]);
        expect(encodeReply(Number(v.cmd), Number(v.value), Number(v.digits)).toString('hex')).toBe(v.wire);
      }
    });
  }

  it('a frame whose checksum byte is f6 decodes (the parser counts bytes, it does not split at f6)', () => {
    const v = vectors.find((x) => x.name === 'request_checksum_is_f6')!;
    expect(v.wire).toBe('f501f6f6');
    expect(parse(v.wire).requests).toEqual([[0xf5, 0x01]]);
  });
});

describe('resistance table', () => {
  const t = Float64Array.from(DEFAULT_RESISTANCE_TABLE);
  it('interpolates linearly between entries and clamps to 0-100 %', () => {
    expect(resistancePct(t, 164)).toBe(0);
    expect(resistancePct(t, 100)).toBe(0);
    expect(resistancePct(t, 967)).toBe(100);
    expect(resistancePct(t, 2000)).toBe(100);
    // Entry 15 is 50 %; halfway between entries 15 (803) and 16 (827) is 50 + 1.667 %.
    expect(resistancePct(t, 803)).toBeCloseTo(50, 9);
    expect(resistancePct(t, 815)).toBeCloseTo(50 + 100 / 60, 9);
    expect(resistancePct(t, 899)).toBeCloseTo(((20 + (899 - 889) / (901 - 889)) * 100) / 30, 9);
  });
  it('refuses a table that is short or not increasing', () => {
    expect(tableProblem(DEFAULT_RESISTANCE_TABLE)).toBeNull();
    expect(tableProblem(DEFAULT_RESISTANCE_TABLE.slice(1))).toMatch(/30 entries/);
    const bad = [...DEFAULT_RESISTANCE_TABLE];
    bad[7] = bad[6];
    expect(tableProblem(bad)).toMatch(/entry 7/);
  });
});
