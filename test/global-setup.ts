import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

/**
 * CLI tests run the built executable: compile first so they never test stale
 * JS. vitest strips types without checking them, so the tests are type-checked
 * here too.
 */
export default function setup(): void {
  const root = fileURLToPath(new URL('..', import.meta.url));
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [tsc, '-p', 'test/tsconfig.json', '--noEmit'], { cwd: root, stdio: 'inherit' });
}
