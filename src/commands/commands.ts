/**
 * Commands from the cloud: `<prefix>/<device>/cmd` or `<prefix>/group/<name>/cmd`.
 *
 *   {"cmd": {"id": "<nonce>", "to": "<device id> | group:<name>", "action": "...", "params": {...},
 *            "expiresAt": "<ISO time>"}, "keyId": "fleet-2026a", "sig": "<base64 Ed25519>"}
 *
 * Accepted only when signed by a trusted fleet key over the canonical JSON of
 * `cmd` (keys sorted), addressed to this device or one of its groups, not
 * expired, and never seen before (nonces are kept on disk until they expire).
 * Every command and its result, refusals with their reason, go to the log and
 * to `<prefix>/<device>/cmd/result`.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
import type { Logger } from '../log/logger.js';
import { BundleError, verifySignature, type TrustedKey } from '../ota/manifest.js';
import { canonicalJson } from '../ota/offer.js';

/** Configuration values the cloud may change at run time (and nothing else). */
export const REMOTE_SETTINGS = {
  'mqtt.rateBytesPerS': z.number().int().min(0).max(100_000_000),
  'mqtt.drainBytesPerS': z.number().int().min(0).max(100_000_000),
  'log.level': z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']),
} as const;
export type RemoteSetting = keyof typeof REMOTE_SETTINGS;

const CommandSchema = z
  .object({
    id: z.string().min(8).max(64),
    to: z.string().min(1).max(80),
    action: z.enum(['config.set', 'member.purge', 'upload.now', 'capture']),
    params: z.record(z.unknown()).default({}),
    expiresAt: z.string().datetime({ offset: true }),
  })
  .strict();
export type Command = z.infer<typeof CommandSchema>;

const PARAMS = {
  'config.set': z.object({ key: z.enum(Object.keys(REMOTE_SETTINGS) as [RemoteSetting, ...RemoteSetting[]]), value: z.unknown() }).strict(),
  'member.purge': z.object({ member: z.string().min(1).max(128) }).strict(),
  'upload.now': z.object({}).strict(),
  capture: z.object({ seconds: z.number().min(1).max(600) }).strict(),
};

/** What the commands act on (the agent). */
export interface CommandTarget {
  setRemote(key: RemoteSetting, value: unknown): void;
  purgeMember(member: string): unknown;
  uploadNow(): void;
  captureToFile(seconds: number): Promise<{ file: string; bytes: number }>;
}

export interface CommandOptions {
  deviceId: string;
  groups: readonly string[];
  trustedKeys: readonly TrustedKey[];
  /** Where seen nonces are kept (survives restarts). */
  stateFile: string;
  target: CommandTarget;
  publishResult: (result: CommandResult) => void;
  log: Pick<Logger, 'info' | 'warn' | 'error'>;
  now?: () => number;
}

export interface CommandResult {
  id: string | null;
  action: string | null;
  ok: boolean;
  reason?: string;
  result?: unknown;
  at: string;
}

export class CommandProcessor {
  /** nonce -> expiry (ms); pruned once expired (an expired command is refused anyway). */
  private readonly seen = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly o: CommandOptions) {
    this.now = o.now ?? Date.now;
    try {
      const saved = JSON.parse(readFileSync(o.stateFile, 'utf8')) as Record<string, number>;
      for (const [k, v] of Object.entries(saved)) this.seen.set(k, v);
    } catch {
      // first start, or an unreadable file: nonces still expire with their commands
    }
  }

  /** Topics to subscribe to for this device. */
  static topics(prefix: string, deviceId: string, groups: readonly string[]): string[] {
    return [`${prefix}/${deviceId}/cmd`, ...groups.map((g) => `${prefix}/group/${g}/cmd`)];
  }

  async handle(payload: Buffer): Promise<CommandResult> {
    const v = this.validate(payload);
    if (!v.ok) return this.finish({ id: v.id, action: v.action, ok: false, reason: v.reason, at: new Date(this.now()).toISOString() });
    const c = v.cmd;
    this.remember(c);
    this.o.log.info({ command: c.id, action: c.action, params: c.action === 'member.purge' ? { member: '(pseudonymised on use)' } : c.params }, 'command accepted');
    try {
      const result = await this.run(c);
      return this.finish({ id: c.id, action: c.action, ok: true, result, at: new Date(this.now()).toISOString() });
    } catch (err) {
      return this.finish({ id: c.id, action: c.action, ok: false, reason: `failed: ${(err as Error).message}`, at: new Date(this.now()).toISOString() });
    }
  }

  private finish(r: CommandResult): CommandResult {
    if (r.ok) this.o.log.info({ command: r.id, action: r.action, result: r.result }, 'command done');
    else this.o.log.warn({ command: r.id, action: r.action, reason: r.reason }, 'command refused');
    this.o.publishResult(r);
    return r;
  }

  private validate(payload: Buffer): { ok: true; cmd: Command } | { ok: false; id: string | null; action: string | null; reason: string } {
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      return { ok: false, id: null, action: null, reason: 'malformed: not JSON' };
    }
    const env = z.object({ cmd: z.record(z.unknown()), keyId: z.string().min(1), sig: z.string().min(1) }).strict().safeParse(json);
    if (!env.success) return { ok: false, id: null, action: null, reason: 'malformed: expected {cmd, keyId, sig}' };
    const id = typeof env.data.cmd.id === 'string' ? env.data.cmd.id : null;
    const action = typeof env.data.cmd.action === 'string' ? env.data.cmd.action : null;
    try {
      verifySignature(Buffer.from(canonicalJson(env.data.cmd), 'utf8'), { alg: 'ed25519', keyId: env.data.keyId, sig: env.data.sig }, this.o.trustedKeys, 'command');
    } catch (err) {
      return { ok: false, id, action, reason: err instanceof BundleError ? err.message : String(err) };
    }
    const parsed = CommandSchema.safeParse(env.data.cmd);
    if (!parsed.success) return { ok: false, id, action, reason: `malformed command: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}` };
    const c = parsed.data;
    const addressed = c.to === this.o.deviceId || (c.to.startsWith('group:') && this.o.groups.includes(c.to.slice(6)));
    if (!addressed) return { ok: false, id, action, reason: `addressed to ${c.to}, not this device (${this.o.deviceId}) or its groups` };
    if (Date.parse(c.expiresAt) <= this.now()) return { ok: false, id, action, reason: `expired at ${c.expiresAt}` };
    if (this.seen.has(c.id)) return { ok: false, id, action, reason: `replayed: command ${c.id} was already handled` };
    const p = PARAMS[c.action].safeParse(c.params);
    if (!p.success) return { ok: false, id, action, reason: `bad params: ${p.error.issues.map((i) => `${i.path.join('.') || '(params)'}: ${i.message}`).join('; ')}` };
    if (c.action === 'config.set') {
      const { key, value } = p.data as { key: RemoteSetting; value: unknown };
      const ok = REMOTE_SETTINGS[key].safeParse(value);
      if (!ok.success) return { ok: false, id, action, reason: `bad value for ${key}: ${ok.error.issues.map((i) => i.message).join('; ')}` };
    }
    return { ok: true, cmd: { ...c, params: p.data as Record<string, unknown> } };
  }

  private remember(c: Command): void {
    const now = this.now();
    for (const [k, exp] of this.seen) if (exp <= now) this.seen.delete(k);
    this.seen.set(c.id, Date.parse(c.expiresAt));
    const tmp = `${this.o.stateFile}.tmp`;
    const fd = openSync(tmp, 'w');
    writeFileSync(fd, JSON.stringify(Object.fromEntries(this.seen)));
    fsyncSync(fd);
    closeSync(fd);
    renameSync(tmp, this.o.stateFile);
  }

  private async run(c: Command): Promise<unknown> {
    const t = this.o.target;
    switch (c.action) {
      case 'config.set': {
        const { key, value } = c.params as { key: RemoteSetting; value: unknown };
        t.setRemote(key, value);
        return { key, value };
      }
      case 'member.purge':
        return t.purgeMember(c.params.member as string);
      case 'upload.now':
        t.uploadNow();
        return { uploading: true };
      case 'capture':
        return t.captureToFile(c.params.seconds as number);
    }
  }
}

export const COMMANDS_STATE_FILE = 'commands-seen.json';
export const commandsStateFile = (dataDir: string): string => join(dataDir, COMMANDS_STATE_FILE);
