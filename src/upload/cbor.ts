/**
 * cbor-x, loaded once for the packet and notice encoders, without its native
 * string extractor.
 *
 * cbor-x loads `cbor-extract` (a native addon that speeds up decoding long
 * strings) when it is first required, and with it node-gyp-build's platform
 * probe (detect-libc, which loads child_process): 4.4 MB of RSS in an empty
 * Node process, but about 0.3 MB in the agent, where the SQLite and serial
 * addons load the native runtime anyway (measured; docs/performance.md). It
 * is one native addon fewer to load and ship. The agent encodes packets and
 * decodes only small commands, where the extractor gains nothing; the pure
 * JavaScript decoder gives the same values. cbor-x reads
 * CBOR_NATIVE_ACCELERATION_DISABLED once, when it loads; a value the operator
 * set is left as it is.
 */
import type * as Cbor from 'cbor-x';
import { requireCjs } from '../util/require-cjs.js';

process.env.CBOR_NATIVE_ACCELERATION_DISABLED ??= 'true';

export const { Encoder, decode } = requireCjs('cbor-x') as typeof Cbor;
