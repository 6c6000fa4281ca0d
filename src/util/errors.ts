/**
 * One error type for everything the project throws on purpose: AgentError,
 * with a code from one union (ErrorCode) to branch on. Callers test
 * `err.code` (or `instanceof` a subclass); never the wording of a message,
 * which is for people and may change. The subclasses exist for the fields
 * they carry (a file, a status) and for `instanceof` across a module's edge.
 *
 * The codes, by where they come from:
 */
import type { ApiErrorCode } from '../contracts/api.js';

/** Configuration, calibration and ride scripts: the CLI exits 3 (ExitCode.CONFIG) for these. */
export type ConfigErrorCode = 'config_invalid' | 'calibration_invalid' | 'ride_script_invalid';

export type SignatureErrorCode = 'unsupported_algorithm' | 'untrusted_key' | 'bad_key' | 'bad_signature';

/** The over-the-air updater's failures (ota/updater.ts). */
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

/** Why a release bundle could not be built (`scripts/release` exits 3 for a missing tool, 1 for the rest). */
export type ReleaseErrorCode =
  'usage' | 'not_built' | 'toolchain_missing' | 'node_fetch_failed' | 'addon_build_failed' | 'wrong_arch' | 'prune_failed' | 'pack_failed';

/** Every refusal or failure of a board firmware update. */
export type FirmwareErrorCode =
  | 'not_an_image'
  | 'bad_header'
  | 'bad_signature'
  | 'untrusted_key'
  | 'digest_mismatch'
  | 'wrong_model'
  | 'downgrade'
  | 'same_version'
  | 'too_large'
  | 'board_unsupported'
  | 'board_refused'
  | 'no_board'
  | 'not_idle'
  | 'reverted'
  | 'transfer_failed'
  | 'busy';

export type SpoolErrorCode = 'spool_too_new' | 'spool_unavailable' | 'spool_corrupt' | 'spool_missing' | 'spool_needs_migration';

/** Everything else, one code each. */
export type OtherErrorCode =
  | 'bundle_invalid'
  /** fwp requests: the board answered with a refusal; none came in time; the link is down or the request was cancelled. */
  | 'request_refused'
  | 'request_timeout'
  | 'request_cancelled'
  | 'transfer_interrupted'
  | 'socket_in_use'
  | 'socket_path'
  | 'agent_not_running'
  | 'sim_spawn_failed'
  | 'broker_login'
  | 'data_dir_in_use'
  | 'notify_socket'
  | 'member_key'
  | 'capture_format'
  | 'bad_range'
  | 'dev_tool_missing'
  /** Wrong command-line usage: the CLI exits 2 (cli/command-line.ts). */
  | 'cli_usage';

export type ErrorCode =
  | ConfigErrorCode
  | SignatureErrorCode
  | OtaErrorCode
  | ReleaseErrorCode
  | FirmwareErrorCode
  | SpoolErrorCode
  | ApiErrorCode
  | OtherErrorCode;

export class AgentError<C extends ErrorCode = ErrorCode> extends Error {
  constructor(
    readonly code: C,
    message: string,
    options?: ErrorOptions,
  ) {
    super(message, options);
    this.name = new.target.name;
  }
}
