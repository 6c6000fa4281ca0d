/** The updater's one error type: a code union, so decisions never depend on a message's wording. */

/** What went wrong, for code (never matched by wording): which failures are worth another download attempt. */
export type OtaErrorCode =
  | 'busy'
  | 'http_status'
  | 'interrupted'
  | 'too_slow'
  | 'too_large'
  | 'size_mismatch'
  | 'digest_mismatch'
  | 'bad_bundle'
  | 'too_big_unpacked'
  | 'no_space'
  | 'incompatible'
  | 'unhealthy'
  | 'no_previous';

export class OtaError extends Error {
  override name = 'OtaError';
  constructor(
    readonly code: OtaErrorCode,
    message: string,
  ) {
    super(message);
  }
}

/** Worth another attempt: the network, not the bundle. */
export const RETRYABLE: ReadonlySet<OtaErrorCode> = new Set(['http_status', 'interrupted', 'too_slow']);

/** Why a release bundle could not be built (`scripts/release` exits 3 for a missing tool, 1 for the rest). */
export type ReleaseErrorCode =
  | 'usage'
  | 'not_built'
  | 'toolchain_missing'
  | 'node_fetch_failed'
  | 'addon_build_failed'
  | 'wrong_arch'
  | 'prune_failed'
  | 'pack_failed';

export class ReleaseError extends Error {
  override name = 'ReleaseError';
  constructor(
    readonly code: ReleaseErrorCode,
    message: string,
  ) {
    super(message);
  }
}
