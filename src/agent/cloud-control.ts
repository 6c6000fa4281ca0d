/**
 * What the cloud can ask of a bike over the uploader's MQTT session: signed
 * commands (commands/commands.ts) acted on here, and update offers handed to
 * the updater (ota/offer-forwarder.ts). Started once the uploader is.
 */
import { join } from 'node:path';
import { CommandProcessor, commandsStateFile, type CommandTarget, type RemoteSetting } from '../commands/commands.js';
import type { AgentConfig } from '../config/schema.js';
import type { PurgeResult } from '../contracts/api.js';
import type { Logger } from '../log/logger.js';
import { OfferForwarder } from '../ota/offer-forwarder.js';
import { readTrustedKeyFiles, type TrustedKey } from '../signing/signature.js';
import type { Uploader } from '../upload/uploader.js';
import type { LinkCapture } from './capture.js';

export interface CloudControlDeps {
  config: AgentConfig;
  log: Logger;
  uploader: Uploader;
  capture: LinkCapture;
  purgeMember: (member: string) => PurgeResult;
}

export class CloudControl implements CommandTarget {
  constructor(private readonly d: CloudControlDeps) {}

  /** Subscribe to commands (when a fleet key is configured) and offers (when the updater is on). */
  start(): void {
    this.startCommands();
    if (this.d.config.ota.enabled) this.startOfferForwarding();
  }

  private startCommands(): void {
    const { config, log, uploader } = this.d;
    const c = config.commands;
    if (c.trustedKeys.length === 0) return;
    let keys: TrustedKey[];
    try {
      keys = readTrustedKeyFiles(c.trustedKeys);
    } catch (err) {
      log.error({ err }, 'command keys unreadable: commands are not taken');
      return;
    }
    const prefix = config.mqtt.topicPrefix;
    const id = config.device.id;
    const processor = new CommandProcessor({
      deviceId: id,
      groups: c.groups,
      trustedKeys: keys,
      stateFile: commandsStateFile(config.dataDir),
      maxLifetimeMs: c.maxLifetimeS * 1000,
      target: this,
      publishResult: (r) => uploader.publish(`${prefix}/${id}/cmd/result`, JSON.stringify(r)),
      log,
    });
    uploader.subscribe(CommandProcessor.topics(prefix, id, c.groups), (_topic, payload) => {
      // handle() settles every command with a result; this catch is for a fault in that path itself.
      processor.handle(payload).catch((err: unknown) => log.error({ err }, 'command handling failed'));
    });
  }

  /** Update offers reach the updater through the agent's session (ota/offer-forwarder.ts). */
  private startOfferForwarding(): void {
    const { config, log, uploader } = this.d;
    const statusTopic = `${config.mqtt.topicPrefix}/${config.device.id}/status/ota`;
    const forwarder = new OfferForwarder(config, log, (payload) => uploader.publish(statusTopic, payload, true));
    uploader.subscribe(forwarder.topics, (_topic, payload) => forwarder.onMessage(payload));
    log.info({ topics: forwarder.topics, inbox: forwarder.inbox.dir }, 'update offers go to the updater through the inbox');
  }

  // --- CommandTarget ----------------------------------------------------------

  setRemote(key: RemoteSetting, value: unknown): void {
    // Each value was checked against REMOTE_SETTINGS[key] by the command processor.
    if (key === 'mqtt.rateBytesPerS') this.d.uploader.setConfiguredLimit('uploadBytesPerS', value as number);
    else if (key === 'mqtt.drainBytesPerS') this.d.uploader.setConfiguredLimit('drainBytesPerS', value as number);
    else this.d.log.level = value as string;
  }

  purgeMember(member: string): PurgeResult {
    return this.d.purgeMember(member);
  }

  uploadNow(): void {
    this.d.uploader.uploadNow();
  }

  captureToFile(seconds: number): Promise<{ file: string; bytes: number }> {
    const { config } = this.d;
    return this.d.capture.toFile(join(config.dataDir, 'captures'), seconds, {
      protocol: config.serial.protocol,
      baudRate: config.serial.baudRate,
      startedAt: new Date().toISOString(),
      deviceId: config.device.id,
      source: 'agent',
    });
  }
}
