/**
 * CRC-32 (IEEE 802.3, as zlib and PNG: reflected polynomial 0xEDB88320,
 * initial 0xFFFFFFFF, final XOR 0xFFFFFFFF; check value over "123456789" is
 * 0xCBF43926): each FW_CHUNK's own check (SPEC.md 11.4). A 256-entry table,
 * built once.
 */
const TABLE = new Uint32Array(256);
for (let n = 0; n < 256; n++) {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  TABLE[n] = c >>> 0;
}

export function crc32(b: Uint8Array, start: number, end: number): number {
  let c = 0xffffffff;
  for (let i = start; i < end; i++) c = TABLE[(c ^ b[i]) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}
