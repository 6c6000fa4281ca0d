/**
 * `bike-telemetry updater`: it finishes whatever a crash or power cut
 * interrupted, then takes offers, and reports each step and every refusal
 * (with its reason) on `<prefix>/<device>/status/ota` (retained). Two ways:
 * - `--once` (the shipped units): the offers the agent left in the inbox
 *   (ota/offer-inbox.ts), one after the other, then it exits; systemd starts
 *   it at boot and whenever the inbox is not empty, so no updater waits in
 *   memory while no update is offered;
 * - without it: a long-running process subscribed to `<prefix>/<device>/ota`
 *   and the fleet topic itself (installs whose units predate the inbox).
 */
import type { OtaStatusDetail } from '../contracts/mqtt.js';
import type { MqttClient } from 'mqtt';
import { connectMqtt } from '../upload/mqtt-connect.js';
import { resolveSocketPath } from '../api/socket-path.js';
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { readTrustedKeyFiles, type TrustedKey } from '../signing/signature.js';
import type { OfferInbox } from './offer-inbox.js';
import { brokerLogin, readTlsFiles } from '../upload/login.js';
import { validateOffer } from './offer.js';
import { otaStatusPayload } from './state.js';
import { currentRuntime } from './targets.js';
import { Updater, type OtaState } from './updater.js';

export function loadTrustedKeys(config: AgentConfig): TrustedKey[] {
  return readTrustedKeyFiles(config.ota.trustedKeys);
}

/** How long `--once` waits for the broker, at the end, so its reports go out. */
const REPORT_FLUSH_MS = 5000;

export class UpdaterService {
  readonly updater: Updater;
  private client: MqttClient | null = null;
  private readonly statusTopic: string;
  private readonly topics: string[];

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Logger,
  ) {
    const m = config.mqtt;
    this.statusTopic = `${m.topicPrefix}/${config.device.id}/status/ota`;
    this.topics = [`${m.topicPrefix}/${config.device.id}/ota`, config.ota.fleetTopic ?? `${m.topicPrefix}/fleet/ota`];
    this.updater = new Updater({
      root: config.ota.root,
      trustedKeys: loadTrustedKeys(config),
      dataDir: config.dataDir,
      socketPath: () => resolveSocketPath(config),
      healthDeadlineMs: config.ota.healthDeadlineS * 1000,
      restartCommand: config.ota.restartCommand,
      resetCommand: config.ota.resetCommand,
      log,
      report: (state, detail) => this.report(state, detail),
    });
  }

  private report(state: OtaState, detail: OtaStatusDetail): void {
    const payload = otaStatusPayload(state, detail);
    this.log.info({ ota: JSON.parse(payload) as unknown }, 'update status');
    this.client?.publish(this.statusTopic, payload, { qos: 1, retain: true });
  }

  /** The long-running way: subscribe to offers and take them as they come. */
  async start(): Promise<void> {
    this.connect(true);
    // Finish what a crash or power cut interrupted before taking new offers (they wait while busy):
    // the agent must end up on a healthy version. Reports queue until the broker is reached.
    await this.updater.resume();
  }

  /**
   * The `--once` way: finish what was interrupted, handle every offer in the
   * inbox (oldest first; each deleted once handled, so a kill midway leaves it
   * to be handled again, when the updater's own record refuses it as seen),
   * until the inbox is empty, then return.
   */
  async runInbox(inbox: OfferInbox): Promise<number> {
    this.connect(false);
    await this.updater.resume();
    let handled = 0;
    for (let names = inbox.list(); names.length > 0; names = inbox.list()) {
      for (const name of names) {
        let payload: Buffer;
        try {
          payload = inbox.read(name);
        } catch {
          continue; // gone meanwhile (the agent dropped it for a newer one)
        }
        try {
          await this.onOffer(payload);
        } catch (err) {
          this.log.error({ err, file: name }, 'offer handling failed');
        }
        // A file that cannot be deleted would be handled again and again: stop (exit 1) instead.
        inbox.remove(name);
        handled++;
      }
    }
    return handled;
  }

  private connect(subscribe: boolean): void {
    const m = this.config.mqtt;
    const client = connectMqtt(m.url, {
      clientId: `${this.config.device.id}-updater`,
      ...brokerLogin(this.config),
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 5000,
      writeCache: false, // no 6 MB table of two-byte numbers (see the uploader)
      ...readTlsFiles(m.tls),
    });
    this.client = client;
    client.on('error', (err) => this.log.warn({ err }, 'updater broker error'));
    if (!subscribe) return;
    client.on('connect', () => {
      client.subscribe(this.topics, { qos: 1 });
      this.log.info({ topics: this.topics }, 'updater listening for offers');
    });
    client.on('message', (_topic, payload) => {
      this.onOffer(payload).catch((err: unknown) => this.log.error({ err }, 'offer handling failed'));
    });
  }

  private async onOffer(payload: Buffer): Promise<void> {
    const u = this.updater;
    if (u.isBusy) {
      this.log.warn('offer ignored: an update is in progress');
      return;
    }
    const verdict = validateOffer(payload, {
      deviceId: this.config.device.id,
      deviceClass: this.config.ota.deviceClass,
      currentVersion: u.currentVersion(),
      trustedKeys: loadTrustedKeys(this.config),
      nowMs: Date.now(),
      seen: new Set(u.state.seenOffers),
      runtime: currentRuntime(),
    });
    if (!verdict.ok) {
      this.log.warn({ offer: verdict.offerId, reason: verdict.reason }, 'update offer refused');
      // Only a signed offer's id is remembered (a forgery must not block or evict real ids); a replay is already in the list.
      if (verdict.offerId && verdict.signed && !u.state.seenOffers.includes(verdict.offerId))
        u.noteOffer(verdict.offerId, { version: '?', reason: verdict.reason });
      else this.report(u.state, { refused: verdict.reason });
      return;
    }
    this.log.info({ offer: verdict.offer.id, version: verdict.offer.version, signedBy: verdict.signedBy }, 'update offer accepted');
    await u.apply(verdict.offer);
  }

  /** Disconnect; reports still queued go out first if the broker is reached within a few seconds. */
  async stop(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (!c) return;
    if (!c.connected) {
      let timer: NodeJS.Timeout | undefined;
      const connected = await Promise.race([
        new Promise<boolean>((r) => c.once('connect', () => r(true))),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), REPORT_FLUSH_MS))),
      ]);
      clearTimeout(timer);
      if (!connected) {
        this.log.warn('broker not reached: the last update reports were not sent (the state is on disk)');
        await c.endAsync(true);
        return;
      }
    }
    await c.endAsync();
  }
}
