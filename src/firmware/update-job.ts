/**
 * A board firmware update job as kept in `<dataDir>/board-update/job.json`,
 * and as shown to people and the cloud (`status`, the local API's
 * `health.boardUpdate`, `<prefix>/<device>/status/board`).
 */
import type { BoardUpdateStatus } from '../contracts/health.js';
/** What `status`, the local API and the status topic show: the contract's (contracts/health.ts). */
export type { BoardUpdateStatus };
export type UpdateStage = BoardUpdateStatus['stage'];

export interface UpdateJob {
  id: string;
  version: string;
  boardModel: number;
  size: number;
  sha256: string;
  stage: UpdateStage;
  createdAt: string;
  startedAt: string | null;
  finishedAt: string | null;
  /** The version the board ran when the transfer started. */
  fromVersion: string | null;
  /** FW_CHUNK data bytes this agent sent (in this job, across restarts as far as job.json was written). */
  bytesSent: number;
  resumes: number;
  retransmits: number;
  error: { code: string; message: string } | null;
}
