/**
 * What the agent needs from a wire-protocol driver. A driver turns the link's
 * bytes into engine readings and owns whatever talking to the board needs
 * (requests, polling); the agent stays protocol-agnostic.
 */
import type { BoardInfo, ProtocolHealth } from '../contracts/health.js';
import type { Framing } from '../link/frame-splitter.js';

export type { ByteSink, Framing } from '../link/frame-splitter.js';

export interface ProtocolDriver {
  readonly name: 'fwp' | 'peloton';
  readonly framing: Framing;
  /** The port (re)opened: start talking. */
  linkOpened(): void;
  /** The port went away or the agent stops: stop talking, fail what waits. */
  linkLost(reason: string): void;
  health(): ProtocolHealth;
  /** What the board said about itself (shape depends on the protocol; contracts/health.ts). */
  board(): BoardInfo;
}
