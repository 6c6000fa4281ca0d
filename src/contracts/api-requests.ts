/**
 * The part of the local API's contract (api.ts) the agent parses at run time:
 * its version, the request envelope, each method's parameters, the stream
 * names and error codes. Apart from the results and events so the running
 * agent does not build schemas that only the published contract and the
 * tests check (api.ts re-exports all of this; change the version here with
 * any change there).
 */
import { z } from 'zod';

export const API_VERSION = 1;
/**
 * Additive changes within API_VERSION 1. Revision 2: the browser transports
 * (HTTP POST and SSE) serve only PUBLIC_METHODS and PUBLIC_STREAMS; the rest
 * answer `forbidden` there (docs/api.md, "Who may call what").
 */
export const API_REVISION = 2;

export const STREAMS = ['live', 'summary', 'health', 'rides', 'log', 'capture'] as const;
export const StreamSchema = z.enum(STREAMS);
export type Stream = z.infer<typeof StreamSchema>;

export const API_ERROR_CODES = [
  'parse_error',
  'bad_request',
  'unknown_method',
  'line_too_long',
  'no_ride',
  'not_found',
  'unavailable',
  'busy',
  'forbidden',
  /** A firmware image or update refused (signature, board model, downgrade, ...). */
  'refused',
  'internal',
] as const;
export const ApiErrorCodeSchema = z.enum(API_ERROR_CODES);
export type ApiErrorCode = z.infer<typeof ApiErrorCodeSchema>;

export const RequestIdSchema = z.union([z.string().max(64), z.number(), z.null()]);

export const RequestSchema = z
  .object({
    id: RequestIdSchema.optional(),
    method: z.string().min(1).max(64),
    params: z.record(z.unknown()).optional(),
  })
  .strict();

const text = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .regex(/^[\x20-\x7e\u00a0-\uffff]+$/, 'printable characters only');

const none = z.object({}).strict();

/** Each method's parameters. */
export const PARAMS = {
  hello: none,
  health: none,
  subscribe: z.object({ streams: z.array(StreamSchema).min(1) }).strict(),
  unsubscribe: z.object({ streams: z.array(StreamSchema).min(1) }).strict(),
  'ride.start': z.object({ member: text(128).optional(), classId: text(128).optional() }).strict(),
  'ride.end': none,
  'ride.current': none,
  'rides.list': z
    .object({
      limit: z.number().int().min(1).max(500).default(20),
      /** Rides that started before this (ms since the epoch, or an ISO 8601 time). */
      before: z.union([z.number().int().nonnegative(), z.string().datetime({ offset: true })]).optional(),
      member: text(128).optional(),
    })
    .strict(),
  'rides.get': z.object({ ride: text(64) }).strict(),
  'member.purge': z.object({ member: text(128) }).strict(),
  'live.history': z.object({ seconds: z.number().int().min(1).max(120).default(60) }).strict(),
  'log.recent': none,
  'capture.start': z.object({ seconds: z.number().min(0.1).max(3600) }).strict(),
  'capture.stop': none,
  'board.info': none,
  // 32 KiB of image per piece: its base64 stays under the default 64 KiB request line.
  'board.upload': z.object({ offset: z.number().int().min(0), data: z.string().max(44 * 1024) }).strict(),
  'board.update': z.object({ sha256: z.string().regex(/^[0-9a-f]{64}$/) }).strict(),
} as const;

export type Method = keyof typeof PARAMS;
export const METHODS = Object.keys(PARAMS) as Method[];
export type MethodParams<M extends Method> = z.output<(typeof PARAMS)[M]>;
