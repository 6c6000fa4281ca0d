/**
 * A zod validation failure as one line for a person: `path: problem; ...`,
 * an unknown key named as such (zod's own text lists them in a sentence).
 * One formatter for configuration, API parameters, commands, offers, limits,
 * images, calibrations and ride scripts.
 */
import type { ZodError } from 'zod';

/** `root` names the whole value when a problem has no path; `first` keeps only the first problem. */
export function issuesText(err: ZodError, root = '(root)', first = false): string {
  const lines = (first ? err.issues.slice(0, 1) : err.issues).map((i) => {
    if (i.code === 'unrecognized_keys') {
      const prefix = i.path.length ? `${i.path.join('.')}.` : '';
      return `${i.keys.map((k) => prefix + k).join(', ')}: unknown key`;
    }
    return `${i.path.join('.') || root}: ${i.message}`;
  });
  return lines.join('; ');
}
