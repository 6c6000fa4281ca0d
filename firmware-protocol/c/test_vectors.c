/*
 * Runs the reference codec against the golden vectors: decodes every wire
 * frame, compares the result and each decoded field, then re-encodes every
 * valid frame from its decoded fields and compares the bytes.
 * Usage: test_vectors ../vectors/fwp-v1.vec
 * Prints one line per failure and a closing "N passed, M failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwp.h"
#include "vector_file.h"

#define MAX_LINE 4096
#define MAX_BYTES 1024


/* The decoded value of `key` as the vector file writes it; 0 if the key is unknown. */
static int field(const fwp_frame *f, const char *key, char *out) {
#define NUM(k, v) if (!strcmp(key, k)) { sprintf(out, "%ld", (long)(v)); return 1; }
#define HEX(k, p, n) if (!strcmp(key, k)) { tohex(p, n, out); return 1; }
  NUM("version", f->version) NUM("type", f->type) NUM("seq", f->seq) NUM("body_len", f->body_len)
  switch (f->type) {
    case FWP_SAMPLE: {
      const fwp_sample *s = &f->u.sample;
      NUM("t_us", s->t_us) NUM("fly_ticks", s->fly_ticks) NUM("fly_tick_us", s->fly_tick_us)
      NUM("crank_revs", s->crank_revs) NUM("crank_evt", s->crank_evt) NUM("resistance_raw", s->resistance_raw)
      NUM("hr_bpm", s->hr_bpm) NUM("flags", s->flags)
      break;
    }
    case FWP_STATUS: {
      const fwp_status *s = &f->u.status;
      NUM("uptime_s", s->uptime_s) NUM("temp_centi_c", s->temp_centi_c) NUM("supply_mv", s->supply_mv)
      NUM("faults", s->faults) NUM("board_dropped", s->board_dropped)
      break;
    }
    case FWP_HELLO: {
      const fwp_hello *h = &f->u.hello;
      NUM("proto_minor", h->proto_minor) NUM("fw_major", h->fw_major) NUM("fw_minor", h->fw_minor)
      NUM("fw_patch", h->fw_patch) NUM("hw_rev", h->hw_rev) NUM("ticks_per_rev", h->ticks_per_rev)
      NUM("sample_rate_hz", h->sample_rate_hz) HEX("serial", h->serial, 12)
      NUM("boot_mode", h->boot_mode) NUM("board_model", h->board_model)
      break;
    }
    case FWP_RESPONSE:
      NUM("req_seq", f->u.response.req_seq) NUM("status", f->u.response.status)
      HEX("data", f->u.response.data, f->u.response.data_len)
      break;
    case FWP_LOG:
      NUM("level", f->u.log.level) HEX("text", f->u.log.text, f->u.log.text_len)
      break;
    case FWP_REQUEST:
      NUM("op", f->u.request.op) HEX("data", f->u.request.data, f->u.request.data_len)
      break;
    case FWP_FW_PROGRESS:
      NUM("next", f->u.progress.next) NUM("status", f->u.progress.status) NUM("free", f->u.progress.free)
      break;
    case FWP_FW_CHUNK:
      NUM("offset", f->u.chunk.offset) NUM("crc32", f->u.chunk.crc32) HEX("data", f->u.chunk.data, f->u.chunk.data_len)
      break;
  }
  return 0;
#undef NUM
#undef HEX
}

/* Rebuild the body from decoded fields (plus any tail) with the writers. */
static size_t rebuild_body(const fwp_frame *f, const uint8_t *tail, size_t tail_len, uint8_t *body) {
  size_t n = 0;
  switch (f->type) {
    case FWP_SAMPLE: n = fwp_write_sample(&f->u.sample, body); break;
    case FWP_STATUS: n = fwp_write_status(&f->u.status, body); break;
    case FWP_HELLO: n = fwp_write_hello(&f->u.hello, body); break;
    case FWP_RESPONSE:
      body[0] = f->u.response.req_seq;
      body[1] = f->u.response.status;
      memcpy(body + 2, f->u.response.data, f->u.response.data_len);
      n = 2 + f->u.response.data_len;
      break;
    case FWP_LOG:
      body[0] = f->u.log.level;
      memcpy(body + 1, f->u.log.text, f->u.log.text_len);
      n = 1 + f->u.log.text_len;
      break;
    case FWP_REQUEST:
      body[0] = f->u.request.op;
      memcpy(body + 1, f->u.request.data, f->u.request.data_len);
      n = 1 + f->u.request.data_len;
      break;
    case FWP_FW_PROGRESS: n = fwp_write_progress(f->u.progress.next, f->u.progress.status, f->u.progress.free, body); break;
    case FWP_FW_CHUNK:
      /* The crc32 as received (a vector may carry a wrong one on purpose). */
      n = fwp_write_chunk(f->u.chunk.offset, f->u.chunk.data, f->u.chunk.data_len, body);
      body[4] = (uint8_t)f->u.chunk.crc32;
      body[5] = (uint8_t)(f->u.chunk.crc32 >> 8);
      body[6] = (uint8_t)(f->u.chunk.crc32 >> 16);
      body[7] = (uint8_t)(f->u.chunk.crc32 >> 24);
      break;
  }
  memcpy(body + n, tail, tail_len);
  return n + tail_len;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s VECTORS.vec\n", argv[0]);
    return 2;
  }
  FILE *fp = fopen(argv[1], "r");
  if (!fp) {
    perror(argv[1]);
    return 2;
  }
  int passed = 0, failed = 0;

  /* The CRC check values from SPEC.md. */
  if (fwp_crc16((const uint8_t *)"123456789", 9) == 0x29B1) passed++;
  else { failed++; printf("FAIL crc_check_value: got %04x\n", fwp_crc16((const uint8_t *)"123456789", 9)); }
  if (fwp_crc32((const uint8_t *)"123456789", 9) == 0xCBF43926u) passed++;
  else { failed++; printf("FAIL crc32_check_value: got %08lx\n", (unsigned long)fwp_crc32((const uint8_t *)"123456789", 9)); }

  static char line[MAX_LINE];
  while (fgets(line, sizeof line, fp)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0] || line[0] == '#') continue;
    char *keys[64], *vals[64];
    int nkv = 0;
    for (char *tok = strtok(line, " "); tok && nkv < 64; tok = strtok(NULL, " ")) {
      char *eq = strchr(tok, '=');
      if (!eq) continue;
      *eq = 0;
      keys[nkv] = tok;
      vals[nkv++] = eq + 1;
    }
    const char *name = "?", *wire_hex = "", *result = "", *tail_hex = "";
    for (int i = 0; i < nkv; i++) {
      if (!strcmp(keys[i], "name")) name = vals[i];
      else if (!strcmp(keys[i], "wire")) wire_hex = vals[i];
      else if (!strcmp(keys[i], "result")) result = vals[i];
      else if (!strcmp(keys[i], "tail")) tail_hex = vals[i];
    }
    uint8_t wire[MAX_BYTES], tail[MAX_BYTES];
    int wn = unhex(wire_hex, wire, sizeof wire);
    int tn = unhex(tail_hex, tail, sizeof tail);
    if (wn < 1 || tn < 0 || wire[wn - 1] != 0) {
      printf("FAIL %s: malformed vector\n", name);
      failed++;
      continue;
    }
    static fwp_frame f;
    fwp_result r = fwp_decode(wire, (size_t)wn - 1, &f);
    int ok = 1;
    if (strcmp(fwp_result_name(r), result)) {
      printf("FAIL %s: result %s, expected %s\n", name, fwp_result_name(r), result);
      ok = 0;
    } else if (r == FWP_OK) {
      char got[MAX_LINE];
      for (int i = 0; i < nkv; i++) {
        const char *k = keys[i];
        if (!strcmp(k, "name") || !strcmp(k, "wire") || !strcmp(k, "result") || !strcmp(k, "tail")) continue;
        if (!field(&f, k, got)) {
          printf("FAIL %s: unknown key %s\n", name, k);
          ok = 0;
        } else if (strcmp(got, vals[i])) {
          printf("FAIL %s: %s=%s, expected %s\n", name, k, got, vals[i]);
          ok = 0;
        }
      }
      uint8_t body[FWP_MAX_PAYLOAD + MAX_BYTES], again[FWP_MAX_WIRE];
      size_t bl = rebuild_body(&f, tail, (size_t)tn, body);
      size_t an = fwp_encode(f.type, f.seq, body, bl, again);
      if (an != (size_t)wn || memcmp(again, wire, an)) {
        char hex[2 * FWP_MAX_WIRE + 1];
        tohex(again, an, hex);
        printf("FAIL %s: re-encoded %s\n", name, hex);
        ok = 0;
      }
    }
    if (ok) passed++;
    else failed++;
  }
  fclose(fp);
  printf("%d passed, %d failed\n", passed, failed);
  return failed ? 1 : 0;
}
