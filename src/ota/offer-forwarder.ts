/**
 * The agent's part in over-the-air updates: it listens for offers on the
 * session it holds anyway, checks each one's signature, and leaves the
 * authentic ones in the inbox for `updater --once` (ota/offer-inbox.ts).
 * An offer not signed by a trusted key is refused here, reported on the
 * status topic as the updater would, and never wakes the updater.
 */
import { join } from 'node:path';
import type { AgentConfig } from '../config/schema.js';
import type { Logger } from '../log/logger.js';
import { readTrustedKeyFiles } from '../signing/signature.js';
import { OfferInbox, offerInboxDir } from './offer-inbox.js';
import { otaStatusPayload, readOtaStateFile } from './state.js';

export class OfferForwarder {
  readonly topics: string[];
  readonly inbox: OfferInbox;

  constructor(
    private readonly config: AgentConfig,
    private readonly log: Pick<Logger, 'info' | 'warn' | 'error'>,
    /** Publish the retained status/ota message; false when not connected. */
    private readonly publishStatus: (payload: string) => boolean,
  ) {
    const m = config.mqtt;
    this.topics = [`${m.topicPrefix}/${config.device.id}/ota`, config.ota.fleetTopic ?? `${m.topicPrefix}/fleet/ota`];
    this.inbox = new OfferInbox(offerInboxDir(config));
  }

  /** An offer message: checked and handed on, or refused; never throws (a bad message must not reach the MQTT client). */
  onMessage(payload: Buffer): void {
    this.forward(payload).catch((err: unknown) => this.log.error({ err }, 'update offer not handed to the updater'));
  }

  private async forward(payload: Buffer): Promise<void> {
    // Loaded at the first offer: offers are rare, the agent need not carry the checking code until then.
    const { verifyOfferSignature } = await import('./offer.js');
    // Read at each offer: a key rotated on disk counts without restarting the agent.
    const verdict = verifyOfferSignature(payload, readTrustedKeyFiles(this.config.ota.trustedKeys));
    if (!verdict.ok) {
      this.log.warn({ offer: verdict.offerId, reason: verdict.reason }, 'update offer refused');
      const state = readOtaStateFile(join(this.config.ota.root, 'ota', 'state.json'));
      this.publishStatus(otaStatusPayload(state, { refused: verdict.reason }));
      return;
    }
    const file = this.inbox.put(verdict.offerId ?? 'unnamed', payload);
    this.log.info({ offer: verdict.offerId, signedBy: verdict.signedBy, file }, 'update offer handed to the updater');
  }
}
