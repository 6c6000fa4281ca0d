/**
 * `require` for the CommonJS packages the agent runs on (mqtt, serialport,
 * better-sqlite3, pino, and cbor-x's CommonJS build).
 *
 * Why not `import`: Node 20 loads a CommonJS package imported from ES modules
 * through its ESM loader, which reads and lexes every file of the package for
 * its export names and keeps a module record beside each CommonJS module. For
 * the agent's packages, loaded in an empty `node` (README, "Performance"):
 * imported, 70.0 MB peak RSS and 348 ms; required, 57.4 MB and 273 ms. The
 * same packages, the same code; only the loader differs.
 *
 * Types still come from `import type`; scripts/check-structure.js refuses a
 * value `import` of these packages in src/ and follows `requireCjs('...')`
 * calls as imports (so the light CLI's checks still see them).
 */
import { createRequire } from 'node:module';

export const requireCjs = createRequire(import.meta.url);
