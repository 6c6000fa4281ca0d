import { loadConfig } from '../config/load.js';
import { createLogger } from '../log/logger.js';
import { UpdaterService } from '../ota/updater-service.js';

export async function updaterCommand(opts: { config?: string; once?: boolean }): Promise<void> {
  const config = loadConfig(opts.config);
  const log = createLogger(config.log.level, { deviceId: config.device.id, svc: 'bike-telemetry-updater' });
  if (!config.ota.enabled) {
    // The unit restarts on failure only: a clean exit here leaves it inactive until the configuration enables updates.
    log.info('ota.enabled is false: the updater does not run');
    return;
  }
  const service = new UpdaterService(config, log);
  if (opts.once) {
    // Started by systemd (at boot, and by bike-telemetry-updater.path when the inbox has an offer): do the work, then exit.
    const { OfferInbox, offerInboxDir } = await import('../ota/offer-inbox.js');
    const inbox = new OfferInbox(offerInboxDir(config));
    try {
      const handled = await service.runInbox(inbox);
      log.info({ handled, inbox: inbox.dir }, 'updater done: no offer waiting');
    } finally {
      await service.stop();
    }
    return;
  }
  const stop = (): void => {
    void service.stop().then(() => process.exit(0));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  await service.start();
}
