/**
 * The agent's health: the `health` method and stream of the local API, the
 * body of `bike-telemetry status --json`, and what the updater reads to judge
 * a new version. Read by the console app, the CLI, the updater and support
 * tools, so it is defined here once, as a schema; the TypeScript types come
 * from it, the agent's `health()` is checked against them by the compiler,
 * and `firmware-protocol/contracts/health.schema.json` is generated from it
 * (scripts/gen-contracts.js) and checked against real responses by tests.
 *
 * Changes: additive fields raise HEALTH_REVISION; a renamed, removed or
 * retyped field raises HEALTH_VERSION. test/contracts keeps the two honest.
 */
import { z } from 'zod';

export const HEALTH_VERSION = 1;
/** 2: link.reads. */
export const HEALTH_REVISION = 2;

const count = z.number().int().nonnegative();
const nullableText = z.string().nullable();

export const LinkStateSchema = z.enum(['closed', 'opening', 'open', 'waiting', 'stopped']);

export const LinkHealthSchema = z
  .object({
    state: LinkStateSchema,
    /** Wall-clock ms since the state began. */
    since: z.number(),
    /** Why the link is not open (absent while it is). */
    lastError: z.string().optional(),
    /**
     * How the board is read: `paced` every serial.readCoalesceMs (someone watches the live figures, or a reply or a
     * firmware transfer is awaited), `heartbeat` once a heartbeat while nobody watches (figures up to a second old).
     */
    reads: z.enum(['paced', 'heartbeat']),
    counters: z
      .object({
        bytesIn: count,
        bytesOut: count,
        framesIn: count,
        oversized: count,
        opens: count,
        openFailures: count,
        disconnects: count,
        silenceTimeouts: count,
      })
      .strict(),
    /** The serial device. */
    path: z.string(),
  })
  .strict()
  .describe('The serial link to the flywheel board');

export const ProtocolNameSchema = z.enum(['fwp', 'peloton']);

export const ProtocolHealthSchema = z
  .object({
    name: ProtocolNameSchema,
    frames: count,
    /** Readings handed to the metrics engine. */
    samples: count,
    /** Decode failures by kind. */
    errors: z.record(count),
    lostFrames: count,
    seqGaps: count,
    boardResets: count,
    requestTimeouts: count,
  })
  .strict();

export const BoardHelloSchema = z
  .object({
    protoMinor: count,
    firmware: z.string(),
    /** fwp 1.1: the bootloader answers (no samples) while the board takes a firmware update. */
    bootMode: z.enum(['application', 'bootloader']),
    /** fwp 1.1: the board model id; null from a 1.0 board. */
    boardModel: count.nullable(),
    hwRev: count,
    ticksPerRev: count,
    sampleRateHz: count,
    /** The board's serial number, hex. */
    serial: z.string(),
  })
  .strict();

export const BoardStatusSchema = z
  .object({
    uptimeS: count,
    temperatureC: z.number(),
    supplyV: z.number(),
    faults: count,
    boardDropped: count,
  })
  .strict();

/** The flywheel board (fwp): what it said in HELLO and its last STATUS; null until it has. */
export const FwpBoardSchema = z.object({ hello: BoardHelloSchema.nullable(), status: BoardStatusSchema.nullable() }).strict();

/** The original bike's polled bus: no hello or status; the resistance table in use and the poll counters. */
export const PelotonBoardSchema = z
  .object({
    hello: z.null(),
    status: z.null(),
    calibration: z.object({ source: z.enum(['default', 'bike']), error: nullableText, table: z.array(z.number()) }).strict(),
    counters: z
      .object({
        requests: count,
        replies: count,
        values: count,
        timeouts: count,
        unmatched: count,
        calibrationLoads: count,
        calibrationFailures: count,
      })
      .strict(),
  })
  .strict();

export const BoardSchema = z.union([FwpBoardSchema, PelotonBoardSchema]).describe('What the board said about itself (by protocol)');

export const EngineCountersSchema = z
  .object({
    readings: count,
    records: count,
    gaps: count,
    resets: count,
    implausibleCadence: count,
    implausiblePower: count,
    implausibleHr: count,
  })
  .strict();

export const SpoolOpenSchema = z
  .object({
    state: z.literal('open'),
    file: z.string(),
    bytes: count,
    maxBytes: count,
    /** Records on disk waiting for the broker's acknowledgement. */
    records: count,
    oldestSeq: count.nullable(),
    newestSeq: count.nullable(),
    nextSeq: count,
    /** Records made since the last commit (at most a second's). */
    pendingRecords: count,
    diskFull: z.boolean(),
    /** Writes are failing (disk full or another error); records wait in memory. */
    writeFailing: z.boolean(),
    lastWriteError: nullableText,
    /** A sequence block could not be reserved on disk (numbering goes on). */
    sequenceReserveError: nullableText,
    evictedRecords: count,
    droppedInMemory: count,
    unreportedGaps: count,
    outbox: count,
    /** Unreadable spool files moved aside at start. */
    movedAside: z.array(z.string()),
    schemaVersion: count,
    synchronous: z.enum(['OFF', 'NORMAL', 'FULL']),
  })
  .strict();

/** Retried with backoff while `heldRecords` wait in memory (none when the spool is too new). */
export const SpoolUnavailableSchema = z
  .object({ state: z.literal('unavailable'), error: z.string(), heldRecords: count, droppedWhileUnavailable: count })
  .strict();

export const LimitSourceSchema = z.enum(['config', 'fleet', 'device']);

export const LimitsInForceSchema = z
  .object({
    uploadBytesPerS: count,
    drainBytesPerS: count,
    backoffBaseMs: count,
    source: z.object({ uploadBytesPerS: LimitSourceSchema, drainBytesPerS: LimitSourceSchema, backoffBaseMs: LimitSourceSchema }).strict(),
  })
  .strict()
  .describe('Upload limits in force and where each came from (0: unlimited)');

export const UploadActiveSchema = z
  .object({
    state: z.enum(['idle', 'connecting', 'connected', 'waiting', 'stopped']),
    url: z.string(),
    protocolVersion: z.union([z.literal(4), z.literal(5)]),
    inflight: count,
    window: count,
    maxPacketBytes: count.nullable(),
    rateBytesPerS: count,
    limits: LimitsInForceSchema,
    lastError: nullableText,
    counters: z
      .object({
        connects: count,
        connectFailures: count,
        disconnects: count,
        packetsSent: count,
        packetsAcked: count,
        packetsRefused: count,
        recordsAcked: count,
        bytesSent: count,
        maxInflightSeen: count,
        protocolFallbacks: count,
        noticesSent: count,
        noticesAcked: count,
      })
      .strict(),
  })
  .strict();

export const RideSummarySchema = z
  .object({
    ride: z.string(),
    /** Pseudonymised member id (never the raw id), or null for an anonymous ride. */
    member: nullableText,
    classId: nullableText,
    startedBy: z.enum(['auto', 'api']),
    startedAt: z.string(),
    endedAt: nullableText,
    endReason: z.enum(['api', 'idle', 'replaced', 'shutdown', 'purged']).nullable(),
    durationS: z.number().nonnegative(),
    distanceM: z.number().nonnegative(),
    energyKj: z.number().nonnegative(),
    avgPowerW: z.number().nullable(),
    maxPowerW: z.number().nullable(),
    /** Over the records where the rider pedalled. */
    avgCadenceRpm: z.number().nullable(),
    maxCadenceRpm: z.number().nullable(),
    avgHrBpm: z.number().nullable(),
    maxHrBpm: z.number().nullable(),
    /** Best rolling average; null when the ride is shorter than the window. */
    best1minW: z.number().nullable(),
    best5minW: z.number().nullable(),
    records: count,
    firstSeq: count.nullable(),
    lastSeq: count.nullable(),
  })
  .strict();

export const BoardUpdateStageSchema = z.enum(['waiting-idle', 'transferring', 'testing', 'done', 'failed']);

export const BoardUpdateStatusSchema = z
  .object({
    stage: BoardUpdateStageSchema,
    version: z.string(),
    fromVersion: nullableText,
    size: count,
    /** Bytes the board has written (its offset), while transferring. */
    written: count,
    percent: z.number().min(0).max(100),
    bytesPerS: z.number().nullable(),
    bytesSent: count,
    resumes: count,
    retransmits: count,
    startedAt: nullableText,
    finishedAt: nullableText,
    error: z.object({ code: z.string(), message: z.string() }).strict().nullable(),
  })
  .strict()
  .describe("The flywheel board's firmware update (fwp)");

export const RecentEntrySchema = z
  .object({
    time: z.string(),
    level: z.enum(['warn', 'error', 'fatal']),
    msg: z.string(),
    /** The structured fields of the entry, as logged. */
    fields: z.record(z.unknown()),
  })
  .strict();

export const ApiStatsSchema = z
  .object({
    clients: count,
    connections: count,
    requests: count,
    errors: count,
    droppedSlow: count,
    eventsSent: count,
    socket: nullableText,
    httpPort: count.nullable(),
  })
  .strict();

export const AgentHealthSchema = z
  .object({
    deviceId: z.string(),
    agentVersion: z.string(),
    /** Why the agent is not healthy; empty when it is. */
    problems: z.array(z.string()),
    link: LinkHealthSchema,
    protocol: ProtocolHealthSchema,
    board: BoardSchema,
    engine: EngineCountersSchema,
    spool: z.discriminatedUnion('state', [SpoolOpenSchema, SpoolUnavailableSchema]),
    upload: z.union([
      UploadActiveSchema,
      z.object({ state: z.literal('disabled') }).strict(),
      z.object({ state: z.literal('unavailable'), error: z.string() }).strict(),
    ]),
    /** The ride in progress, or null. */
    ride: RideSummarySchema.nullable(),
    /** The flywheel board's firmware update (fwp), null when none was asked for. */
    boardUpdate: BoardUpdateStatusSchema.nullable(),
    api: ApiStatsSchema,
    /** The newest warning or error the agent logged, or null. */
    lastError: RecentEntrySchema.nullable(),
    healthy: z.boolean(),
  })
  .strict()
  .describe('The agent’s health (local API method and stream "health")');

export type LinkHealth = z.infer<typeof LinkHealthSchema>;
export type ProtocolHealth = z.infer<typeof ProtocolHealthSchema>;
export type BoardHello = z.infer<typeof BoardHelloSchema>;
export type BoardStatus = z.infer<typeof BoardStatusSchema>;
export type BoardInfo = z.infer<typeof BoardSchema>;
export type FwpBoardInfo = z.infer<typeof FwpBoardSchema>;
export type PelotonBoardInfo = z.infer<typeof PelotonBoardSchema>;
export type SpoolHealth = z.infer<typeof SpoolOpenSchema>;
export type LimitsInForce = z.infer<typeof LimitsInForceSchema>;
export type LimitSource = z.infer<typeof LimitSourceSchema>;
export type UploadStats = z.infer<typeof UploadActiveSchema>;
export type RideSummary = z.infer<typeof RideSummarySchema>;
export type BoardUpdateStatus = z.infer<typeof BoardUpdateStatusSchema>;
export type RecentEntry = z.infer<typeof RecentEntrySchema>;
export type AgentHealth = z.infer<typeof AgentHealthSchema>;
