/**
 * Checks a decoded packet against firmware-protocol/packet.cddl, including
 * the constraints the CDDL states in comments (column lengths, increasing
 * sequence numbers, consistent ranges). Used by the tests on every packet the
 * agent produces, and by the reference consumer on every packet it receives.
 */
import { VALUE_COLUMNS } from '../spool/columns.js';
import { PACKET_SCHEMA_VERSION, packetColumns, type Packet } from './packet.js';

export type Validation = { ok: true; packet: Packet } | { ok: false; errors: string[] };

const PACKET_KEYS = ['v', 'dev', 'ride', 'seq', 'n', 'clock', 'gaps', 'enc', 'cols'];
const COLUMN_KEYS = ['seq', 't_ms', ...VALUE_COLUMNS.map((c) => c.name), 'flags'];
const GAP_KEYS = ['first', 'last', 'count', 'reason'];
const DEVICE_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

const isMap = (x: unknown): x is Record<string, unknown> =>
  typeof x === 'object' && x !== null && !Array.isArray(x) && !(x instanceof Uint8Array);
const isInt = (x: unknown): x is number => typeof x === 'number' && Number.isSafeInteger(x);
const isUint = (x: unknown): x is number => isInt(x) && x >= 0;

function exactKeys(m: Record<string, unknown>, keys: string[], where: string, errors: string[]): void {
  for (const k of keys) if (!(k in m)) errors.push(`${where}: missing key "${k}"`);
  for (const k of Object.keys(m)) if (!keys.includes(k)) errors.push(`${where}: unknown key "${k}"`);
}

export function validatePacket(x: unknown): Validation {
  const errors: string[] = [];
  if (!isMap(x)) return { ok: false, errors: ['packet: not a map'] };
  exactKeys(x, PACKET_KEYS, 'packet', errors);
  if (x.v !== PACKET_SCHEMA_VERSION) errors.push(`v: expected ${PACKET_SCHEMA_VERSION}, got ${String(x.v)}`);
  if (typeof x.dev !== 'string' || !DEVICE_ID.test(x.dev)) errors.push('dev: not a device id');
  if (!(x.ride === null || typeof x.ride === 'string')) errors.push('ride: neither text nor null');
  const n = x.n;
  if (!isUint(n) || n < 1) errors.push('n: not an unsigned integer >= 1');
  const seq = x.seq;
  if (!Array.isArray(seq) || seq.length !== 2 || !seq.every((s) => isUint(s) && s >= 1) || seq[0] > seq[1])
    errors.push('seq: not [first, last] with 1 <= first <= last');
  const clock = x.clock;
  if (!Array.isArray(clock) || clock.length === 0) errors.push('clock: not a non-empty array');
  else
    clock.forEach((e, i) => {
      if (!Array.isArray(e) || e.length !== 2 || !isUint(e[0]) || !isInt(e[1])) errors.push(`clock[${i}]: not [index, offset-ms]`);
      else if (i === 0 ? e[0] !== 0 : !(e[0] > (clock[i - 1] as number[])[0] && isUint(n) && e[0] < n))
        errors.push(`clock[${i}]: index out of order or range`);
    });
  if (!Array.isArray(x.gaps)) errors.push('gaps: not an array');
  else
    x.gaps.forEach((g, i) => {
      if (!isMap(g)) {
        errors.push(`gaps[${i}]: not a map`);
        return;
      }
      exactKeys(g, GAP_KEYS, `gaps[${i}]`, errors);
      if (!isUint(g.first) || !isUint(g.last) || g.first < 1 || g.first > g.last) errors.push(`gaps[${i}]: not 1 <= first <= last`);
      else if (g.count !== g.last - g.first + 1) errors.push(`gaps[${i}]: count is not last - first + 1`);
      if (g.reason !== 'evicted' && g.reason !== 'memory_overflow') errors.push(`gaps[${i}]: unknown reason`);
    });
  let cols: unknown = x.cols;
  if (x.enc === 'delta+deflate') {
    if (!(cols instanceof Uint8Array)) errors.push('cols: enc is delta+deflate but cols is not a byte string');
    else {
      try {
        cols = packetColumns({ enc: 'delta+deflate', cols } as Packet);
      } catch (err) {
        errors.push(`cols: cannot inflate and decode: ${(err as Error).message}`);
        cols = undefined;
      }
    }
  } else if (x.enc !== 'delta') errors.push('enc: not "delta" or "delta+deflate"');
  if (cols !== undefined) validateColumns(cols, n, seq, errors);
  return errors.length ? { ok: false, errors } : { ok: true, packet: x as unknown as Packet };
}

function validateColumns(cols: unknown, n: unknown, seq: unknown, errors: string[]): void {
  if (!isMap(cols)) return void errors.push('cols: not a map');
  exactKeys(cols, COLUMN_KEYS, 'cols', errors);
  for (const k of COLUMN_KEYS) {
    const col = cols[k];
    if (!Array.isArray(col)) continue;
    if (col.length !== n) errors.push(`cols.${k}: ${col.length} elements for n = ${String(n)}`);
    const nullable = k !== 'seq' && k !== 't_ms' && k !== 'flags';
    col.forEach((v, i) => {
      const ok = k === 'flags' ? isUint(v) : isInt(v) || (nullable && v === null);
      if (!ok)
        errors.push(
          `cols.${k}[${i}]: ${JSON.stringify(v)} is not ${k === 'flags' ? 'an unsigned' : 'an'} integer${nullable ? ' or null' : ''}`,
        );
    });
  }
  const s = cols.seq;
  if (Array.isArray(s) && s.length > 0 && Array.isArray(seq)) {
    if (s[0] !== seq[0]) errors.push('cols.seq[0] is not seq.first');
    let cur = 0;
    s.forEach((d, i) => {
      if (i > 0 && !(typeof d === 'number' && d >= 1)) errors.push(`cols.seq[${i}]: sequence numbers must increase`);
      cur = i === 0 ? (d as number) : cur + (d as number);
    });
    if (cur !== seq[1]) errors.push('cols.seq does not end at seq.last');
  }
  const t = cols.t_ms;
  if (Array.isArray(t)) t.forEach((d, i) => i > 0 && typeof d === 'number' && d < 0 && errors.push(`cols.t_ms[${i}]: time went backwards`));
}
