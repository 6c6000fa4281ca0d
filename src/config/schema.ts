/**
 * Agent configuration: JSON, validated strictly (an unknown key is an error,
 * so a typo never silently falls back to a default). Every field has an
 * embedded default, so `run --simulate` needs no file at all.
 */
import { hostname } from 'node:os';
import { z } from 'zod';
import { DEFAULT_OTA_ROOT, defaultDataDir } from './defaults.js';

/** Timer settings stop at an hour: Node fires a timer above 2^31-1 ms at once, which would turn a backoff into a flood. */
const MAX_TIMER_MS = 3_600_000;
const ms = (def: number) => z.number().int().positive().max(MAX_TIMER_MS).default(def);

const MQTT_SCHEMES = ['mqtt:', 'mqtts:', 'ws:', 'wss:'];

function defaultDeviceId(): string {
  const h =
    hostname()
      .replace(/[^A-Za-z0-9_.-]/g, '-')
      .slice(0, 48) || 'bike';
  return `dev-${h}`;
}

export const ConfigSchema = z
  .object({
    device: z
      .object({
        /** Stable id of this bike; part of every record's idempotency key. @default `dev-<hostname>` */
        id: z
          .string()
          .regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/, 'letters, digits, "_", "." or "-", at most 64, starting with a letter or digit')
          .default(defaultDeviceId),
      })
      .strict()
      .default({}),
    serial: z
      .object({
        /** the board's serial device */
        path: z.string().min(1).default('/dev/flywheel'),
        /** Default by protocol: fwp 115200, peloton 19200. @default `115200` (fwp), `19200` (peloton) */
        baudRate: z.number().int().positive().max(4_000_000).optional(),
        /** fwp: our flywheel board; peloton: the original bike's polled bus (the agent polls as its head unit). */
        protocol: z.enum(['fwp', 'peloton']).default('fwp'),
        /** peloton: one poll per this long (the original head unit: 100 ms). */
        pollIntervalMs: z.number().int().min(20).max(1000).default(100),
        /** peloton: while on the default resistance table, read the bike's again this often. */
        calibrationRetryS: z.number().int().min(1).max(86400).default(30),
        /** reopen backoff after the device disappears: exponential with full jitter between these */
        reopenBaseMs: ms(250),
        /** reopen backoff after the device disappears: exponential with full jitter between these */
        reopenCapMs: ms(5000),
        /** Reopen an open port that has delivered nothing for this long (the board streams at 50 Hz). 0 disables. */
        silenceTimeoutMs: z.number().int().min(0).max(MAX_TIMER_MS).default(3000),
        /**
         * Pause between reads so the frames of one 10 Hz period cost one wakeup; the most latency it adds to live
         * figures. Default by protocol: fwp 100; peloton 5 (a reply must be read before the next poll, 100 ms later).
         * While no API client watches the live figures, the agent reads the board once a heartbeat instead
         * (spool.flushIntervalMs, where silenceTimeoutMs is at least three of them; docs/performance.md).
         @default `100` (fwp), `5` (peloton: a reply must be read before the next poll)
         */
        readCoalesceMs: z.number().int().min(0).max(250).optional(),
        /** board requests (fwp hello, sample rate; peloton calibration entries) */
        requestTimeoutMs: ms(500),
        /** board requests (fwp hello, sample rate; peloton calibration entries) */
        requestRetries: z.number().int().min(0).max(10).default(3),
      })
      .strict()
      .default({}),
    /** A relative path in a config file is taken from the file's folder (load.ts); ".." is refused. @default `$STATE_DIRECTORY` or `./data` (relative: from the config file's folder; no `..`) */
    dataDir: z
      .string()
      .min(1)
      .refine((d) => !d.split(/[\\/]/).includes('..'), 'no ".." in the path')
      .default(defaultDataDir),
    spool: z
      .object({
        /** Cap on the spool's files; the oldest records are evicted (and reported as a gap) beyond it. */
        maxBytes: z
          .number()
          .int()
          .min(1 << 20)
          .default(256 * 1024 * 1024),
        /** SQLite synchronous in WAL mode. FULL: a committed record survives a power cut. NORMAL: it survives a crash, and a power cut may roll back the last commits. */
        synchronous: z.enum(['FULL', 'NORMAL']).default('FULL'),
        /** Records kept in memory while the disk is full (36,000 = 1 hour at 10 Hz). */
        memoryRecords: z.number().int().min(100).max(1_000_000).default(36_000),
        /** Commit queued records this often (at most once a second, so at most 1 s is ever uncommitted). */
        flushIntervalMs: z.number().int().min(50).max(1000).default(1000),
      })
      .strict()
      .default({}),
    mqtt: z
      .object({
        /** Upload at all; false keeps everything in the spool. */
        enabled: z.boolean().default(true),
        /** The broker: `mqtt://`, `mqtts://` (TLS), `ws://` or `wss://`. */
        url: z
          .string()
          .url()
          .refine(
            (u) => URL.canParse(u) && MQTT_SCHEMES.includes(new URL(u).protocol),
            `a broker url: ${MQTT_SCHEMES.map((p) => `${p}//`).join(', ')}`,
          )
          .default('mqtt://127.0.0.1:1883'),
        /** The first level of every topic: `<prefix>/<device.id>/telemetry`, `/status`, `/ride` (summaries), `/purge` (member purges) and the rest in docs/mqtt.md. */
        topicPrefix: z
          .string()
          .min(1)
          .regex(/^[^#+]+$/, 'no MQTT wildcards')
          .default('bike'),
        /** How long the broker keeps this bike's session while it is away (longer than any planned outage). */
        /** MQTT 5 carries it in four bytes (0xFFFFFFFF: never expires). */
        sessionExpirySec: z
          .number()
          .int()
          .min(60)
          .max(0xffffffff)
          .default(7 * 24 * 3600),
        /**  */
        /** MQTT keepalive: the broker drops a silent connection (and publishes the last will) after 1.5 times this. */
        keepaliveSec: z.number().int().min(5).max(3600).default(60),
        /** Packets in flight at most (never more than the broker's Receive Maximum). */
        maxInflight: z.number().int().min(1).max(1000).default(16),
        /** packet size limits (never more than the broker's Maximum Packet Size) */
        maxRecordsPerPacket: z.number().int().min(1).max(100_000).default(600),
        /** Largest packet (never more than the broker's Maximum Packet Size). */
        maxPacketBytes: z
          .number()
          .int()
          .min(1024)
          .default(256 * 1024),
        /** Upload rate limit, bytes/s, so a backlog never starves the class video; 0 for none. */
        rateBytesPerS: z
          .number()
          .int()
          .min(0)
          .default(32 * 1024),
        /** Backlog drain limit within the upload rate (0: the upload rate only); the cloud can set both (retained <prefix>/fleet/limits, <prefix>/<device>/limits). */
        /** Broker login: the device id by default (the ACL lets a bike write only under its own id). */
        username: z.string().min(1).optional(),
        /** A file holding the broker password (kept out of the config and the logs). */
        passwordFile: z.string().min(1).optional(),
        /** backlog drain limit within the upload rate (0: the upload rate only) */
        drainBytesPerS: z.number().int().min(0).default(0),
        /** Reconnect backoff: exponential with full jitter between these. */
        backoffBaseMs: z.number().int().min(10).max(MAX_TIMER_MS).default(1000),
        /** reconnect backoff: exponential with full jitter between these */
        backoffCapMs: z.number().int().min(10).max(MAX_TIMER_MS).default(300_000),
        /** deflate packet columns (`enc: "delta+deflate"`) */
        deflate: z.boolean().default(true),
        /** How often to look for newly committed records. */
        pollMs: z.number().int().min(50).max(60_000).default(1000),
        /** Mutual TLS (with an mqtts:// url): CA to trust, and this bike's certificate and key. */
        tls: z
          .object({
            /** Mutual TLS: the CA to trust (PEM file). */
            caFile: z.string().optional(),
            /** Mutual TLS: this bike's certificate (PEM file). */
            certFile: z.string().optional(),
            /** Mutual TLS: this bike's private key (PEM file). */
            keyFile: z.string().optional(),
          })
          .strict()
          .optional(),
      })
      .strict()
      .refine((m) => m.backoffCapMs >= m.backoffBaseMs, { message: 'backoffCapMs must be at least backoffBaseMs', path: ['backoffCapMs'] })
      .default({}),
    metrics: z
      .object({
        /** A shipped model name (firmware-protocol/calibration/NAME.json) or a path to a JSON file. @default `sim-bike-v1` (fwp), `peloton-v1` (peloton) */
        calibration: z.string().min(1).optional(),
        /** cadence reads 0 after this long without a crank event */
        cadenceTimeoutMs: ms(3000),
        /** a value not refreshed is flagged stale, then withdrawn */
        staleAfterMs: ms(1000),
        /** a value not refreshed is flagged stale, then withdrawn */
        expireAfterMs: ms(5000),
      })
      .strict()
      .default({}),
    log: z
      .object({
        /** `trace` … `fatal`, `silent` */
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
        /** Log every 10 Hz record ("all"), one per second ("1hz"), or none. */
        records: z.enum(['all', '1hz', 'none']).default('all'),
        /** Seconds between link/engine statistics lines. */
        statsIntervalS: z.number().int().min(0).max(86400).default(60),
      })
      .strict()
      .default({}),
    api: z
      .object({
        /**
         * Unix socket of the local API (console app, CLI). Default:
         * $RUNTIME_DIRECTORY/api.sock under systemd, else /run/bike-telemetry/api.sock
         * when that folder exists, else <dataDir>/api.sock.
         */
        socketPath: z.string().min(1).optional(),
        /** Loopback TCP port for the browser API (SSE) and the diagnostics page; 0: off. */
        httpPort: z.number().int().min(0).max(65535).default(0),
        /** Loopback only: the API is never served on another interface. */
        httpHost: z.enum(['127.0.0.1', '::1', 'localhost']).default('127.0.0.1'),
        /** A request line longer than this is refused (the rest of it is discarded). */
        maxLineBytes: z
          .number()
          .int()
          .min(256)
          .max(1 << 20)
          .default(65536),
        /** A client with more than this waiting to be written to it is too slow and is dropped. */
        clientQueueBytes: z
          .number()
          .int()
          .min(4096)
          .max(1 << 26)
          .default(1 << 20),
        /**  */
        /** API connections on the Unix socket at once; one more is refused with a reason. */
        maxClients: z.number().int().min(1).max(1000).default(32),
        /** A socket client with no subscription that sends nothing for this long is closed. */
        idleTimeoutS: z.number().int().min(1).max(86400).default(60),
        /** Event streams (SSE) open at once on the HTTP port; more are refused with 503. */
        maxHttpStreams: z.number().int().min(1).max(256).default(8),
      })
      .strict()
      .default({}),
    rides: z
      .object({
        /** Start a ride when pedalling begins, without a member. */
        autoStart: z.boolean().default(true),
        /** End a ride after this long without pedalling. */
        idleEndS: z.number().int().min(5).max(86400).default(120),
      })
      .strict()
      .default({}),
    privacy: z
      .object({
        /**
         * Fleet key for member pseudonyms (HMAC-SHA256, at least 32 bytes). Absent:
         * a random key of this device, created under dataDir.
         */
        memberKeyFile: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    commands: z
      .object({
        /** Fleet keys that may sign commands (docs/fleet.md); none: commands are not taken. */
        trustedKeys: z.array(z.object({ id: z.string().min(1), publicKeyFile: z.string().min(1) }).strict()).default([]),
        /** Groups this bike belongs to: commands to `group:<name>` on <prefix>/group/<name>/cmd reach it. */
        groups: z.array(z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/)).default([]),
        /** The longest a command may live (its expiresAt at most this far ahead); bounds replay protection after lost state. */
        maxLifetimeS: z
          .number()
          .int()
          .min(60)
          .max(7 * 86400)
          .default(86400),
      })
      .strict()
      .default({}),
    ota: z
      .object({
        /** The updater (`bike-telemetry updater`, its own unit) listens for offers. */
        enabled: z.boolean().default(false),
        /** Where versions/, current, previous and the updater's state live. */
        root: z.string().min(1).default(DEFAULT_OTA_ROOT),
        /** Offers name the class of console they are for. */
        deviceClass: z.string().min(1).default('bike-v1'),
        /** Public keys that may sign bundles and offers; several while keys rotate. */
        trustedKeys: z.array(z.object({ id: z.string().min(1), publicKeyFile: z.string().min(1) }).strict()).default([]),
        /** The new version must be healthy within this long after the switch, or it is rolled back. */
        healthDeadlineS: z.number().int().min(5).max(3600).default(120),
        /** How the agent's service is restarted after a switch. */
        restartCommand: z.array(z.string().min(1)).min(1).default(['systemctl', 'restart', 'bike-telemetry.service']),
        /**
         * Run before each restart (failure ignored): clears the start limit a
         * crashing version makes the agent's unit hit, so the rollback's restart
         * is not refused. Empty: none.
         */
        resetCommand: z.array(z.string().min(1)).default(['systemctl', 'reset-failed', 'bike-telemetry.service']),
        /** Fleet-wide offers (besides <prefix>/<device>/ota). */
        fleetTopic: z.string().min(1).optional(),
        /**
         * Where the agent leaves signed offers for `updater --once`
         * (ota/offer-inbox.ts); default <dataDir>/ota-offers, the folder
         * bike-telemetry-updater.path watches.
         */
        inboxDir: z.string().min(1).optional(),
      })
      .strict()
      .default({}),
    board: z
      .object({
        /** Flywheel-board firmware updates over the link (fwp 1.1; firmware-protocol/SPEC.md section 11). */
        update: z
          .object({
            /** Public keys that may sign board images (the fleet firmware key); several while keys rotate. */
            trustedKeys: z.array(z.object({ id: z.string().min(1), publicKeyFile: z.string().min(1) }).strict()).default([]),
            /** An update starts only after the bike was idle (no ride, no pedalling) this long. */
            idleS: z.number().int().min(0).max(3600).default(120),
            /** An update still waiting for idle after this long fails (it never interrupts a ride). */
            waitIdleMaxS: z
              .number()
              .int()
              .min(1)
              .max(30 * 86400)
              .default(86400),
            /** The new image must say HELLO and be confirmed within this long after its test boot, or the board goes back to the old one. */
            confirmDeadlineS: z.number().int().min(5).max(600).default(30),
            /**
             * Signed board images shipped with the agent (a release's
             * board-firmware/ folder; default: the installed bundle's). The
             * newest for the board's model, newer than what it runs, is
             * installed when the bike is idle. "" turns this off.
             */
            imagesDir: z.string().optional(),
          })
          .strict()
          .default({}),
      })
      .strict()
      .default({}),
    simulator: z
      .object({
        /** Ride script JSON for `run --simulate`; the built-in interval ride when absent. */
        script: z.string().optional(),
        /** for `run --simulate` */
        sampleRateHz: z.number().int().min(1).max(200).default(50),
        /** for `run --simulate` */
        seed: z.number().int().default(1),
      })
      .strict()
      .default({}),
  })
  .strict()
  .transform((c) => {
    const peloton = c.serial.protocol === 'peloton';
    return {
      ...c,
      serial: {
        ...c.serial,
        baudRate: c.serial.baudRate ?? (peloton ? 19200 : 115200),
        readCoalesceMs: c.serial.readCoalesceMs ?? (peloton ? 5 : 100),
      },
      metrics: { ...c.metrics, calibration: c.metrics.calibration ?? (peloton ? 'peloton-v1' : 'sim-bike-v1') },
    };
  });

export type AgentConfig = z.infer<typeof ConfigSchema>;
