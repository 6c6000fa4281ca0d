/**
 * The MQTT messages the cloud sends a bike (mqtt.ts has the whole contract and
 * its version, and re-exports these): the ones the running agent parses, in a
 * module of their own so it does not build the schemas of what it publishes.
 */
import { z } from 'zod';

const isoTime = z.string().datetime({ offset: true });

export const LimitsMessageSchema = z
  .object({
    v: z.literal(1),
    /** All upload bytes, live and backlog; 0: unlimited. */
    uploadBytesPerS: z.number().int().min(0).max(100_000_000).optional(),
    /** Backlog bytes (records from before this connection), within the upload rate; 0: unlimited. */
    drainBytesPerS: z.number().int().min(0).max(100_000_000).optional(),
    /** First reconnect delay ceiling; exponential with full jitter from there. */
    backoffBaseMs: z.number().int().min(100).max(3_600_000).optional(),
  })
  .strict();
export type LimitsMessage = z.infer<typeof LimitsMessageSchema>;

/** Configuration values the cloud may change at run time (and nothing else). */
export const REMOTE_SETTINGS = {
  'mqtt.rateBytesPerS': z.number().int().min(0).max(100_000_000),
  'mqtt.drainBytesPerS': z.number().int().min(0).max(100_000_000),
  'log.level': z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']),
} as const;
export type RemoteSetting = keyof typeof REMOTE_SETTINGS;

export const COMMAND_ACTIONS = ['config.set', 'member.purge', 'upload.now', 'capture'] as const;

/** A fleet command; signed as its canonical JSON inside SignedCommand. */
export const CommandSchema = z
  .object({
    id: z.string().min(8).max(64),
    /** A device id or `group:<name>`. */
    to: z.string().min(1).max(80),
    action: z.enum(COMMAND_ACTIONS),
    params: z.record(z.unknown()).default({}),
    expiresAt: isoTime,
  })
  .strict();
export type Command = z.infer<typeof CommandSchema>;

/** Each action's parameters. */
export const COMMAND_PARAMS = {
  'config.set': z.object({ key: z.enum(Object.keys(REMOTE_SETTINGS) as [RemoteSetting, ...RemoteSetting[]]), value: z.unknown() }).strict(),
  'member.purge': z.object({ member: z.string().min(1).max(128) }).strict(),
  'upload.now': z.object({}).strict(),
  capture: z.object({ seconds: z.number().min(1).max(600) }).strict(),
} as const satisfies Record<Command['action'], z.ZodTypeAny>;

/** The envelope: Ed25519 over the canonical JSON of `cmd` under a trusted key. */
export const SignedCommandSchema = z.object({ cmd: z.record(z.unknown()), keyId: z.string().min(1), sig: z.string().min(1) }).strict();

export const OfferSchema = z
  .object({
    /** Unique per offer: an offer id is acted on once (a retained message re-delivered is a replay). */
    id: z.string().min(8).max(64),
    deviceClass: z.string().min(1).max(64),
    /** A device id, or "*" for every device of the class. */
    target: z.string().min(1).max(64),
    version: z.string().regex(/^\d+\.\d+\.\d+([.+-][0-9A-Za-z.-]+)?$/),
    url: z
      .string()
      .url()
      .refine((u) => /^https?:\/\//.test(u), 'http or https'),
    size: z
      .number()
      .int()
      .positive()
      .max(2 ** 31),
    sha256: z.string().regex(/^[0-9a-f]{64}$/),
    expiresAt: isoTime,
    /** Install even if not newer than the running version (a deliberate downgrade). */
    allowDowngrade: z.boolean().default(false),
    /**
     * What the bundle was built for (its manifest's platform, arch, nodeAbi),
     * each optional: a console that differs refuses the offer before
     * downloading anything. Without them the bundle's signed manifest is
     * judged after the download, before unpacking.
     */
    platform: z.string().min(1).max(32).optional(),
    arch: z.string().min(1).max(32).optional(),
    nodeAbi: z.number().int().positive().optional(),
  })
  .strict();
export type Offer = z.infer<typeof OfferSchema>;

/** The envelope: Ed25519 over the canonical JSON of `offer` under a trusted key. */
export const SignedOfferSchema = z.object({ offer: z.record(z.unknown()), keyId: z.string().min(1), sig: z.string().min(1) }).strict();
