import { loadConfig } from '../config/load.js';
import { createLogger } from '../log/logger.js';
import { UpdaterService } from '../ota/updater-service.js';

export async function updaterCommand(opts: { config?: string }): Promise<void> {
  const config = loadConfig(opts.config);
  const log = createLogger(config.log.level, { deviceId: config.device.id, svc: 'bike-telemetry-updater' });
  if (!config.ota.enabled) {
    // The unit restarts on failure only: a clean exit here leaves it inactive until the configuration enables updates.
    log.info('ota.enabled is false: the updater does not run');
    return;
  }
  const service = new UpdaterService(config, log);
  const stop = (): void => {
    void service.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await service.start();
}
