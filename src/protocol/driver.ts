/**
 * What the agent needs from a wire-protocol driver. A driver turns the link's
 * bytes into engine readings and owns whatever talking to the board needs
 * (requests, polling); the agent stays protocol-agnostic.
 */
import type { BoardInfo, ProtocolHealth } from '../contracts/health.js';

export type Framing =
  /** Frames between 0x00 delimiters (fwp): the link splits them, under a length cap. */
  | { kind: 'delimited'; maxFrame: number; onFrame: (frame: Buffer) => void }
  /** A byte stream the driver frames itself (the polled bus, whose frames may contain their end byte). */
  | { kind: 'stream'; onData: (chunk: Buffer) => void };

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
