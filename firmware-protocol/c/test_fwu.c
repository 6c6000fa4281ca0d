/*
 * Replays the firmware-update conversation vectors against fwu.c: each
 * script starts from the factory state (geometry in the vector file's
 * header, repeated below); every frame into the board must produce exactly
 * the frame the vector names, every reset the boot choice it names.
 * Usage: test_fwu ../vectors/fwu-v1.vec   Prints failures and "N passed, M failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fwp.h"
#include "vector_file.h"
#include "fwu.h"

#define SLOT_SIZE 4096
#define SECTOR_SIZE 1024
#define MAX_CHUNK 64
#define WINDOW 4
#define BOARD_MODEL 7
#define MAX_LINE 4096

static uint8_t flash_mem[2][SLOT_SIZE];

static void f_erase(void *ctx, uint8_t slot, uint32_t offset, uint32_t len) {
  (void)ctx;
  memset(flash_mem[slot] + offset, 0xFF, len);
}
static int f_program(void *ctx, uint8_t slot, uint32_t offset, const uint8_t *data, size_t len) {
  (void)ctx;
  int ok = 1;
  for (size_t i = 0; i < len; i++) {
    flash_mem[slot][offset + i] &= data[i]; /* NOR: bits only go 1 -> 0 */
    if (flash_mem[slot][offset + i] != data[i]) ok = 0;
  }
  return ok ? 0 : -1;
}
static void f_read(void *ctx, uint8_t slot, uint32_t offset, uint8_t *out, size_t len) {
  (void)ctx;
  memcpy(out, flash_mem[slot] + offset, len);
}
static int meta_saves;
static void f_save(void *ctx, const fwu_meta *m) {
  (void)ctx;
  (void)m;
  meta_saves++;
}

static const fwu_flash FLASH = {SLOT_SIZE, SECTOR_SIZE, NULL, f_erase, f_program, f_read, f_save};


int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s fwu-v1.vec\n", argv[0]);
    return 2;
  }
  FILE *fp = fopen(argv[1], "r");
  if (!fp) {
    perror(argv[1]);
    return 2;
  }
  static const uint8_t factory[3] = {1, 0, 0};
  static fwu_meta meta;
  static fwu u;
  static fwp_frame f;
  char script[64] = "";
  uint8_t board_seq = 0;
  int passed = 0, failed = 0;
  static char line[MAX_LINE];
  while (fgets(line, sizeof line, fp)) {
    line[strcspn(line, "\r\n")] = 0;
    if (!line[0] || line[0] == '#') continue;
    const char *name = "", *step = "", *in = NULL, *out = NULL, *reset = NULL, *boot = "", *slot = "", *trial = "", *tear = NULL;
    for (char *tok = strtok(line, " "); tok; tok = strtok(NULL, " ")) {
      char *eq = strchr(tok, '=');
      if (!eq) continue;
      *eq = 0;
      const char *v = eq + 1;
      if (!strcmp(tok, "script")) name = v;
      else if (!strcmp(tok, "step")) step = v;
      else if (!strcmp(tok, "in")) in = v;
      else if (!strcmp(tok, "out")) out = v;
      else if (!strcmp(tok, "reset")) reset = v;
      else if (!strcmp(tok, "boot")) boot = v;
      else if (!strcmp(tok, "slot")) slot = v;
      else if (!strcmp(tok, "trial")) trial = v;
      else if (!strcmp(tok, "tear")) tear = v;
    }
    if (strcmp(name, script)) {
      /* A new script: the factory state. */
      snprintf(script, sizeof script, "%s", name);
      memset(flash_mem, 0xFF, sizeof flash_mem);
      fwu_fresh_meta(&meta, factory);
      fwu_init(&u, BOARD_MODEL, MAX_CHUNK, WINDOW, &meta, &FLASH);
      board_seq = 0;
    }
    int ok = 1;
    if (reset) {
      fwu_boot_choice c = fwu_boot(&u, atoi(reset));
      const char *mode = c.mode == FWP_BOOT_APPLICATION ? "application" : "bootloader";
      if (strcmp(mode, boot) || c.slot != atoi(slot) || c.trial != atoi(trial)) {
        printf("FAIL %s/%s: boot %s slot %d trial %d, expected %s slot %s trial %s\n", name, step, mode, c.slot, c.trial, boot, slot, trial);
        ok = 0;
      }
      board_seq = 0;
    } else if (tear) {
      uint8_t zeros[SECTOR_SIZE];
      memset(zeros, 0, sizeof zeros);
      f_program(NULL, meta.xfer_slot, meta.xfer_next, zeros, (size_t)atoi(tear));
    } else if (in && out) {
      uint8_t wire[FWP_MAX_WIRE], body[FWP_MAX_BODY], reply[FWP_MAX_WIRE], data[FWU_INFO_LEN];
      int wn = unhex(in, wire, sizeof wire);
      char got[2 * FWP_MAX_WIRE + 2] = "-";
      if (wn < 1 || fwp_decode(wire, (size_t)wn - 1, &f) != FWP_OK) {
        printf("FAIL %s/%s: input does not decode\n", name, step);
        ok = 0;
      } else if (f.type == FWP_REQUEST) {
        size_t dl = 0;
        int st = fwu_request(&u, f.u.request.op, f.u.request.data, f.u.request.data_len, data, &dl);
        if (st < 0) {
          printf("FAIL %s/%s: op 0x%02x not handled\n", name, step, f.u.request.op);
          ok = 0;
        } else {
          body[0] = f.seq;
          body[1] = (uint8_t)st;
          memcpy(body + 2, data, dl);
          size_t rn = fwp_encode(FWP_RESPONSE, board_seq++, body, 2 + dl, reply);
          tohex(reply, rn, got);
        }
      } else if (f.type == FWP_FW_CHUNK) {
        int st = fwu_chunk(&u, f.u.chunk.offset, f.u.chunk.crc32, f.u.chunk.data, f.u.chunk.data_len);
        if (st >= 0) {
          size_t bl = fwp_write_progress(meta.xfer_next, (uint8_t)st, WINDOW, body);
          size_t rn = fwp_encode(FWP_FW_PROGRESS, board_seq++, body, bl, reply);
          tohex(reply, rn, got);
        }
      }
      if (ok && strcmp(got, out)) {
        printf("FAIL %s/%s: answered %s, expected %s\n", name, step, got, out);
        ok = 0;
      }
    } else {
      printf("FAIL %s/%s: malformed step\n", name, step);
      ok = 0;
    }
    if (ok) passed++;
    else failed++;
  }
  fclose(fp);
  printf("%d passed, %d failed (%d metadata writes)\n", passed, failed, meta_saves);
  return failed ? 1 : 0;
}
