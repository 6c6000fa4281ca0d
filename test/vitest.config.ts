import { fileURLToPath } from 'node:url';
import { configDefaults, defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    root: fileURLToPath(new URL('..', import.meta.url)),
    include: ['test/**/*.test.ts'],
    // The system tests boot the console image (npm run test:system).
    exclude: [...configDefaults.exclude, 'test/system/**'],
    globalSetup: ['test/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    pool: 'forks',
    // Serial and process tests use real ptys and child processes; two cores.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
