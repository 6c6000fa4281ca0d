/**
 * A configuration problem (the configuration file, a calibration, a ride
 * script); the message names the file and the offending key. Its own module:
 * the CLI tells it apart without loading the schema.
 */
import { AgentError, type ConfigErrorCode } from '../util/errors.js';

export class ConfigError extends AgentError<ConfigErrorCode> {
  constructor(message: string, code: ConfigErrorCode = 'config_invalid', options?: ErrorOptions) {
    super(code, message, options);
  }
}
