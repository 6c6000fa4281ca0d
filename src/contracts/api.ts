/**
 * The local API (Unix socket; loopback HTTP POST + SSE for the public part):
 * requests, results, errors and events, defined once. The hub (api/hub.ts)
 * parses requests with these schemas and the agent's backend returns these
 * types; `firmware-protocol/contracts/api.schema.json` is generated from this
 * file for the console app team and checked against real traffic by tests.
 *
 *   request:  {"id": 1, "method": "ride.start", "params": {"member": "..."}}
 *   response: {"id": 1, "result": ...} or {"id": 1, "error": {"code": "...", "message": "..."}}
 *   event:    {"event": "live", "data": {...}}
 *
 * API_VERSION changes when a method, field or event changes meaning or goes
 * away; API_REVISION when something is added. Both live in api-requests.ts,
 * with the requests the running agent parses, so it need not load the rest.
 */
import { z } from 'zod';
import { AgentHealthSchema, BoardHelloSchema, BoardUpdateStatusSchema, RecentEntrySchema, RideSummarySchema } from './health.js';
import { API_VERSION, ApiErrorCodeSchema, METHODS, RequestIdSchema, StreamSchema, type Method } from './api-requests.js';

export * from './api-requests.js';

const count = z.number().int().nonnegative();
const nullableNumbers = z.array(z.number().nullable());

export const PurgeResultSchema = z.object({ member: z.string(), rides: count, records: count }).strict();
export type PurgeResult = z.infer<typeof PurgeResultSchema>;

export const HistorySchema = z
  .object({
    tUs: z.array(z.number()),
    powerW: nullableNumbers,
    cadenceRpm: nullableNumbers,
    hrBpm: nullableNumbers,
    speedKmh: nullableNumbers,
    resistancePct: nullableNumbers,
  })
  .strict()
  .describe('The last seconds of 10 Hz records, oldest first, one array per figure');
export type History = z.infer<typeof HistorySchema>;

const SlotSchema = z.object({ slot: count, state: z.string(), version: z.string().nullable(), active: z.boolean() }).strict();

/** The board's FW_INFO, readable (fwp 1.1). */
export const FwInfoViewSchema = z
  .object({
    bootMode: z.enum(['application', 'bootloader']),
    boardModel: count,
    activeSlot: count,
    slotSize: count,
    maxChunk: count,
    window: count,
    slots: z.array(SlotSchema),
    transfer: z
      .object({ state: z.string(), version: z.string(), size: count, next: count, slot: count, sha256: z.string() })
      .strict()
      .nullable(),
  })
  .strict();
export type FwInfoView = z.infer<typeof FwInfoViewSchema>;

export const BoardInfoResultSchema = z.union([
  FwInfoViewSchema.extend({ hello: BoardHelloSchema, update: BoardUpdateStatusSchema.nullable() }).strict(),
  z
    .object({
      hello: BoardHelloSchema,
      bootMode: z.enum(['application', 'bootloader']),
      /** The board cannot take updates over the link (a fwp 1.0 board, say). */
      updatable: z.literal(false),
      reason: z.string(),
      update: BoardUpdateStatusSchema.nullable(),
    })
    .strict(),
]);
export type BoardInfoResult = z.infer<typeof BoardInfoResultSchema>;

/** Each method's result. */
export const RESULTS = {
  hello: z.object({ api: z.literal(API_VERSION), agent: z.string(), deviceId: z.string() }).strict(),
  health: AgentHealthSchema,
  subscribe: z.object({ subscriptions: z.array(StreamSchema) }).strict(),
  unsubscribe: z.object({ subscriptions: z.array(StreamSchema) }).strict(),
  'ride.start': z.object({ started: RideSummarySchema, ended: RideSummarySchema.nullable() }).strict(),
  'ride.end': RideSummarySchema,
  'ride.current': RideSummarySchema.nullable(),
  'rides.list': z.array(RideSummarySchema),
  'rides.get': RideSummarySchema,
  'member.purge': PurgeResultSchema,
  'live.history': HistorySchema,
  'log.recent': z.array(RecentEntrySchema),
  'capture.start': z.object({ seconds: z.number() }).strict(),
  'capture.stop': z.object({ stopped: z.literal(true) }).strict(),
  'board.info': BoardInfoResultSchema,
  'board.upload': z.object({ received: count }).strict(),
  'board.update': BoardUpdateStatusSchema,
} as const satisfies Record<Method, z.ZodTypeAny>;
export type MethodResult<M extends Method> = z.infer<(typeof RESULTS)[M]>;

export const ErrorReplySchema = z
  .object({ id: RequestIdSchema, error: z.object({ code: ApiErrorCodeSchema, message: z.string() }).strict() })
  .strict();

const figure = (d: string) => z.number().nullable().describe(d);

/** A 10 Hz record (stream `live`). */
export const LiveEventSchema = z
  .object({
    tUs: z.number().describe('engine time, µs (continues across agent restarts)'),
    cadenceRpm: figure('rpm'),
    powerW: figure('W'),
    resistancePct: figure('%'),
    flywheelRpm: figure('rpm'),
    speedKmh: figure('km/h'),
    hrBpm: figure('beats per minute'),
    distanceM: figure('ride distance, m'),
    energyKj: figure('ride energy, kJ'),
    flags: count.describe('record flags (packet.cddl)'),
  })
  .strict();

/** Every event the agent sends, by name: `{"event": name, "data": ...}`. */
export const EVENTS = {
  hello: z
    .object({
      api: z.literal(API_VERSION),
      revision: count,
      agent: z.string(),
      deviceId: z.string(),
      methods: z.array(z.enum(METHODS as [Method, ...Method[]])),
      streams: z.array(StreamSchema),
    })
    .strict(),
  live: LiveEventSchema,
  /** On `live` too: the board left its application for a firmware update, or came back. */
  board: z.object({ updating: z.boolean(), stage: z.string(), version: z.string(), percent: z.number() }).strict(),
  summary: z
    .object({
      tUs: z.number(),
      powerW: z.number().nullable(),
      cadenceRpm: z.number().nullable(),
      hrBpm: z.number().nullable(),
      speedKmh: z.number().nullable(),
      resistancePct: z.number().nullable(),
      distanceM: z.number().nullable(),
      energyKj: z.number().nullable(),
      ride: z
        .object({ ride: z.string(), durationS: z.number(), avgPowerW: z.number().nullable(), member: z.boolean() })
        .strict()
        .nullable(),
    })
    .strict(),
  health: AgentHealthSchema,
  ride: RideSummarySchema.extend({ state: z.enum(['started', 'ended']) }).strict(),
  log: RecentEntrySchema,
  capture: z.object({ tMs: z.number(), dir: z.union([z.literal(0), z.literal(1)]), b64: z.string() }).strict(),
  'capture.end': z.object({ reason: z.string() }).strict(),
} as const;
export type EventName = keyof typeof EVENTS;
export type EventData<E extends EventName> = z.infer<(typeof EVENTS)[E]>;
