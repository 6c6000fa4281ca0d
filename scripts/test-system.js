#!/usr/bin/env node
// npm run test:system [-- --cuts N] [vitest arguments]: the container and VM tests.
// --cuts N: how many power cuts the VM test makes (default 10; CI runs fewer, see .ci/run).
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
const env = { ...process.env };
const i = args.indexOf('--cuts');
if (i >= 0) {
  const n = Number(args[i + 1]);
  if (!Number.isInteger(n) || n < 1 || n > 1000) {
    console.error('test:system: --cuts needs a whole number from 1 to 1000');
    process.exit(2);
  }
  env.BIKE_SYSTEM_CUTS = String(n);
  args.splice(i, 2);
}
const root = fileURLToPath(new URL('..', import.meta.url));
const vitest = createRequire(import.meta.url).resolve('vitest/vitest.mjs');
const r = spawnSync(process.execPath, [vitest, 'run', '--config', 'test/system/vitest.config.ts', ...args], {
  cwd: root,
  env,
  stdio: 'inherit',
});
process.exit(r.status ?? 1);
