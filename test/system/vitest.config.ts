import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

/**
 * The system tests (npm run test:system): the console image booted in a
 * container (systemd-nspawn) and a VM (qemu). One file at a time: each boots
 * whole machines on a two-core host.
 */
export default defineConfig({
  test: {
    root: fileURLToPath(new URL('../..', import.meta.url)),
    include: ['test/system/**/*.test.ts'],
    globalSetup: ['test/global-setup.ts', 'test/system/global-setup.ts'],
    reporters: ['default', './test/summary-reporter.ts'],
    testTimeout: 300_000,
    hookTimeout: 600_000,
    pool: 'forks',
    maxWorkers: 1,
    minWorkers: 1,
    fileParallelism: false,
  },
});
