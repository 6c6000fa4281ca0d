/** The updater's and the release builder's errors (util/errors.ts holds the codes): decisions never depend on a message's wording. */
import { AgentError, type OtaErrorCode, type ReleaseErrorCode } from '../util/errors.js';

export class OtaError extends AgentError<OtaErrorCode> {}

/** Worth another attempt: the network, not the bundle. */
export const RETRYABLE: ReadonlySet<OtaErrorCode> = new Set(['http_status', 'interrupted', 'too_slow']);

/** Why a release bundle could not be built (`scripts/release` exits 3 for a missing tool, 1 for the rest). */
export class ReleaseError extends AgentError<ReleaseErrorCode> {}
