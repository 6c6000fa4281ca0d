/*
 * SHA-256 (FIPS 180-4) for boards without a crypto peripheral: what the
 * firmware-update receiver (fwu.c) checks a received image with. C99, no
 * allocation. A board with a hardware hash engine uses that instead.
 */
#ifndef FWP_SHA256_H
#define FWP_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t h[8];
  uint64_t len;
  uint8_t block[64];
  size_t fill;
} fwp_sha256;

void fwp_sha256_init(fwp_sha256 *s);
void fwp_sha256_update(fwp_sha256 *s, const uint8_t *data, size_t len);
void fwp_sha256_final(fwp_sha256 *s, uint8_t out[32]);

#endif
