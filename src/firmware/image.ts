/**
 * Signed flywheel-board firmware images (`.fwimg`), as the firmware team's
 * build makes them and the agent checks them before a single byte goes to
 * the board:
 *
 *   "BIKEFWI1"   8 bytes, magic
 *   u32 LE       length H of the header
 *   header       H bytes of JSON: {"signed": {...}, "keyId": "...", "sig": "<base64>"}
 *   image        the bytes the board stores (signed.size of them)
 *
 * `signed` = {format: 1, boardModel, version "a.b.c", size, sha256, allowDowngrade,
 * createdAt, notes?}. The Ed25519 signature, by a fleet firmware key, covers
 * the canonical JSON of `signed` (keys sorted), as offers do; the image is
 * covered through its sha256. Keys rotate as for bundles: the agent trusts a
 * list (`board.update.trustedKeys`), each image names its key.
 */
import { issuesText } from '../util/zod-issues.js';
import { AgentError, type FirmwareErrorCode } from '../util/errors.js';
import { createHash, createPrivateKey, sign } from 'node:crypto';
import { z } from 'zod';
import { canonicalJson, SignatureError, verifySignature, type TrustedKey } from '../signing/signature.js';
import { compareFwVersions, parseFwVersion, type FwVersion } from '../protocol/fwp/fwu.js';

export const IMAGE_MAGIC = Buffer.from('BIKEFWI1', 'ascii');
export const IMAGE_FORMAT = 1;
const MAX_HEADER = 64 * 1024;
/** The largest image the agent handles (boards say their slot size; this bounds memory). */
export const MAX_IMAGE_BYTES = 16 * 1024 * 1024;

/** Every refusal or failure of a firmware update, with a code callers branch on. */
export class FirmwareError extends AgentError<FirmwareErrorCode> {}

export const SignedImageSchema = z
  .object({
    format: z.literal(IMAGE_FORMAT),
    /** The board model id the image is built for (HELLO board_model). */
    boardModel: z.number().int().min(1).max(0xffff),
    version: z.string().refine((v) => parseFwVersion(v) !== null, 'a.b.c with each part 0-255'),
    size: z.number().int().min(1).max(MAX_IMAGE_BYTES),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    /** Install even over a newer version on the board (a deliberate rollback of the firmware). */
    allowDowngrade: z.boolean().default(false),
    createdAt: z.string().datetime({ offset: true }),
    notes: z.string().max(1000).optional(),
  })
  .strict();
export type SignedImage = z.infer<typeof SignedImageSchema>;

export interface FirmwareImage {
  header: SignedImage;
  version: FwVersion;
  signedBy: string;
  /** The bytes for the board. */
  image: Buffer;
  sha256: Buffer;
}

/** Build a signed image file (the firmware team's release step; `bike-telemetry board image`). */
export function buildImage(
  image: Buffer,
  fields: { boardModel: number; version: string; allowDowngrade?: boolean; notes?: string; createdAt?: string },
  privateKeyPem: string,
  keyId: string,
): Buffer {
  if (!parseFwVersion(fields.version)) throw new FirmwareError('bad_header', `version ${fields.version} is not a.b.c with each part 0-255`);
  const signed: SignedImage = SignedImageSchema.parse({
    format: IMAGE_FORMAT,
    boardModel: fields.boardModel,
    version: fields.version,
    size: image.length,
    sha256: createHash('sha256').update(image).digest('hex'),
    allowDowngrade: fields.allowDowngrade ?? false,
    createdAt: fields.createdAt ?? new Date().toISOString(),
    ...(fields.notes !== undefined ? { notes: fields.notes } : {}),
  });
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ed25519')
    throw new FirmwareError('bad_signature', `signing key ${keyId} is ${key.asymmetricKeyType}, not ed25519`);
  const sig = sign(null, Buffer.from(canonicalJson(signed), 'utf8'), key).toString('base64');
  const header = Buffer.from(JSON.stringify({ signed, keyId, sig }), 'utf8');
  const len = Buffer.alloc(4);
  len.writeUInt32LE(header.length);
  return Buffer.concat([IMAGE_MAGIC, len, header, image]);
}

/** Parse and check an image file: structure, signature under a trusted key, digest. Throws FirmwareError. */
export function readImage(file: Buffer, trusted: readonly TrustedKey[]): FirmwareImage {
  if (file.length < 12 || !file.subarray(0, 8).equals(IMAGE_MAGIC))
    throw new FirmwareError('not_an_image', 'not a flywheel-board firmware image (no BIKEFWI1 magic)');
  const h = file.readUInt32LE(8);
  if (h > MAX_HEADER || 12 + h > file.length) throw new FirmwareError('bad_header', `header length ${h} does not fit the file`);
  let outer: unknown;
  try {
    outer = JSON.parse(file.subarray(12, 12 + h).toString('utf8'));
  } catch {
    throw new FirmwareError('bad_header', 'the header is not JSON');
  }
  const o = z
    .object({ signed: z.record(z.unknown()), keyId: z.string().min(1), sig: z.string().min(1) })
    .strict()
    .safeParse(outer);
  if (!o.success) throw new FirmwareError('bad_header', 'the header is not {signed, keyId, sig}');
  let signedBy: string;
  try {
    signedBy = verifySignature(
      Buffer.from(canonicalJson(o.data.signed), 'utf8'),
      { alg: 'ed25519', keyId: o.data.keyId, sig: o.data.sig },
      trusted,
      'firmware image',
    );
  } catch (err) {
    if (!(err instanceof SignatureError)) throw err;
    throw new FirmwareError(err.code === 'untrusted_key' ? 'untrusted_key' : 'bad_signature', err.message);
  }
  const parsed = SignedImageSchema.safeParse(o.data.signed);
  if (!parsed.success) throw new FirmwareError('bad_header', `signed header: ${issuesText(parsed.error, '(header)')}`);
  const header = parsed.data;
  const image = file.subarray(12 + h);
  if (image.length !== header.size)
    throw new FirmwareError('digest_mismatch', `the image is ${image.length} bytes, its header says ${header.size}`);
  const sha256 = createHash('sha256').update(image).digest();
  if (sha256.toString('hex') !== header.sha256)
    throw new FirmwareError('digest_mismatch', 'the image does not match the sha256 its signed header names');
  return { header, version: parseFwVersion(header.version)!, signedBy, image: Buffer.from(image), sha256 };
}

/** Whether this image may go to a board of `model` running `running`; throws FirmwareError when not. */
export function checkForBoard(img: FirmwareImage, model: number, running: FwVersion | null): void {
  if (img.header.boardModel !== model)
    throw new FirmwareError('wrong_model', `the image is for board model ${img.header.boardModel}, this board is model ${model}`);
  if (running && !img.header.allowDowngrade) {
    const c = compareFwVersions(img.version, running);
    if (c < 0)
      throw new FirmwareError(
        'downgrade',
        `the image is ${img.header.version}, older than the board's ${running.join('.')}, and its signed header does not allow a downgrade`,
      );
  }
}
