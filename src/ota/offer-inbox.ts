/**
 * The folder through which update offers reach the updater without it
 * running all the time. The agent, which holds the MQTT session anyway,
 * checks an offer's signature and drops it here; systemd's
 * bike-telemetry-updater.path starts the updater when the folder is not
 * empty; the updater handles each offer (checking everything again: it trusts
 * nothing the agent wrote) and deletes it, then exits. The agent runs without
 * the right to touch the code; the updater keeps that right to itself.
 *
 * An offer is written to a temporary file beside the folder, fsynced and
 * renamed in, so the updater never reads half of one. Kept across reboots
 * (under dataDir): an offer taken just before a power cut is handled after it.
 */
import { closeSync, chmodSync, fsyncSync, mkdirSync, openSync, readdirSync, readFileSync, renameSync, rmSync, writeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { syncDir } from '../util/files.js';

/** Offers waiting at once, at most: the oldest go first (offers are rare; an updater that never comes must not fill the disk). */
export const INBOX_MAX_OFFERS = 8;

/** `<dataDir>/ota-offers`, unless the configuration names another folder. */
export function offerInboxDir(config: { dataDir: string; ota: { inboxDir?: string | undefined } }): string {
  return config.ota.inboxDir ?? join(config.dataDir, 'ota-offers');
}

export class OfferInbox {
  private counter = 0;

  constructor(readonly dir: string) {}

  /** Offer files, oldest first (named by the time they were written). */
  list(): string[] {
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch {
      return [];
    }
    return names.filter((n) => /^\d{13}-\d{3}-[A-Za-z0-9_.-]{1,64}\.json$/.test(n)).sort();
  }

  /**
   * Drop an offer in (the agent). The folder is made group-writable so the
   * updater, in the agent's group, can delete what it has handled. (No
   * setgid bit: the agent's unit forbids setting one, RestrictSUIDSGID; its
   * files get its own group anyway.)
   */
  put(offerId: string, payload: Buffer, nowMs: number = Date.now()): string {
    mkdirSync(this.dir, { recursive: true });
    chmodSync(this.dir, 0o770);
    const safeId = offerId.replace(/[^A-Za-z0-9_.-]/g, '_').slice(0, 64);
    const name = `${String(nowMs).padStart(13, '0')}-${String(this.counter++ % 1000).padStart(3, '0')}-${safeId}.json`;
    const tmp = join(dirname(this.dir), `.ota-offer-${process.pid}.tmp`);
    let fd = -1;
    try {
      fd = openSync(tmp, 'w', 0o640);
      writeSync(fd, payload);
      fsyncSync(fd);
      closeSync(fd);
      fd = -1;
      renameSync(tmp, join(this.dir, name));
    } catch (err) {
      if (fd >= 0) closeSync(fd);
      rmSync(tmp, { force: true });
      throw err;
    }
    syncDir(this.dir);
    const all = this.list();
    for (const old of all.slice(0, Math.max(0, all.length - INBOX_MAX_OFFERS))) rmSync(join(this.dir, old), { force: true });
    return name;
  }

  read(name: string): Buffer {
    return readFileSync(join(this.dir, name));
  }

  /** Handled: delete it (the updater). Throws when it cannot, so the caller stops instead of handling it again and again. */
  remove(name: string): void {
    rmSync(join(this.dir, name));
  }
}
