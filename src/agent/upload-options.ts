/** The uploader's options from the agent's configuration: one mapping, in one place. */
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { brokerLogin } from '../upload/login.js';
import type { UploaderOptions } from '../upload/uploader.js';
import { AGENT_VERSION } from '../version.js';

/**
 * `heartbeatMs`: the agent's beat, which polls the uploader (start()) unless
 * the configuration asks for a faster poll, which the uploader then runs itself.
 * Throws when a TLS file cannot be read (the caller retries later).
 */
export function uploaderOptions(config: AgentConfig, log: Logger, heartbeatMs: number): UploaderOptions {
  const m = config.mqtt;
  return {
    url: m.url,
    deviceId: config.device.id,
    topicPrefix: m.topicPrefix,
    agentVersion: AGENT_VERSION,
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
