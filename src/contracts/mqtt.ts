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
 * MQTT_CONTRACT_REVISION when something is added (in either file: the
 * messages the cloud sends are in mqtt-inbound.ts, re-exported here, so the
 * running agent parses them without building the ones it only publishes).
 */
import { z } from 'zod';
import { BoardHelloSchema, BoardUpdateStatusSchema, LimitsInForceSchema } from './health.js';

export * from './mqtt-inbound.js';

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
