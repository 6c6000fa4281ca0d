/**
 * The updater's state file (`<ota.root>/ota/state.json`): its shape and a
 * reader. Its own module so `bike-telemetry status` can show the update
 * state without loading the updater.
 */
import { readFileSync } from 'node:fs';
import type { Offer, OtaOutcome, OtaStatusDetail, OtaStatusMessage } from '../contracts/mqtt.js';

export type OtaPhase = OtaStatusMessage['phase'];

export interface OtaState {
  phase: OtaPhase;
  offer: Offer | null;
  /** The version `current` named before the switch. */
  from: string | null;
  /** What the agent looked like before the switch: the new version must do at least as well. */
  baseline: { linkOpen: boolean; uploadConnected: boolean } | null;
  /** The last outcome, for `status` and the status topic. */
  last: OtaOutcome | null;
  seenOffers: string[];
  failedVersions: string[];
}

export const EMPTY_OTA_STATE: OtaState = {
  phase: 'idle',
  offer: null,
  from: null,
  baseline: null,
  last: null,
  seenOffers: [],
  failedVersions: [],
};

/** The state as written, missing fields filled in; an unreadable file reads as idle. */
export function readOtaStateFile(file: string): OtaState {
  try {
    return { ...EMPTY_OTA_STATE, ...(JSON.parse(readFileSync(file, 'utf8')) as Partial<OtaState>) };
  } catch {
    return { ...EMPTY_OTA_STATE };
  }
}

/**
 * The retained message on `<prefix>/<device>/status/ota`: the updater's state
 * and what just happened. One shape whoever sends it (the updater, or the
 * agent refusing a forged offer before it reaches the updater).
 */
export function otaStatusPayload(state: OtaState, detail: OtaStatusDetail, at: Date = new Date()): string {
  const message: OtaStatusMessage = {
    phase: state.phase,
    version: state.offer?.version ?? null,
    from: state.from,
    last: state.last,
    ...detail,
    at: at.toISOString(),
  };
  return JSON.stringify(message);
}
