/**
 * Consistent Overhead Byte Stuffing, restricted to payloads of at most 254 bytes
 * so that a frame is always a single COBS block (SPEC.md §2).
 *
 * Both functions write into caller-owned buffers and return a length (or a
 * negative error) so the receive path never allocates.
 */

export const COBS_MAX_PAYLOAD = 254;
/** Encoded size of a maximal payload, without the 0x00 delimiter. */
export const COBS_MAX_ENCODED = COBS_MAX_PAYLOAD + 1;

export const COBS_ERR_ZERO_BYTE = -1;
export const COBS_ERR_OVERRUN = -2;
export const COBS_ERR_TOO_LONG = -3;

/**
 * Decode src[start, end) (no delimiter) into dst. Returns the decoded length or
 * a negative COBS_ERR_* code.
 */
export function cobsDecode(src: Uint8Array, start: number, end: number, dst: Uint8Array): number {
  const n = end - start;
  if (n > COBS_MAX_ENCODED) return COBS_ERR_TOO_LONG;
  let out = 0;
  let i = start;
  while (i < end) {
    const code = src[i];
    if (code === 0) return COBS_ERR_ZERO_BYTE;
    i++;
    const blockEnd = i + code - 1;
    if (blockEnd > end) return COBS_ERR_OVERRUN;
    while (i < blockEnd) {
      const b = src[i];
      if (b === 0) return COBS_ERR_ZERO_BYTE;
      dst[out++] = b;
      i++;
    }
    // A code of 0xFF means "254 data bytes, no implied zero"; otherwise a zero
    // follows unless this block ends the frame.
    if (code !== 0xff && i < end) dst[out++] = 0;
  }
  return out;
}

/**
 * Encode src[start, end) into dst at dstOffset. Returns bytes written (no
 * delimiter). Caller guarantees end - start <= COBS_MAX_PAYLOAD.
 */
export function cobsEncode(src: Uint8Array, start: number, end: number, dst: Uint8Array, dstOffset: number): number {
  let codeIdx = dstOffset;
  let out = dstOffset + 1;
  let code = 1;
  for (let i = start; i < end; i++) {
    const b = src[i];
    if (b === 0) {
      dst[codeIdx] = code;
      codeIdx = out++;
      code = 1;
    } else {
      dst[out++] = b;
      code++;
      // A full block that ends the input needs no trailing empty block, which
      // keeps a 254-byte payload at 255 encoded bytes.
      if (code === 0xff && i + 1 < end) {
        dst[codeIdx] = code;
        codeIdx = out++;
        code = 1;
      }
    }
  }
  dst[codeIdx] = code;
  return out - dstOffset;
}
