/** The broker login of this bike: the device id as username (the ACL's %u), the password from a file. */
import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/schema.js';

export class BrokerLoginError extends Error {
  override name = 'BrokerLoginError';
}

export function brokerLogin(config: AgentConfig): { username?: string; password?: string } {
  const m = config.mqtt;
  if (!m.passwordFile) return m.username ? { username: m.username } : {};
  try {
    return { username: m.username ?? config.device.id, password: readFileSync(m.passwordFile, 'utf8').trim() };
  } catch (err) {
    throw new BrokerLoginError(`mqtt.passwordFile ${m.passwordFile}: ${(err as Error).message}`);
  }
}
