/**
 * Messages beside the telemetry stream, kept in the spool's outbox until the
 * broker acknowledges them: a ride's summary when it ends (topic
 * `<prefix>/<device>/ride`) and a member purge (`<prefix>/<device>/purge`).
 * Standard CBOR; schemas `ride-summary` and `purge-notice` in
 * firmware-protocol/packet.cddl.
 */
import { Encoder } from './cbor.js';
import type { PurgeResult } from '../spool/rides.js';
import type { RideSummary } from '../contracts/health.js';

export const NOTICE_SCHEMA_VERSION = 1;

const encoder = new Encoder({ useRecords: false, mapsAsObjects: true, variableMapSize: true, tagUint8Array: false });

export function encodeRideSummary(deviceId: string, s: RideSummary): Buffer {
  return encoder.encode({
    v: NOTICE_SCHEMA_VERSION,
    dev: deviceId,
    ride: s.ride,
    member: s.member,
    class: s.classId,
    started_by: s.startedBy,
    started_ms: Date.parse(s.startedAt),
    ended_ms: s.endedAt ? Date.parse(s.endedAt) : null,
    end: s.endReason,
    duration_s: s.durationS,
    distance_m: s.distanceM,
    energy_kj: s.energyKj,
    avg_power_w: s.avgPowerW,
    max_power_w: s.maxPowerW,
    avg_cadence_rpm: s.avgCadenceRpm,
    max_cadence_rpm: s.maxCadenceRpm,
    avg_hr_bpm: s.avgHrBpm,
    max_hr_bpm: s.maxHrBpm,
    best_1min_w: s.best1minW,
    best_5min_w: s.best5minW,
    seq: s.firstSeq !== null && s.lastSeq !== null ? [s.firstSeq, s.lastSeq] : null,
  });
}

export function encodePurgeNotice(deviceId: string, member: string, purge: PurgeResult, atMs: number): Buffer {
  return encoder.encode({
    v: NOTICE_SCHEMA_VERSION,
    dev: deviceId,
    member,
    at_ms: atMs,
    rides: purge.rides.map((r) => ({ ride: r.ride, seq: r.firstSeq !== null && r.lastSeq !== null ? [r.firstSeq, r.lastSeq] : null })),
  });
}
