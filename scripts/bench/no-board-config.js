// The configuration the start-up benchmarks run `run` with: as installed (records not logged),
// no board at the serial path, uploading to a broker that is not there (nothing listens on port 1).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** Writes it to `file`; the board's path and the API socket in `dir`, the spool in `dataDir`. */
export function writeNoBoardConfig(file, { deviceId, dir, dataDir, socketName }) {
  writeFileSync(
    file,
    JSON.stringify({
      device: { id: deviceId },
      serial: { path: join(dir, 'no-board') },
      dataDir,
      api: { socketPath: join(dir, socketName) },
      mqtt: { url: 'mqtt://127.0.0.1:1' },
      log: { records: 'none' },
    }),
  );
  return file;
}
