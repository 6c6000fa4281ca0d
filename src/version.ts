import { readFileSync } from 'node:fs';

/** The agent's version, from the package.json it ships with (reported on the status topic). */
export const AGENT_VERSION: string = (() => {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
})();
