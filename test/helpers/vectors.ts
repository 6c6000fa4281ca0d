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
