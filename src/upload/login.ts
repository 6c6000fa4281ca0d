/** The broker login of this bike: the device id as username (the ACL's %u), the password from a file. */
import { AgentError } from '../util/errors.js';
import { readFileSync } from 'node:fs';
import type { AgentConfig } from '../config/schema.js';

export class BrokerLoginError extends AgentError<'broker_login'> {
  constructor(message: string, options?: ErrorOptions) {
    super('broker_login', message, options);
  }
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

/** Mutual-TLS material read from the files the configuration names. */
export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/**
 * Read mqtt.tls.* once, up front: a missing or unreadable file is an error that
 * names its key (never a throw later inside a reconnect timer).
 */
export function readTlsFiles(tls: { caFile?: string; certFile?: string; keyFile?: string } | undefined): TlsMaterial {
  const out: TlsMaterial = {};
  const read = (key: 'caFile' | 'certFile' | 'keyFile', file: string | undefined): Buffer | undefined => {
    if (!file) return undefined;
    try {
      return readFileSync(file);
    } catch (err) {
      throw new BrokerLoginError(`mqtt.tls.${key} ${file}: ${(err as Error).message}`);
    }
  };
  const ca = read('caFile', tls?.caFile);
  const cert = read('certFile', tls?.certFile);
  const key = read('keyFile', tls?.keyFile);
  if (ca) out.ca = ca;
  if (cert) out.cert = cert;
  if (key) out.key = key;
  return out;
}
