/**
 * The delivery half of the pipeline, built in one place from a configuration:
 * the spool's options, the uploader's options, and both together for a
 * device. The agent opens its spool through agent/spool-keeper.ts (with
 * retries) and its uploader from these options; fleet-sim builds each
 * simulated bike with createDelivery from a bike's configuration, so its
 * thousand bikes are configured as the agent is.
 *
 *   records -> spool (SQLite) -> uploader (CBOR packets, MQTT QoS 1)
 */
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { Spool, type SpoolOptions } from '../spool/spool.js';
import { brokerLogin } from '../upload/login.js';
import { Uploader, type UploaderOptions } from '../upload/uploader.js';
import { AGENT_VERSION } from '../version.js';

export function spoolOptions(config: AgentConfig, log: Logger): SpoolOptions {
  const sc = config.spool;
  return {
    dir: config.dataDir,
    deviceId: config.device.id,
    maxBytes: sc.maxBytes,
    synchronous: sc.synchronous,
    memoryRecords: sc.memoryRecords,
    log,
    // What is durable, at debug level only (log.level "debug"): a line a second.
    ...(log.isLevelEnabled('debug')
      ? { onCommit: (records: number, lastSeq: number) => log.debug({ records, lastSeq }, 'spool committed') }
      : {}),
  };
}

/**
 * `heartbeatMs`: the beat that polls the uploader (the agent's; Infinity for
 * none), unless the configuration asks for a faster poll, which the uploader
 * then runs itself. Throws when a TLS file cannot be read (the caller retries later).
 */
export function uploaderOptions(config: AgentConfig, log: Logger, heartbeatMs: number, agentVersion = AGENT_VERSION): UploaderOptions {
  const m = config.mqtt;
  return {
    url: m.url,
    deviceId: config.device.id,
    topicPrefix: m.topicPrefix,
    agentVersion,
    sessionExpirySec: m.sessionExpirySec,
    keepaliveSec: m.keepaliveSec,
    maxInflight: m.maxInflight,
    maxRecordsPerPacket: m.maxRecordsPerPacket,
    maxPacketBytes: m.maxPacketBytes,
    rateBytesPerS: m.rateBytesPerS,
    drainBytesPerS: m.drainBytesPerS,
    ...loginOrAnonymous(config, log),
    backoffBaseMs: m.backoffBaseMs,
    backoffCapMs: m.backoffCapMs,
    deflate: m.deflate,
    pollMs: m.pollMs >= heartbeatMs ? 0 : m.pollMs,
    tls: m.tls,
    log,
  };
}

/** Username and password for the broker; a password file that cannot be read is logged and left out. */
function loginOrAnonymous(config: AgentConfig, log: Logger): { username?: string; password?: string } {
  try {
    return brokerLogin(config);
  } catch (err) {
    log.error({ err }, 'broker password unreadable: connecting without it');
    return { username: config.mqtt.username ?? config.device.id };
  }
}

export interface Delivery {
  spool: Spool;
  uploader: Uploader;
}

/**
 * Spool and uploader of one device, the uploader polling for itself (not
 * started). `extra`: what a simulation sets beyond the configuration (seeded
 * backoff jitter, larger sequence blocks, its own version string).
 */
export function createDelivery(
  config: AgentConfig,
  log: Logger,
  extra: { random?: () => number; sequenceBlock?: number; agentVersion?: string } = {},
): Delivery {
  const spool = Spool.open({ ...spoolOptions(config, log), ...(extra.sequenceBlock ? { sequenceBlock: extra.sequenceBlock } : {}) });
  const uploader = new Uploader(spool, {
    ...uploaderOptions(config, log, Infinity, extra.agentVersion),
    ...(extra.random ? { random: extra.random } : {}),
  });
  return { spool, uploader };
}
