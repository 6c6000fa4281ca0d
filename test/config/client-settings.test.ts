// The CLI's schema-free reading of where the agent is (config/client-settings.ts)
// against the validated configuration (config/load.ts): for every file the
// schema accepts, the two must name the same socket, data folder and update root.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readClientSettings } from '../../src/config/client-settings.js';
import { loadConfig } from '../../src/config/load.js';
import { resolveSocketPath } from '../../src/api/socket-path.js';
import { tempDir } from '../helpers/agent.js';

const saved = { STATE_DIRECTORY: process.env.STATE_DIRECTORY, BIKE_TELEMETRY_CONFIG: process.env.BIKE_TELEMETRY_CONFIG };
afterEach(() => {
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

function settingsOf(config: { api: { socketPath?: string }; dataDir: string; ota: { root: string } }) {
  return { socket: resolveSocketPath(config), dataDir: config.dataDir, otaRoot: config.ota.root };
}

describe('readClientSettings agrees with loadConfig', () => {
  const dir = tempDir('client-settings-');
  mkdirSync(join(dir, 'etc'));
  const cases: Array<[string, unknown]> = [
    ['an empty file', {}],
    ['a socket path', { api: { socketPath: '/run/x/api.sock', httpPort: 8080 } }],
    ['a relative data folder (beside the file)', { dataDir: 'state/bike' }],
    ['an absolute data folder and update root', { dataDir: join(dir, 'data'), ota: { root: join(dir, 'opt'), enabled: true } }],
    [
      'every other section set',
      { device: { id: 'b1' }, serial: { path: '/dev/ttyS1' }, mqtt: { enabled: false }, log: { records: 'none' } },
    ],
  ];
  for (const [what, json] of cases) {
    it(what, () => {
      const file = join(dir, 'etc', `${what.replace(/\W+/g, '-')}.json`);
      writeFileSync(file, JSON.stringify(json));
      delete process.env.STATE_DIRECTORY;
      expect(settingsOf(readClientSettings(file)!)).toEqual(settingsOf(loadConfig(file)));
      process.env.STATE_DIRECTORY = join(dir, 'state-directory');
      expect(settingsOf(readClientSettings(file)!)).toEqual(settingsOf(loadConfig(file)));
    });
  }

  it('no -c: the file $BIKE_TELEMETRY_CONFIG names', () => {
    process.env.STATE_DIRECTORY = join(dir, 'sd');
    process.env.BIKE_TELEMETRY_CONFIG = join(dir, 'env.json');
    writeFileSync(process.env.BIKE_TELEMETRY_CONFIG, JSON.stringify({ api: { socketPath: join(dir, 'env.sock') } }));
    expect(settingsOf(readClientSettings()!)).toEqual(settingsOf(loadConfig()));
    expect(readClientSettings()!.api.socketPath).toBe(join(dir, 'env.sock'));
  });

  it('null when the file cannot be read or is not a JSON object, for loadConfig to explain', () => {
    writeFileSync(join(dir, 'broken.json'), '{ "api": ');
    writeFileSync(join(dir, 'array.json'), '[]');
    for (const f of ['broken.json', 'array.json', 'missing.json']) expect(readClientSettings(join(dir, f))).toBeNull();
  });

  it('a value the schema refuses is taken as absent (no agent can have started with it)', () => {
    const file = join(dir, 'wrong-types.json');
    writeFileSync(file, JSON.stringify({ api: { socketPath: 7 }, dataDir: '', ota: 'x' }));
    delete process.env.STATE_DIRECTORY;
    expect(readClientSettings(file)).toEqual({ api: {}, dataDir: './data', ota: { root: '/opt/bike-telemetry' } });
    expect(() => loadConfig(file)).toThrow();
  });
});
