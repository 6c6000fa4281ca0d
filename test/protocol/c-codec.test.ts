import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { loadVectors, VECTOR_FILE } from '../helpers/vectors.js';

const cDir = fileURLToPath(new URL('../../firmware-protocol/c/', import.meta.url));

describe('C reference codec (firmware-protocol/c)', () => {
  it('builds warning-free as C99 and passes every golden vector, decoding and re-encoding', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'fwp-c-')), 'test_vectors');
    execFileSync('cc', ['-std=c99', '-Wall', '-Wextra', '-Wpedantic', '-Werror', '-O2', '-o', out, join(cDir, 'fwp.c'), join(cDir, 'test_vectors.c')], {
      stdio: 'pipe',
    });
    const run = spawnSync(out, [VECTOR_FILE], { encoding: 'utf8' });
    expect(run.stdout).not.toMatch(/FAIL/);
    // Every vector plus the CRC check value.
    expect(run.stdout.trim().split('\n').pop()).toBe(`${loadVectors().length + 1} passed, 0 failed`);
    expect(run.status).toBe(0);
  });
});
