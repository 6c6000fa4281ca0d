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
