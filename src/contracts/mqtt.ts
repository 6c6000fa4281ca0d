/**
 * Messages on MQTT other than the telemetry packets (those are
 * firmware-protocol/packet.cddl): what a bike publishes about itself and what
 * the cloud sends it. Defined once here; the publishers are typed by these
 * schemas, the receivers parse with them, and
 * `firmware-protocol/contracts/mqtt.schema.json` is generated from this file
 * for the cloud team and checked against real traffic by tests.
 *
 * Topics (prefix `mqtt.topicPrefix`, default "bike"):
 *   <prefix>/<device>/status        retained, bike -> cloud   DeviceStatus (last will: state "offline")
 *   <prefix>/<device>/status/board  retained, bike -> cloud   BoardStatusMessage
 *   <prefix>/<device>/status/ota    retained, bike -> cloud   OtaStatusMessage
 *   <prefix>/<device>/cmd/result    bike -> cloud             CommandResult
 *   <prefix>/fleet/limits, <prefix>/<device>/limits   retained, cloud -> bike   LimitsMessage
 *   <prefix>/<device>/cmd, <prefix>/group/<g>/cmd     cloud -> bike   SignedCommand
 *   <prefix>/<device>/ota, fleet offers               cloud -> bike   SignedOffer
 *
 * MQTT_CONTRACT_VERSION changes when a field changes meaning or goes away;
 * MQTT_CONTRACT_REVISION when something is added.
 */
import { z } from 'zod';
import { BoardHelloSchema, BoardUpdateStatusSchema, LimitsInForceSchema } from './health.js';

export const MQTT_CONTRACT_VERSION = 1;
export const MQTT_CONTRACT_REVISION = 1;

const count = z.number().int().nonnegative();
const isoTime = z.string().datetime({ offset: true });

// --- bike -> cloud -------------------------------------------------------------

export const DeviceStatusSchema = z
  .object({
    state: z.enum(['online', 'offline']),
    deviceId: z.string(),
    /** The agent's version. */
    version: z.string(),
    /** Records waiting in the spool (online only). */
    backlog: count.optional(),
    /** The spool's condition (online only): a bike on a full disk says so, and says when it recovered. */
    spool: z.object({ condition: z.string(), pendingRecords: count, droppedInMemory: count }).strict().optional(),
    limits: LimitsInForceSchema,
    at: isoTime,
  })
  .strict();
export type DeviceStatus = z.infer<typeof DeviceStatusSchema>;

export const BoardStatusMessageSchema = z
  .object({ deviceId: z.string(), board: BoardHelloSchema.nullable(), update: BoardUpdateStatusSchema, at: isoTime })
  .strict();
export type BoardStatusMessage = z.infer<typeof BoardStatusMessageSchema>;

export const OTA_PHASES = ['idle', 'downloading', 'staging', 'switching', 'checking', 'rolling-back'] as const;

export const OtaOutcomeSchema = z
  .object({
    version: z.string(),
    result: z.enum(['updated', 'rolled-back', 'refused', 'failed']),
    reason: z.string().nullable(),
    at: isoTime,
  })
  .strict();
export type OtaOutcome = z.infer<typeof OtaOutcomeSchema>;

/** What just happened, beside the updater's state. */
export const OtaStatusDetailSchema = z
  .object({
    version: z.string().optional(),
    result: z.enum(['updated', 'rolled-back', 'failed']).optional(),
    reason: z.string().nullable().optional(),
    /** An offer refused before anything was downloaded (bad signature, wrong device, ...). */
    refused: z.string().optional(),
  })
  .strict();
export type OtaStatusDetail = z.infer<typeof OtaStatusDetailSchema>;

export const OtaStatusMessageSchema = OtaStatusDetailSchema.extend({
  phase: z.enum(OTA_PHASES),
  /** The version being installed (null when idle); `version` in the detail wins when both are present. */
  version: z.string().nullable().optional(),
  from: z.string().nullable(),
  last: OtaOutcomeSchema.nullable(),
  at: isoTime,
}).strict();
export type OtaStatusMessage = z.infer<typeof OtaStatusMessageSchema>;

export const CommandResultSchema = z
  .object({
    /** The command's id (null when the message was not a readable command). */
    id: z.string().nullable(),
    action: z.string().nullable(),
    ok: z.boolean(),
    reason: z.string().optional(),
    result: z.unknown().optional(),
    at: isoTime,
  })
  .strict();
export type CommandResult = z.infer<typeof CommandResultSchema>;

// --- cloud -> bike -------------------------------------------------------------

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
