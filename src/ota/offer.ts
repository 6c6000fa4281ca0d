/**
 * Update offers: a signed JSON message on `<prefix>/<device>/ota` or the
 * fleet topic naming a version, where to get it, its size and sha256. The
 * signature (Ed25519, a trusted key id) covers the canonical JSON of `offer`
 * (keys sorted), so the cloud can sign with any JSON library.
 */
import { issuesText } from '../util/zod-issues.js';
import { OfferSchema, SignedOfferSchema, type Offer } from '../contracts/mqtt-inbound.js';
import { compareVersions } from './manifest.js';
import { canonicalJson, SignatureError, verifySignature, type TrustedKey } from '../signing/signature.js';
import { incompatibility, type Runtime } from './targets.js';

export { OfferSchema };
export type { Offer };

export interface OfferContext {
  deviceId: string;
  deviceClass: string;
  currentVersion: string;
  trustedKeys: readonly TrustedKey[];
  nowMs: number;
  /** Offer ids already acted on (persisted by the updater). */
  seen: ReadonlySet<string>;
  /** The console's platform, CPU and Node ABI. */
  runtime: Runtime;
}

/**
 * `signed`: the refusal concerns an offer whose signature verified. Only such
 * ids may be remembered as handled: a forged offer must not block a real one
 * with its id, nor push real ids out of the bounded seen list.
 */
export type OfferVerdict =
  { ok: true; offer: Offer; signedBy: string } | { ok: false; reason: string; offerId: string | null; signed: boolean };

/**
 * The first half of validateOffer: is it `{offer, keyId, sig}` signed by a
 * trusted key? The agent asks only this before handing an offer to the
 * updater (which asks everything again); forgeries never wake it.
 */
export type OfferSignatureVerdict =
  | { ok: true; offer: Record<string, unknown>; offerId: string | null; signedBy: string }
  | { ok: false; reason: string; offerId: string | null };

export function verifyOfferSignature(payload: Buffer | string, trustedKeys: readonly TrustedKey[]): OfferSignatureVerdict {
  let json: unknown;
  try {
    json = JSON.parse(payload.toString());
  } catch {
    return { ok: false, reason: 'malformed: not JSON', offerId: null };
  }
  const signed = SignedOfferSchema.safeParse(json);
  if (!signed.success) return { ok: false, reason: 'malformed: expected {offer, keyId, sig}', offerId: null };
  const rawId = signed.data.offer.id;
  const offerId = typeof rawId === 'string' && rawId.length <= 64 ? rawId : null;
  try {
    const signedBy = verifySignature(
      Buffer.from(canonicalJson(signed.data.offer), 'utf8'),
      { alg: 'ed25519', keyId: signed.data.keyId, sig: signed.data.sig },
      trustedKeys,
      'offer',
    );
    return { ok: true, offer: signed.data.offer, offerId, signedBy };
  } catch (err) {
    return { ok: false, reason: err instanceof SignatureError ? err.message : String(err), offerId };
  }
}

export function validateOffer(payload: Buffer | string, ctx: OfferContext): OfferVerdict {
  const signature = verifyOfferSignature(payload, ctx.trustedKeys);
  if (!signature.ok) return { ok: false, reason: signature.reason, offerId: signature.offerId, signed: false };
  const { offerId, signedBy } = signature;
  const parsed = OfferSchema.safeParse(signature.offer);
  if (!parsed.success)
    return {
      ok: false,
      reason: `malformed offer: ${issuesText(parsed.error, '(offer)')}`,
      offerId,
      signed: true,
    };
  const o = parsed.data;
  if (ctx.seen.has(o.id)) return { ok: false, reason: `replayed: offer ${o.id} was already handled`, offerId, signed: true };
  if (Date.parse(o.expiresAt) <= ctx.nowMs) return { ok: false, reason: `expired at ${o.expiresAt}`, offerId, signed: true };
  if (o.deviceClass !== ctx.deviceClass)
    return { ok: false, reason: `for device class ${o.deviceClass}, this is ${ctx.deviceClass}`, offerId, signed: true };
  if (o.target !== '*' && o.target !== ctx.deviceId) return { ok: false, reason: `for device ${o.target}`, offerId, signed: true };
  const mismatch = incompatibility(o, ctx.runtime);
  if (mismatch) return { ok: false, reason: `incompatible: ${mismatch}`, offerId, signed: true };
  const cmp = compareVersions(o.version, ctx.currentVersion);
  if (cmp === 0) return { ok: false, reason: `already running ${o.version}`, offerId, signed: true };
  if (cmp < 0 && !o.allowDowngrade)
    return { ok: false, reason: `downgrade from ${ctx.currentVersion} to ${o.version} without allowDowngrade`, offerId, signed: true };
  return { ok: true, offer: o, signedBy };
}
