import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent } from '../../src/agent/agent.js';
import { parseConfig } from '../../src/config/load.js';
import { createLogger, RecentLog } from '../../src/log/logger.js';
import { recordToJson } from '../../src/metrics/record.js';
import type { RecordRow } from './ride.js';

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** A real agent (link + driver + engine) on `path`, logging nothing, collecting records. */
export function startAgent(path: string, overrides: Record<string, unknown> = {}, start: { deferUpload?: boolean } = {}) {
  const config = parseConfig({
    device: { id: 'test-bike' },
    serial: { path, reopenBaseMs: 50, reopenCapMs: 200, silenceTimeoutMs: 1000, requestTimeoutMs: 300, requestRetries: 2 },
    log: { level: 'silent', records: 'none', statsIntervalS: 0 },
    dataDir: tempDir('agent-data-'),
    mqtt: { enabled: false },
    ...overrides,
  });
  // Warnings and errors reach agent.recent (as in production); the lines themselves go nowhere.
  const recent = new RecentLog();
  const agent = new Agent(config, createLogger('warn', {}, { recent, destination: '/dev/null' }), recent);
  const records: RecordRow[] = [];
  const states: string[] = [];
  agent.addRecordSink((r) => records.push(recordToJson(r)));
  agent.link.on('state', (s) => states.push(s));
  agent.start(start);
  return { agent, records, states };
}
