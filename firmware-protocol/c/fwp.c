#include "fwp.h"

#include <string.h>

uint16_t fwp_crc16(const uint8_t *data, size_t len) {
  /* CRC-16/CCITT-FALSE, bitwise: small code for small boards. */
  uint16_t crc = 0xFFFF;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)data[i] << 8;
    for (int b = 0; b < 8; b++) crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
  }
  return crc;
}

uint32_t fwp_crc32(const uint8_t *data, size_t len) {
  /* Bitwise, reflected 0xEDB88320: no table, small code. */
  uint32_t crc = 0xFFFFFFFFu;
  for (size_t i = 0; i < len; i++) {
    crc ^= data[i];
    for (int b = 0; b < 8; b++) crc = (crc & 1u) ? (crc >> 1) ^ 0xEDB88320u : crc >> 1;
  }
  return crc ^ 0xFFFFFFFFu;
}

size_t fwp_cobs_encode(const uint8_t *src, size_t len, uint8_t *dst) {
  size_t code_idx = 0, out = 1;
  uint8_t code = 1;
  for (size_t i = 0; i < len; i++) {
    if (src[i] == 0) {
      dst[code_idx] = code;
      code_idx = out++;
      code = 1;
    } else {
      dst[out++] = src[i];
      code++;
      /* A full block that ends the input needs no empty block after it. */
      if (code == 0xFF && i + 1 < len) {
        dst[code_idx] = code;
        code_idx = out++;
        code = 1;
      }
    }
  }
  dst[code_idx] = code;
  return out;
}

int fwp_cobs_decode(const uint8_t *src, size_t len, uint8_t *dst) {
  size_t i = 0, out = 0;
  if (len > FWP_MAX_ENCODED) return -1;
  while (i < len) {
    uint8_t code = src[i++];
    if (code == 0) return -1;
    size_t end = i + code - 1;
    if (end > len) return -1;
    while (i < end) {
      if (src[i] == 0) return -1;
      dst[out++] = src[i++];
    }
    if (code != 0xFF && i < len) dst[out++] = 0;
  }
  return (int)out;
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }

static void read_hello(const uint8_t *b, size_t len, fwp_hello *h) {
  h->proto_minor = b[0];
  h->fw_major = b[1];
  h->fw_minor = b[2];
  h->fw_patch = b[3];
  h->hw_rev = b[4];
  h->ticks_per_rev = rd16(b + 5);
  h->sample_rate_hz = rd16(b + 7);
  memcpy(h->serial, b + 9, 12);
  h->boot_mode = len >= FWP_HELLO_LEN_1_1 ? b[21] : 0;
  h->board_model = len >= FWP_HELLO_LEN_1_1 ? rd16(b + 22) : 0;
}

fwp_result fwp_decode(const uint8_t *wire, size_t len, fwp_frame *f) {
  if (len == 0) return FWP_ERR_EMPTY;
  if (len > FWP_MAX_ENCODED) return FWP_ERR_OVERSIZED;
  int n = fwp_cobs_decode(wire, len, f->payload);
  if (n < 0) return FWP_ERR_COBS;
  f->payload_len = (size_t)n;
  if (n < FWP_HEADER_LEN + FWP_CRC_LEN) return FWP_ERR_TRUNCATED;
  const uint8_t *p = f->payload;
  size_t crc_at = (size_t)n - FWP_CRC_LEN;
  if (fwp_crc16(p, crc_at) != rd16(p + crc_at)) return FWP_ERR_CRC;
  f->version = p[0];
  f->type = p[1];
  f->seq = p[2];
  f->body_len = (uint8_t)(crc_at - FWP_HEADER_LEN);
  if (f->version != FWP_VERSION) return FWP_ERR_VERSION;
  const uint8_t *b = p + FWP_HEADER_LEN;
  size_t bl = f->body_len;
  switch (f->type) {
    case FWP_SAMPLE:
      if (bl < FWP_SAMPLE_LEN) return FWP_ERR_BODY_SHORT;
      f->u.sample.t_us = rd32(b);
      f->u.sample.fly_ticks = rd32(b + 4);
      f->u.sample.fly_tick_us = rd32(b + 8);
      f->u.sample.crank_revs = rd16(b + 12);
      f->u.sample.crank_evt = rd16(b + 14);
      f->u.sample.resistance_raw = rd16(b + 16);
      f->u.sample.hr_bpm = b[18];
      f->u.sample.flags = b[19];
      return FWP_OK;
    case FWP_STATUS:
      if (bl < FWP_STATUS_LEN) return FWP_ERR_BODY_SHORT;
      f->u.status.uptime_s = rd32(b);
      f->u.status.temp_centi_c = (int16_t)rd16(b + 4);
      f->u.status.supply_mv = rd16(b + 6);
      f->u.status.faults = rd16(b + 8);
      f->u.status.board_dropped = rd32(b + 10);
      return FWP_OK;
    case FWP_HELLO:
      if (bl < FWP_HELLO_LEN) return FWP_ERR_BODY_SHORT;
      read_hello(b, bl, &f->u.hello);
      return FWP_OK;
    case FWP_RESPONSE:
      if (bl < FWP_RESPONSE_LEN) return FWP_ERR_BODY_SHORT;
      f->u.response.req_seq = b[0];
      f->u.response.status = b[1];
      f->u.response.data = b + 2;
      f->u.response.data_len = bl - 2;
      return FWP_OK;
    case FWP_LOG:
      if (bl < FWP_LOG_LEN) return FWP_ERR_BODY_SHORT;
      f->u.log.level = b[0];
      f->u.log.text = b + 1;
      f->u.log.text_len = bl - 1;
      return FWP_OK;
    case FWP_REQUEST:
      if (bl < FWP_REQUEST_LEN) return FWP_ERR_BODY_SHORT;
      f->u.request.op = b[0];
      f->u.request.data = b + 1;
      f->u.request.data_len = bl - 1;
      return FWP_OK;
    case FWP_FW_PROGRESS:
      if (bl < FWP_FW_PROGRESS_LEN) return FWP_ERR_BODY_SHORT;
      f->u.progress.next = rd32(b);
      f->u.progress.status = b[4];
      f->u.progress.free = b[5];
      return FWP_OK;
    case FWP_FW_CHUNK:
      if (bl < FWP_FW_CHUNK_LEN) return FWP_ERR_BODY_SHORT;
      f->u.chunk.offset = rd32(b);
      f->u.chunk.crc32 = rd32(b + 4);
      f->u.chunk.data = b + 8;
      f->u.chunk.data_len = bl - 8;
      return FWP_OK;
    default:
      return FWP_ERR_UNKNOWN_TYPE;
  }
}

size_t fwp_encode(uint8_t type, uint8_t seq, const uint8_t *body, size_t body_len, uint8_t *wire) {
  uint8_t payload[FWP_MAX_PAYLOAD];
  if (body_len > FWP_MAX_BODY) return 0;
  payload[0] = FWP_VERSION;
  payload[1] = type;
  payload[2] = seq;
  if (body_len) memcpy(payload + FWP_HEADER_LEN, body, body_len);
  size_t crc_at = FWP_HEADER_LEN + body_len;
  wr16(payload + crc_at, fwp_crc16(payload, crc_at));
  size_t n = fwp_cobs_encode(payload, crc_at + FWP_CRC_LEN, wire);
  wire[n] = 0;
  return n + 1;
}

size_t fwp_write_sample(const fwp_sample *s, uint8_t *b) {
  wr32(b, s->t_us);
  wr32(b + 4, s->fly_ticks);
  wr32(b + 8, s->fly_tick_us);
  wr16(b + 12, s->crank_revs);
  wr16(b + 14, s->crank_evt);
  wr16(b + 16, s->resistance_raw);
  b[18] = s->hr_bpm;
  b[19] = s->flags;
  return FWP_SAMPLE_LEN;
}

size_t fwp_write_status(const fwp_status *s, uint8_t *b) {
  wr32(b, s->uptime_s);
  wr16(b + 4, (uint16_t)s->temp_centi_c);
  wr16(b + 6, s->supply_mv);
  wr16(b + 8, s->faults);
  wr32(b + 10, s->board_dropped);
  return FWP_STATUS_LEN;
}

size_t fwp_write_hello(const fwp_hello *h, uint8_t *b) {
  b[0] = h->proto_minor;
  b[1] = h->fw_major;
  b[2] = h->fw_minor;
  b[3] = h->fw_patch;
  b[4] = h->hw_rev;
  wr16(b + 5, h->ticks_per_rev);
  wr16(b + 7, h->sample_rate_hz);
  memcpy(b + 9, h->serial, 12);
  if (h->proto_minor < 1) return FWP_HELLO_LEN;
  b[21] = h->boot_mode;
  wr16(b + 22, h->board_model);
  return FWP_HELLO_LEN_1_1;
}

size_t fwp_write_progress(uint32_t next, uint8_t status, uint8_t free_slots, uint8_t *b) {
  wr32(b, next);
  b[4] = status;
  b[5] = free_slots;
  return FWP_FW_PROGRESS_LEN;
}

size_t fwp_write_chunk(uint32_t offset, const uint8_t *data, size_t len, uint8_t *b) {
  wr32(b, offset);
  wr32(b + 4, fwp_crc32(data, len));
  if (len) memcpy(b + 8, data, len);
  return FWP_FW_CHUNK_LEN + len;
}

const char *fwp_result_name(fwp_result r) {
  static const char *names[] = {"ok", "err_empty", "err_oversized", "err_cobs", "err_truncated",
                                "err_crc", "err_version", "err_unknown_type", "err_body_short"};
  return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}
