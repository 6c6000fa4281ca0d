/*
 * fwp v1 (minor 1) reference codec for the flywheel board firmware (C99, no allocation,
 * no dependencies beyond <stdint.h>/<stddef.h>). The normative description
 * is ../SPEC.md; ../vectors/fwp-v1.vec pins every byte, and the agent's test
 * suite builds and runs test_vectors.c against it.
 */
#ifndef FWP_H
#define FWP_H

#include <stddef.h>
#include <stdint.h>

#define FWP_VERSION 1
#define FWP_MINOR_VERSION 1
#define FWP_HEADER_LEN 3
#define FWP_CRC_LEN 2
#define FWP_MAX_PAYLOAD 254
#define FWP_MAX_BODY (FWP_MAX_PAYLOAD - FWP_HEADER_LEN - FWP_CRC_LEN)
/* COBS-encoded payload without the delimiter. */
#define FWP_MAX_ENCODED (FWP_MAX_PAYLOAD + 1)
/* Largest frame on the wire, including the 0x00 delimiter. */
#define FWP_MAX_WIRE (FWP_MAX_ENCODED + 1)

enum fwp_type {
  FWP_SAMPLE = 0x01,
  FWP_STATUS = 0x02,
  FWP_HELLO = 0x03,
  FWP_RESPONSE = 0x04,
  FWP_LOG = 0x05,
  FWP_FW_PROGRESS = 0x06, /* 1.1 */
  FWP_REQUEST = 0x81,
  FWP_FW_CHUNK = 0x82 /* 1.1 */
};

enum fwp_body_len {
  FWP_SAMPLE_LEN = 20,
  FWP_STATUS_LEN = 14,
  FWP_HELLO_LEN = 21,
  FWP_RESPONSE_LEN = 2,
  FWP_LOG_LEN = 1,
  FWP_REQUEST_LEN = 1,
  FWP_HELLO_LEN_1_1 = 24, /* a minor >= 1 board's HELLO: + boot_mode, board_model */
  FWP_FW_PROGRESS_LEN = 6,
  FWP_FW_CHUNK_LEN = 8 /* offset, crc32; the data follows */
};

enum fwp_op {
  FWP_OP_GET_HELLO = 0x01,
  FWP_OP_SET_SAMPLE_RATE = 0x02,
  FWP_OP_ZERO_RESISTANCE = 0x03,
  FWP_OP_REBOOT = 0x04,
  /* 1.1, firmware update (SPEC.md section 11) */
  FWP_OP_ENTER_BOOTLOADER = 0x05,
  FWP_OP_FW_INFO = 0x10,
  FWP_OP_FW_BEGIN = 0x11,
  FWP_OP_FW_VERIFY = 0x12,
  FWP_OP_FW_TEST_BOOT = 0x13,
  FWP_OP_FW_CONFIRM = 0x14,
  FWP_OP_FW_ABORT = 0x15
};
enum fwp_status_code { FWP_ST_OK = 0, FWP_ST_UNKNOWN_OP = 1, FWP_ST_BAD_ARGUMENT = 2, FWP_ST_BUSY = 3, FWP_ST_FAILED = 4, FWP_ST_WRONG_MODE = 5 };
enum fwp_boot_mode { FWP_BOOT_APPLICATION = 0, FWP_BOOT_BOOTLOADER = 1 };

typedef enum {
  FWP_OK = 0,
  FWP_ERR_EMPTY = 1,
  FWP_ERR_OVERSIZED = 2,
  FWP_ERR_COBS = 3,
  FWP_ERR_TRUNCATED = 4,
  FWP_ERR_CRC = 5,
  FWP_ERR_VERSION = 6,
  FWP_ERR_UNKNOWN_TYPE = 7,
  FWP_ERR_BODY_SHORT = 8
} fwp_result;

typedef struct {
  uint32_t t_us, fly_ticks, fly_tick_us;
  uint16_t crank_revs, crank_evt, resistance_raw;
  uint8_t hr_bpm, flags;
} fwp_sample;

typedef struct {
  uint32_t uptime_s;
  int16_t temp_centi_c;
  uint16_t supply_mv, faults;
  uint32_t board_dropped;
} fwp_status;

typedef struct {
  uint8_t proto_minor, fw_major, fw_minor, fw_patch, hw_rev;
  uint16_t ticks_per_rev, sample_rate_hz;
  uint8_t serial[12];
  /* 1.1: read when the body has them (else 0), written when proto_minor >= 1. */
  uint8_t boot_mode;
  uint16_t board_model;
} fwp_hello;

typedef struct {
  uint8_t version, type, seq;
  uint8_t body_len;
  /* Decoded payload; data/text pointers below point into it. */
  uint8_t payload[FWP_MAX_PAYLOAD];
  size_t payload_len;
  union {
    fwp_sample sample;
    fwp_status status;
    fwp_hello hello;
    struct { uint8_t req_seq, status; const uint8_t *data; size_t data_len; } response;
    struct { uint8_t level; const uint8_t *text; size_t text_len; } log;
    struct { uint8_t op; const uint8_t *data; size_t data_len; } request;
    struct { uint32_t next; uint8_t status, free; } progress;
    struct { uint32_t offset, crc32; const uint8_t *data; size_t data_len; } chunk;
  } u;
} fwp_frame;

uint16_t fwp_crc16(const uint8_t *data, size_t len);
/* CRC-32 (IEEE 802.3, zlib): each FW_CHUNK's own check. Check value over "123456789": 0xCBF43926. */
uint32_t fwp_crc32(const uint8_t *data, size_t len);

/* COBS for a single block (len <= FWP_MAX_PAYLOAD). Returns bytes written. */
size_t fwp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst);
/* Returns the decoded length, or -1 for malformed input. dst holds FWP_MAX_PAYLOAD. */
int fwp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst);

/* Decode the bytes between two delimiters (delimiter excluded). */
fwp_result fwp_decode(const uint8_t *wire, size_t len, fwp_frame *out);

/*
 * Build a frame: header, body, CRC, COBS, 0x00. wire must hold FWP_MAX_WIRE
 * bytes. Returns the wire length including the delimiter, 0 if body_len is too long.
 */
size_t fwp_encode(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len, uint8_t *wire);

/* Body writers; each returns the body length written (body must hold FWP_MAX_BODY). */
size_t fwp_write_sample(const fwp_sample *s, uint8_t *body);
size_t fwp_write_status(const fwp_status *s, uint8_t *body);
size_t fwp_write_hello(const fwp_hello *h, uint8_t *body);
size_t fwp_write_progress(uint32_t next, uint8_t status, uint8_t free_slots, uint8_t *body);
/* FW_CHUNK body for len bytes of data at offset (the crc32 computed here). */
size_t fwp_write_chunk(uint32_t offset, const uint8_t *data, size_t len, uint8_t *body);

const char *fwp_result_name(fwp_result r);

#endif
