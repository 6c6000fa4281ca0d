import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { FWU_VECTOR_FILE, loadFwuSteps, loadVectors, VECTOR_FILE } from '../helpers/vectors.js';

const cDir = fileURLToPath(new URL('../../firmware-protocol/c/', import.meta.url));

describe('C reference codec (firmware-protocol/c)', () => {
  it('builds warning-free as C99 and passes every golden vector, decoding and re-encoding', () => {
    const out = join(mkdtempSync(join(tmpdir(), 'fwp-c-')), 'test_vectors');
    execFileSync(
      'cc',
      ['-std=c99', '-Wall', '-Wextra', '-Wpedantic', '-Werror', '-O2', '-o', out, join(cDir, 'fwp.c'), join(cDir, 'test_vectors.c')],
      {
        stdio: 'pipe',
      },
    );
    const run = spawnSync(out, [VECTOR_FILE], { encoding: 'utf8' });
    expect(run.stdout).not.toMatch(/FAIL/);
    // Every vector plus the CRC-16 and CRC-32 check values.
    expect(run.stdout.trim().split('\n').pop()).toBe(`${loadVectors().length + 2} passed, 0 failed`);
    expect(run.status).toBe(0);
  });

  it("the board's firmware-update receiver (fwu.c, sha256.c) builds warning-free and answers every conversation vector exactly", () => {
    const out = join(mkdtempSync(join(tmpdir(), 'fwu-c-')), 'test_fwu');
    execFileSync(
      'cc',
      [
        '-std=c99',
        '-Wall',
        '-Wextra',
        '-Wpedantic',
        '-Werror',
        '-O2',
        '-o',
        out,
        ...['fwp.c', 'fwu.c', 'sha256.c', 'test_fwu.c'].map((f) => join(cDir, f)),
      ],
      { stdio: 'pipe' },
    );
    const run = spawnSync(out, [FWU_VECTOR_FILE], { encoding: 'utf8' });
    expect(run.stdout).not.toMatch(/FAIL/);
    expect(run.stdout.trim().split('\n').pop()).toMatch(new RegExp(`^${loadFwuSteps().length} passed, 0 failed`));
    expect(run.status).toBe(0);
  });
});
