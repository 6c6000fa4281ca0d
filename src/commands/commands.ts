/**
 * Commands from the cloud: `<prefix>/<device>/cmd` or `<prefix>/group/<name>/cmd`.
 *
 *   {"cmd": {"id": "<nonce>", "to": "<device id> | group:<name>", "action": "...", "params": {...},
 *            "expiresAt": "<ISO time>"}, "keyId": "fleet-2026a", "sig": "<base64 Ed25519>"}
 *
 * Accepted only when signed by a trusted fleet key over the canonical JSON of
 * `cmd` (keys sorted), addressed to this device or one of its groups, not
 * expired, expiring within `maxLifetimeMs`, and never seen before (nonces are
 * kept on disk until they expire).
 *
 * Replay protection fails closed. A nonce that cannot be written (a full
 * disk) refuses the command, unrun and unremembered, so the cloud can send it
 * again. A nonce file that cannot be read means the nonces are lost: every
 * command seen before then expires before `lostAt + maxLifetimeMs`, so until
 * then only commands expiring later are taken (the cloud resends with a full
 * lifetime); `lostAt` is kept in the file.
 * Every command and its result, refusals with their reason, go to the log and
 * to `<prefix>/<device>/cmd/result`.
 */
import { issuesText } from '../util/zod-issues.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  COMMAND_PARAMS,
  CommandSchema as ContractCommandSchema,
  REMOTE_SETTINGS,
  SignedCommandSchema,
  type Command,
  type RemoteSetting,
} from '../contracts/mqtt-inbound.js';
import type { CommandResult } from '../contracts/mqtt.js';
import type { Logger } from '../log/logger.js';
import { canonicalJson, SignatureError, verifySignature, type TrustedKey } from '../signing/signature.js';
import { errorCode, writeFileAtomicSync } from '../util/files.js';

export { REMOTE_SETTINGS };
export type { Command, CommandResult, RemoteSetting };
const CommandSchema = ContractCommandSchema;
const PARAMS = COMMAND_PARAMS;

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
  /** The longest a command may live (expiresAt - now); bounds how long nonces are kept. */
  maxLifetimeMs: number;
  now?: () => number;
}

/** The nonce file: v2 carries `lostAt`; v1 (a bare id -> expiry map) is still read. */
interface SeenFile {
  v: 2;
  seen: Record<string, number>;
  lostAt: number | null;
}

/** Ids and actions are echoed to logs and results only when they fit the schema. */
const echo = (x: unknown, max: number): string | null => (typeof x === 'string' && x.length <= max ? x : null);

export class CommandProcessor {
  /** nonce -> expiry (ms); pruned once expired (an expired command is refused anyway). */
  private readonly seen = new Map<string, number>();
  private readonly now: () => number;
  /** When the nonces were found lost (null: never, or long enough ago not to matter). */
  private lostAt: number | null = null;

  constructor(private readonly o: CommandOptions) {
    this.now = o.now ?? Date.now;
    this.load();
  }

  private load(): void {
    let text: string;
    try {
      text = readFileSync(this.o.stateFile, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return; // first start
      this.nonceStateLost(err);
      return;
    }
    try {
      const json = JSON.parse(text) as unknown;
      const file = parseSeenFile(json);
      if (!file) throw new Error('not a nonce file');
      for (const [k, v] of Object.entries(file.seen)) this.seen.set(k, v);
      this.lostAt = file.lostAt;
    } catch (err) {
      this.nonceStateLost(err);
    }
  }

  private nonceStateLost(err: unknown): void {
    this.seen.clear();
    this.lostAt = this.now();
    const until = new Date(this.lostAt + this.o.maxLifetimeMs).toISOString();
    this.o.log.error(
      { err, file: this.o.stateFile, acceptOnlyExpiringAfter: until },
      'command nonces unreadable: replay protection fails closed; only commands expiring after the given time are taken',
    );
    // Keep the lost-at mark; a file that cannot be written now is rewritten with the next command.
    this.persist();
  }

  /** Topics to subscribe to for this device. */
  static topics(prefix: string, deviceId: string, groups: readonly string[]): string[] {
    return [`${prefix}/${deviceId}/cmd`, ...groups.map((g) => `${prefix}/group/${g}/cmd`)];
  }

  /** Validate, record the nonce, run, and publish the result. Never rejects: every path ends in a result. */
  async handle(payload: Buffer): Promise<CommandResult> {
    const v = this.validate(payload);
    if (!v.ok) return this.finish({ id: v.id, action: v.action, ok: false, reason: v.reason, at: new Date(this.now()).toISOString() });
    const c = v.cmd;
    const stored = this.remember(c);
    if (stored !== null) {
      return this.finish({
        id: c.id,
        action: c.action,
        ok: false,
        reason: `not run: the command id could not be recorded (${stored}); send it again later`,
        at: new Date(this.now()).toISOString(),
      });
    }
    this.o.log.info(
      { command: c.id, action: c.action, params: c.action === 'member.purge' ? { member: '(pseudonymised on use)' } : c.params },
      'command accepted',
    );
    try {
      const result = await this.run(c);
      return this.finish({ id: c.id, action: c.action, ok: true, result, at: new Date(this.now()).toISOString() });
    } catch (err) {
      return this.finish({
        id: c.id,
        action: c.action,
        ok: false,
        reason: `failed: ${(err as Error).message}`,
        at: new Date(this.now()).toISOString(),
      });
    }
  }

  private finish(r: CommandResult): CommandResult {
    if (r.ok) this.o.log.info({ command: r.id, action: r.action, result: r.result }, 'command done');
    else this.o.log.warn({ command: r.id, action: r.action, reason: r.reason }, 'command refused');
    try {
      this.o.publishResult(r);
    } catch (err) {
      this.o.log.warn({ err, command: r.id }, 'command result not published');
    }
    return r;
  }

  private validate(payload: Buffer): { ok: true; cmd: Command } | { ok: false; id: string | null; action: string | null; reason: string } {
    let json: unknown;
    try {
      json = JSON.parse(payload.toString('utf8'));
    } catch {
      return { ok: false, id: null, action: null, reason: 'malformed: not JSON' };
    }
    const env = SignedCommandSchema.safeParse(json);
    if (!env.success) return { ok: false, id: null, action: null, reason: 'malformed: expected {cmd, keyId, sig}' };
    const id = echo(env.data.cmd.id, 64);
    const action = echo(env.data.cmd.action, 32);
    try {
      verifySignature(
        Buffer.from(canonicalJson(env.data.cmd), 'utf8'),
        { alg: 'ed25519', keyId: env.data.keyId, sig: env.data.sig },
        this.o.trustedKeys,
        'command',
      );
    } catch (err) {
      return { ok: false, id, action, reason: err instanceof SignatureError ? err.message : String(err) };
    }
    const parsed = CommandSchema.safeParse(env.data.cmd);
    if (!parsed.success)
      return {
        ok: false,
        id,
        action,
        reason: `malformed command: ${issuesText(parsed.error, '(command)')}`,
      };
    const c = parsed.data;
    const addressed = c.to === this.o.deviceId || (c.to.startsWith('group:') && this.o.groups.includes(c.to.slice(6)));
    if (!addressed) return { ok: false, id, action, reason: `addressed to ${c.to}, not this device (${this.o.deviceId}) or its groups` };
    const expires = Date.parse(c.expiresAt);
    const now = this.now();
    if (expires <= now) return { ok: false, id, action, reason: `expired at ${c.expiresAt}` };
    if (expires > now + this.o.maxLifetimeMs)
      return {
        ok: false,
        id,
        action,
        reason: `expires too far ahead: at most ${Math.round(this.o.maxLifetimeMs / 1000)} s after it is received`,
      };
    if (this.lostAt !== null) {
      const until = this.lostAt + this.o.maxLifetimeMs;
      if (now >= until) this.lostAt = null;
      else if (expires < until) {
        return {
          ok: false,
          id,
          action,
          reason: `replay protection was reset at ${new Date(this.lostAt).toISOString()}: until ${new Date(until).toISOString()} only commands expiring at or after then are taken`,
        };
      }
    }
    if (this.seen.has(c.id)) return { ok: false, id, action, reason: `replayed: command ${c.id} was already handled` };
    const p = PARAMS[c.action].safeParse(c.params);
    if (!p.success)
      return {
        ok: false,
        id,
        action,
        reason: `bad params: ${issuesText(p.error, '(params)')}`,
      };
    if (c.action === 'config.set') {
      const { key, value } = p.data as { key: RemoteSetting; value: unknown };
      const ok = REMOTE_SETTINGS[key].safeParse(value);
      if (!ok.success) return { ok: false, id, action, reason: `bad value for ${key}: ${issuesText(ok.error, 'value')}` };
    }
    return { ok: true, cmd: { ...c, params: p.data } };
  }

  /** Record the nonce on disk before the command runs. Returns null, or the error code that kept it from disk (then it is forgotten). */
  private remember(c: Command): string | null {
    const now = this.now();
    for (const [k, exp] of this.seen) if (exp <= now) this.seen.delete(k);
    this.seen.set(c.id, Date.parse(c.expiresAt));
    const failed = this.persist();
    if (failed !== null) this.seen.delete(c.id);
    return failed;
  }

  /** Write the nonce file atomically; returns null or the error code. */
  private persist(): string | null {
    const file: SeenFile = { v: 2, seen: Object.fromEntries(this.seen), lostAt: this.lostAt };
    try {
      writeFileAtomicSync(this.o.stateFile, JSON.stringify(file));
      return null;
    } catch (err) {
      this.o.log.warn({ err, file: this.o.stateFile }, 'command nonces not written');
      return errorCode(err);
    }
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

function parseSeenFile(json: unknown): SeenFile | null {
  if (!json || typeof json !== 'object' || Array.isArray(json)) return null;
  const j = json as Record<string, unknown>;
  const isSeen = (x: unknown): x is Record<string, number> =>
    !!x && typeof x === 'object' && !Array.isArray(x) && Object.values(x).every((v) => typeof v === 'number' && Number.isFinite(v));
  if (j.v === 2) {
    if (!isSeen(j.seen)) return null;
    const lostAt = typeof j.lostAt === 'number' && Number.isFinite(j.lostAt) ? j.lostAt : null;
    return { v: 2, seen: j.seen, lostAt };
  }
  return isSeen(j) ? { v: 2, seen: j, lostAt: null } : null;
}

export const COMMANDS_STATE_FILE = 'commands-seen.json';
export const commandsStateFile = (dataDir: string): string => join(dataDir, COMMANDS_STATE_FILE);
