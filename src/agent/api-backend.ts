/**
 * The agent's side of the local API (api/hub.ts calls it; contracts/api.ts
 * says what each method returns): rides, a member's purge, the last minute
 * of figures, recent log entries, the board's firmware and raw captures.
 */
import { ApiError, type ApiBackend } from '../api/hub.js';
import type { AgentConfig } from '../config/schema.js';
import type { BoardInfoResult, History, MethodResult, PurgeResult } from '../contracts/api.js';
import type { AgentHealth, BoardUpdateStatus, RecentEntry, RideSummary } from '../contracts/health.js';
import type { BoardService } from '../firmware/agent-wiring.js';
import type { Logger } from '../log/logger.js';
import type { RecentLog } from '../log/recent.js';
import type { RecordRing } from '../metrics/record.js';
import { MemberPseudonymiser } from '../rides/pseudonym.js';
import type { RideTracker } from '../rides/ride-tracker.js';
import type { Spool } from '../spool/spool.js';
import { encodePurgeNotice } from '../upload/notices.js';
import { errorCode } from '../util/files.js';
import { AGENT_VERSION } from '../version.js';
import type { LinkCapture } from './capture.js';

export interface ApiBackendDeps {
  config: AgentConfig;
  log: Logger;
  rides: RideTracker;
  recordHistory: RecordRing;
  recent: RecentLog;
  capture: LinkCapture;
  health: () => AgentHealth;
  /** The spool while it is open (rides and purges fall back to memory without it). */
  spool: () => Spool | null;
  /** The member-key pseudonymiser, null while the key is unavailable. */
  pseudonymiser: () => MemberPseudonymiser | null;
  /** Firmware updates of the flywheel board, null for a protocol without them. */
  board: () => BoardService | null;
  protocolName: string;
}

export class AgentApiBackend implements ApiBackend {
  readonly agentVersion = AGENT_VERSION;
  readonly deviceId: string;

  constructor(private readonly d: ApiBackendDeps) {
    this.deviceId = d.config.device.id;
  }

  health(): AgentHealth {
    return this.d.health();
  }

  private pseudonym(member: string): string {
    if (MemberPseudonymiser.isPseudonym(member)) return member;
    const p = this.d.pseudonymiser();
    if (!p) throw new ApiError('unavailable', 'member key unavailable: see the agent log');
    return p.pseudonym(member);
  }

  startRide(member: string | null, classId: string | null): MethodResult<'ride.start'> {
    return this.d.rides.start(member === null ? null : this.pseudonym(member), classId);
  }

  endRide(): RideSummary | null {
    return this.d.rides.end('api');
  }

  currentRide(): RideSummary | null {
    return this.d.rides.current();
  }

  listRides(q: { limit: number; beforeMs?: number; member?: string }): RideSummary[] {
    const member = q.member === undefined ? undefined : this.pseudonym(q.member);
    const spool = this.d.spool();
    if (!spool) {
      return this.d.rides
        .recentInMemory()
        .filter((r) => (member === undefined || r.member === member) && (q.beforeMs === undefined || Date.parse(r.startedAt) < q.beforeMs))
        .slice(0, q.limit);
    }
    return spool.rides
      .list({ limit: q.limit, beforeMs: q.beforeMs, member })
      .map((r) => r.summary)
      .filter((s): s is RideSummary => s !== null);
  }

  getRide(ride: string): RideSummary | null {
    const current = this.d.rides.current();
    if (current?.ride === ride) return current;
    const spool = this.d.spool();
    if (!spool) return this.d.rides.recentInMemory().find((r) => r.ride === ride) ?? null;
    return spool.rides.get(ride)?.summary ?? null;
  }

  /** Delete every ride and record of one member, here and (by a notice) in the cloud. */
  purgeMember(memberOrPseudonym: string): PurgeResult {
    const { log, rides } = this.d;
    const member = this.pseudonym(memberOrPseudonym);
    if (rides.currentMember === member) rides.end('purged');
    const spool = this.d.spool();
    if (!spool) {
      const n = rides.purgeInMemory(member);
      log.info({ member, rides: n }, 'member purged (memory only: the spool is unavailable)');
      return { member, rides: n, records: 0 };
    }
    let result;
    try {
      result = spool.purgeMember(member);
      spool.outbox.add('purge', encodePurgeNotice(this.deviceId, member, result, Date.now()));
    } catch (err) {
      // Nothing was deleted (one transaction): the caller is told to try again, the log keeps why.
      log.error({ err, member }, 'member purge failed');
      throw new ApiError('unavailable', `purge could not be written (${errorCode(err)}): nothing was deleted; try again`);
    }
    log.info({ member, rides: result.rides.length, records: result.records }, 'member purged');
    return { member, rides: result.rides.length, records: result.records };
  }

  history(seconds: number): History {
    const h = this.d.recordHistory;
    const n = Math.min(h.size, seconds * 10);
    const out: History = { tUs: [], powerW: [], cadenceRpm: [], hrBpm: [], speedKmh: [], resistancePct: [] };
    const val = (v: number, d: number): number | null => (Number.isFinite(v) ? Number(v.toFixed(d)) : null);
    for (let back = n - 1; back >= 0; back--) {
      const i = h.indexBack(back);
      out.tUs.push(h.tUs[i]);
      out.powerW.push(val(h.powerW[i], 1));
      out.cadenceRpm.push(val(h.cadenceRpm[i], 1));
      out.hrBpm.push(val(h.hrBpm[i], 0));
      out.speedKmh.push(val(h.speedKmh[i], 2));
      out.resistancePct.push(val(h.resistancePct[i], 1));
    }
    return out;
  }

  recentLog(): RecentEntry[] {
    return this.d.recent.list();
  }

  private boardService(): BoardService {
    const b = this.d.board();
    if (!b) throw new ApiError('unavailable', `the board's firmware is updated over fwp; serial.protocol is ${this.d.protocolName}`);
    return b;
  }

  boardInfo(): Promise<BoardInfoResult> {
    return this.boardService().info();
  }

  boardUpload(offset: number, b64: string): MethodResult<'board.upload'> {
    return this.boardService().upload(offset, b64);
  }

  boardUpdate(sha256: string): BoardUpdateStatus {
    return this.boardService().update(sha256);
  }

  startCapture(seconds: number, onChunk: (tMs: number, dir: number, bytes: Buffer) => void, onEnd: (reason: string) => void): () => void {
    return this.d.capture.start(seconds, onChunk, onEnd);
  }
}
