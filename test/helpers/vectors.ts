import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const VECTOR_FILE = fileURLToPath(new URL('../../firmware-protocol/vectors/fwp-v1.vec', import.meta.url));

export type Vector = Record<string, string> & { name: string; wire: string; result: string };

export function loadVectors(): Vector[] {
  return readFileSync(VECTOR_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map((l) => Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])) as Vector);
}

export const FWU_VECTOR_FILE = fileURLToPath(new URL('../../firmware-protocol/vectors/fwu-v1.vec', import.meta.url));

/** The firmware-update conversation steps (fwu-v1.vec), in order. */
export function loadFwuSteps(): Array<Record<string, string> & { script: string; step: string }> {
  return readFileSync(FWU_VECTOR_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'))
    .map(
      (l) =>
        Object.fromEntries(l.split(' ').map((kv) => kv.split('=') as [string, string])) as Record<string, string> & {
          script: string;
          step: string;
        },
    );
}
