/**
 * `bike-telemetry updater`: the updater as a long-running service. It
 * finishes whatever a crash or power cut interrupted, then listens for
 * offers on `<prefix>/<device>/ota` and the fleet topic, and reports each
 * step and every refusal (with its reason) on `<prefix>/<device>/status/ota`
 * (retained).
 */
import { readFileSync } from 'node:fs';
import mqtt, { type MqttClient } from 'mqtt';
import { resolveSocketPath } from '../api/socket-path.js';
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import type { TrustedKey } from './manifest.js';
import { brokerLogin, readTlsFiles } from '../upload/login.js';
import { validateOffer } from './offer.js';
import { currentRuntime } from './targets.js';
import { Updater, type OtaState } from './updater.js';

export function loadTrustedKeys(config: AgentConfig): TrustedKey[] {
  return config.ota.trustedKeys.map((k) => ({ id: k.id, publicKeyPem: readFileSync(k.publicKeyFile, 'utf8') }));
}

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

  private report(state: OtaState, detail: Record<string, unknown>): void {
    const payload = JSON.stringify({ phase: state.phase, version: state.offer?.version ?? null, from: state.from, last: state.last, ...detail, at: new Date().toISOString() });
    this.log.info({ ota: JSON.parse(payload) as unknown }, 'update status');
    this.client?.publish(this.statusTopic, payload, { qos: 1, retain: true });
  }

  async start(): Promise<void> {
    const m = this.config.mqtt;
    const client = mqtt.connect(m.url, {
      clientId: `${this.config.device.id}-updater`,
      ...brokerLogin(this.config),
      protocolVersion: 5,
      clean: true,
      reconnectPeriod: 5000,
      ...readTlsFiles(m.tls),
    });
    this.client = client;
    client.on('connect', () => {
      client.subscribe(this.topics, { qos: 1 });
      this.log.info({ topics: this.topics }, 'updater listening for offers');
    });
    client.on('error', (err) => this.log.warn({ err: err.message }, 'updater broker error'));
    client.on('message', (_topic, payload) => {
      this.onOffer(payload).catch((err: unknown) => this.log.error({ err }, 'offer handling failed'));
    });
    // Finish what a crash or power cut interrupted before taking new offers (they wait while busy):
    // the agent must end up on a healthy version. Reports queue until the broker is reached.
    await this.updater.resume();
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
      if (verdict.offerId && verdict.signed && !u.state.seenOffers.includes(verdict.offerId)) u.noteOffer(verdict.offerId, { version: '?', reason: verdict.reason });
      else this.report(u.state, { refused: verdict.reason });
      return;
    }
    this.log.info({ offer: verdict.offer.id, version: verdict.offer.version, signedBy: verdict.signedBy }, 'update offer accepted');
    await u.apply(verdict.offer);
  }

  async stop(): Promise<void> {
    const c = this.client;
    this.client = null;
    if (c) await c.endAsync();
  }
}
