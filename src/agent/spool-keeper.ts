/**
 * Keeps the agent's spool: opens it, and when it cannot be opened now (a
 * full disk, a lock, no permission) holds the newest records in memory and
 * tries again with backoff; when it opens, the held records are numbered
 * and queued, their engine time lifted above where the previous run's ended
 * (t_ms never goes back in sequence order). A spool written by a newer agent
 * leaves the agent on live figures only. Each failure is said once.
 */
import type { AgentConfig } from '../config/schema.js';
import type { AgentHealth } from '../contracts/health.js';
import type { Logger } from '../log/logger.js';
import type { MetricsEngine } from '../metrics/engine.js';
import type { LiveRecord } from '../metrics/record.js';
import { RecordBatch } from '../spool/batch.js';
import { spoolOptions } from '../pipeline/delivery.js';
import { Spool, SpoolTooNewError } from '../spool/spool.js';
import { WallClockMap } from '../spool/wall-clock.js';

const RETRY_BASE_MS = 5_000;
const RETRY_CAP_MS = 60_000;

export interface SpoolKeeperDeps {
  config: AgentConfig;
  log: Logger;
  engine: MetricsEngine;
  /** The spool opened (at start or at a retry): rides and the uploader can use it now. */
  onOpen: (spool: Spool) => void;
}

export class SpoolKeeper {
  private current: Spool | null = null;
  private error = 'not opened';
  /** Records made while the spool could not be opened (null while it is open). */
  private held: RecordBatch | null = null;
  private lastHeldTUs = 0;
  /**
   * The held records' wall-clock mapping, filtered as the spool's is (each
   * reading is late by however long ago the newest record was made); the
   * spool continues from it when it opens.
   */
  private readonly heldClock = new WallClockMap();
  private retryMs = 0;
  private retryTimer: NodeJS.Timeout | null = null;
  private stopped = false;

  constructor(private readonly d: SpoolKeeperDeps) {}

  /** The spool while it is open. */
  get spool(): Spool | null {
    return this.current;
  }

  /** Why there is no spool ('' while it is open). */
  get unavailableReason(): string {
    return this.error;
  }

  open(): void {
    this.retryTimer = null;
    if (this.stopped) return;
    const { config, log, engine } = this.d;
    const sc = config.spool;
    let spool: Spool;
    try {
      spool = Spool.open(spoolOptions(config, log));
    } catch (err) {
      this.error = (err as Error).message;
      if (err instanceof SpoolTooNewError) {
        log.error({ err }, 'spool written by a newer agent: serving live figures only, nothing is stored');
        return;
      }
      this.held ??= new RecordBatch(sc.memoryRecords);
      if (this.retryMs === 0) log.error({ err }, 'spool unavailable: holding the newest records in memory and trying again');
      this.retryMs = Math.min(RETRY_CAP_MS, Math.max(RETRY_BASE_MS, this.retryMs * 2));
      this.retryTimer = setTimeout(() => this.open(), this.retryMs);
      this.retryTimer.unref();
      return;
    }
    this.current = spool;
    this.error = '';
    const held = this.held;
    if (held && held.length > 0) {
      // Made before the spool said where the previous run's time ended: lifted above it, and the engine after them.
      const shift = held.liftAbove(spool.priorTUs, engine.recordIntervalUs);
      engine.continueAfter(this.lastHeldTUs + shift);
      // Their wall times stay; the records after them continue their mapping (in the lifted engine time).
      spool.continueWallClock(this.heldClock.offset - shift / 1000, this.lastHeldTUs + shift);
    } else engine.continueAfter(spool.priorTUs);
    if (held) {
      const dropped = held.dropped;
      const adopted = spool.adopt(held);
      this.held = null;
      log.info({ adopted, droppedWhileUnavailable: dropped }, 'spool available: records held in memory are numbered and queued');
    }
    this.retryMs = 0;
    const st = spool.stats();
    log.info(
      { spool: { file: st.file, records: st.records, bytes: st.bytes, nextSeq: st.nextSeq, synchronous: st.synchronous } },
      'spool open',
    );
    this.d.onOpen(spool);
  }

  /** One record: queued in the spool (its sequence number), or held in memory without one (0). */
  record(r: LiveRecord, ride: number): number {
    const spool = this.current;
    if (spool) return spool.append(r, ride);
    const held = this.held;
    if (!held) return 0; // a spool from a newer agent: live figures only
    // The clock is read once a second (tick()), not per record: Date.now() allocates.
    if (held.length === 0) held.wallOffset[0] = this.heldClock.measure(Date.now(), r.tUs);
    this.lastHeldTUs = r.tUs;
    held.push(0, ride, r);
    return 0;
  }

  /** Once a second: the held records' wall-clock estimate follows the clock. */
  tick(): void {
    if (this.held && this.held.length > 0) this.held.wallOffset[0] = this.heldClock.measure(Date.now(), this.lastHeldTUs);
  }

  /** Commit whatever the spool holds in memory, where the disk allows (the last-resort handler, before exiting). */
  commit(): number {
    return this.current ? this.current.flush() : 0;
  }

  health(): AgentHealth['spool'] {
    const st = this.current?.stats();
    return st
      ? { state: 'open', ...st }
      : { state: 'unavailable', error: this.error, heldRecords: this.held?.length ?? 0, droppedWhileUnavailable: this.held?.dropped ?? 0 };
  }

  /** No more attempts to open (the agent is stopping). */
  halt(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  close(): void {
    this.halt();
    this.current?.close();
    this.current = null;
    this.error = 'closed';
  }
}
