/** A configuration problem; the message names the file and the offending key. Its own module: the CLI tells it apart without loading the schema. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}
