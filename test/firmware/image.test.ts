/** Signed board images (.fwimg): what the agent accepts and, by code, what it refuses. */
import { describe, expect, it } from 'vitest';
import { FirmwareError, buildImage, checkForBoard, readImage } from '../../src/firmware/image.js';
import { keypair } from '../helpers/ota.js';

const fleet = keypair('fw-2026');
const next = keypair('fw-2027');
const rogue = keypair('fw-2026'); // same id, another key
const raw = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 31) & 0xff));

function code(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(FirmwareError);
    return (err as FirmwareError).code;
  }
  return 'accepted';
}

describe('board firmware images', () => {
  it('round-trips: header, version, digest, the key that signed it; keys rotate (either trusted key verifies)', () => {
    const file = buildImage(
      raw,
      { boardModel: 7, version: '1.4.2', notes: 'filter fix', createdAt: '2026-12-01T00:00:00Z' },
      fleet.privateKeyPem,
      fleet.id,
    );
    const img = readImage(file, [fleet.trusted, next.trusted]);
    expect([
      img.header.boardModel,
      img.header.version,
      img.version,
      img.signedBy,
      img.image.equals(raw),
      img.header.allowDowngrade,
    ]).toEqual([7, '1.4.2', [1, 4, 2], 'fw-2026', true, false]);
    const rotated = buildImage(raw, { boardModel: 7, version: '1.4.3' }, next.privateKeyPem, next.id);
    expect(readImage(rotated, [fleet.trusted, next.trusted]).signedBy).toBe('fw-2027');
    expect(code(() => readImage(rotated, [fleet.trusted]))).toBe('untrusted_key');
  });

  it('refuses with a code: not an image, a forged signature, a changed header, changed bytes, a truncated file', () => {
    const file = buildImage(raw, { boardModel: 7, version: '1.4.2' }, fleet.privateKeyPem, fleet.id);
    expect(code(() => readImage(raw, [fleet.trusted]))).toBe('not_an_image');
    expect(
      code(() => readImage(buildImage(raw, { boardModel: 7, version: '1.4.2' }, rogue.privateKeyPem, rogue.id), [fleet.trusted])),
    ).toBe('bad_signature');
    const h = file.readUInt32LE(8);
    const header = file
      .subarray(12, 12 + h)
      .toString('utf8')
      .replace('"boardModel":7', '"boardModel":8');
    const len = Buffer.alloc(4);
    len.writeUInt32LE(Buffer.byteLength(header));
    expect(
      code(() => readImage(Buffer.concat([file.subarray(0, 8), len, Buffer.from(header), file.subarray(12 + h)]), [fleet.trusted])),
    ).toBe('bad_signature');
    const flipped = Buffer.from(file);
    flipped[flipped.length - 10] ^= 1;
    expect(code(() => readImage(flipped, [fleet.trusted]))).toBe('digest_mismatch');
    expect(code(() => readImage(file.subarray(0, file.length - 1), [fleet.trusted]))).toBe('digest_mismatch');
    expect(code(() => readImage(file.subarray(0, 20), [fleet.trusted]))).toBe('bad_header');
  });

  it('judges the board: another model and a downgrade are refused unless the signed header allows the downgrade', () => {
    const img = readImage(buildImage(raw, { boardModel: 7, version: '1.4.2' }, fleet.privateKeyPem, fleet.id), [fleet.trusted]);
    expect(code(() => checkForBoard(img, 8, [1, 0, 0]))).toBe('wrong_model');
    expect(code(() => checkForBoard(img, 7, [1, 5, 0]))).toBe('downgrade');
    expect(code(() => checkForBoard(img, 7, [1, 4, 1]))).toBe('accepted');
    const allowed = readImage(buildImage(raw, { boardModel: 7, version: '1.4.2', allowDowngrade: true }, fleet.privateKeyPem, fleet.id), [
      fleet.trusted,
    ]);
    expect(code(() => checkForBoard(allowed, 7, [1, 5, 0]))).toBe('accepted');
    expect(code(() => buildImage(raw, { boardModel: 7, version: '1.256.0' }, fleet.privateKeyPem, fleet.id))).toBe('bad_header');
  });
});
