/**
 * The uploader's life in the agent: made once the spool is open; while its
 * configuration cannot be used (an unreadable TLS or password file) that is
 * named in the log and in health() and tried again every minute, records
 * staying spooled; then connected, with the cloud's commands listened for,
 * unless told to wait: `run` holds the connection back until it has told
 * systemd READY, because loading the MQTT client takes longer than the rest
 * of the start, and READY never meant "connected".
 */
import type { AgentHealth } from '../contracts/health.js';
import { uploaderOptions } from '../pipeline/delivery.js';
import type { Spool } from '../spool/spool.js';
import { Uploader } from '../upload/uploader.js';
import { CloudControl, type CloudControlDeps } from './cloud-control.js';

const RETRY_MS = 60_000;

export interface UploadKeeperDeps extends Omit<CloudControlDeps, 'uploader'> {
  /** The heartbeat's period: the uploader polls the spool on it. */
  periodMs: number;
}

export class UploadKeeper {
  private current: Uploader | null = null;
  private error: string | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private held = false;
  private connected = false;
  private stopped = false;

  constructor(private readonly d: UploadKeeperDeps) {}

  /** The uploader, null while upload is off, the spool not open or the configuration unusable. */
  get uploader(): Uploader | null {
    return this.current;
  }

  /** Make the uploader but do not connect it until release(). */
  hold(): void {
    this.held = true;
  }

  /** The spool is open: make the uploader and, unless held, connect it. */
  open(spool: Spool): void {
    this.retryTimer = null;
    if (!this.d.config.mqtt.enabled || this.current || this.stopped) return;
    try {
      this.current = new Uploader(spool, uploaderOptions(this.d.config, this.d.log, this.d.periodMs));
    } catch (err) {
      if (this.error === null) this.d.log.error({ err }, 'upload cannot start: records stay in the spool; tried again every minute');
      this.error = (err as Error).message;
      this.retryTimer = setTimeout(() => this.open(spool), RETRY_MS);
      this.retryTimer.unref();
      return;
    }
    if (this.error !== null) this.d.log.info('upload configuration readable again: uploading');
    this.error = null;
    this.connect();
  }

  /** What hold() held back: the uploader (`idle` in health until now) connects now, or as soon as the spool opens. */
  release(): void {
    this.held = false;
    this.connect();
  }

  private connect(): void {
    const uploader = this.current;
    if (!uploader || this.held || this.connected || this.stopped) return;
    this.connected = true;
    uploader.start();
    new CloudControl({ ...this.d, uploader }).start();
  }

  /** Why upload cannot start, or null. */
  get problem(): string | null {
    return this.error;
  }

  health(): AgentHealth['upload'] {
    if (this.current) return this.current.stats();
    return this.error !== null ? { state: 'unavailable', error: this.error } : { state: 'disabled' };
  }

  /** No new uploader or connection from here on (the agent is stopping). */
  halt(): void {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
  }

  /** Let the uploader finish what is in flight, briefly (the spool keeps whatever is not acknowledged). */
  async stop(deadlineMs: number): Promise<void> {
    this.halt();
    await this.current?.stop(deadlineMs);
    this.current = null;
  }
}
