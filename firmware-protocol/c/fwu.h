/*
 * The board's side of an fwp 1.1 firmware update (../SPEC.md section 11):
 * the bootloader's receive state machine and its boot decision. C99, no
 * allocation; flash and persistence through the board's callbacks. The
 * conversation vectors ../vectors/fwu-v1.vec pin its every answer;
 * test_fwu.c replays them.
 */
#ifndef FWU_H
#define FWU_H

#include <stddef.h>
#include <stdint.h>

#include "fwp.h"

enum fwu_xfer_state { FWU_XFER_NONE = 0, FWU_XFER_RECEIVING = 1, FWU_XFER_VERIFIED = 2, FWU_XFER_TESTING = 3, FWU_XFER_CONFIRMED = 4, FWU_XFER_REJECTED = 5 };
enum fwu_slot_state { FWU_SLOT_EMPTY = 0, FWU_SLOT_VALID = 1, FWU_SLOT_INVALID = 2 };
enum fwu_progress {
  FWU_PROGRESS_OK = 0,
  FWU_PROGRESS_BAD_CHECK = 1,
  FWU_PROGRESS_OUT_OF_ORDER = 2,
  FWU_PROGRESS_FLASH_ERROR = 3,
  FWU_PROGRESS_NO_TRANSFER = 4,
  FWU_PROGRESS_BAD_CHUNK = 5
};
enum fwu_begin_refusal { FWU_REFUSE_SIZE = 1, FWU_REFUSE_MODEL = 2, FWU_REFUSE_DOWNGRADE = 3 };
#define FWU_BEGIN_ALLOW_DOWNGRADE 1u
#define FWU_INFO_LEN 64
#define FWU_BEGIN_LEN 42
#define FWU_RESUME_LEN 7
#define FWU_DEADLINE_MIN_S 5
#define FWU_DEADLINE_MAX_S 600

typedef struct {
  uint8_t state;
  uint8_t version[3];
} fwu_slot;

/* What the bootloader keeps in flash across resets and power loss. */
typedef struct {
  uint8_t active_slot;
  fwu_slot slots[2];
  uint8_t xfer_state;
  uint32_t xfer_size, xfer_next;
  uint8_t xfer_sha256[32];
  uint8_t xfer_version[3];
  uint8_t xfer_slot;
  uint8_t trial_booted;
  uint16_t trial_deadline_s;
} fwu_meta;

typedef struct {
  uint32_t slot_size, sector_size;
  void *ctx;
  void (*erase)(void *ctx, uint8_t slot, uint32_t offset, uint32_t len);
  /* 0 when the bytes read back as written. */
  int (*program)(void *ctx, uint8_t slot, uint32_t offset, const uint8_t *data, size_t len);
  void (*read)(void *ctx, uint8_t slot, uint32_t offset, uint8_t *out, size_t len);
  /* Persist the metadata (write it so a reset mid-write keeps the previous copy). */
  void (*save_meta)(void *ctx, const fwu_meta *meta);
} fwu_flash;

typedef struct {
  uint16_t board_model, max_chunk;
  uint8_t window;
  fwu_meta *meta;
  const fwu_flash *flash;
  /* Running state (RAM). */
  int8_t running_slot;
  uint8_t boot_mode;
  uint32_t erased_to;
  uint8_t nak_sent;
} fwu;

typedef struct {
  uint8_t mode; /* enum fwp_boot_mode */
  int8_t slot;  /* -1 in the bootloader */
  uint8_t trial;
} fwu_boot_choice;

/* A factory state: `version` valid in slot 0, slot 1 empty, no transfer. */
void fwu_fresh_meta(fwu_meta *m, const uint8_t version[3]);
void fwu_init(fwu *u, uint16_t board_model, uint16_t max_chunk, uint8_t window, fwu_meta *meta, const fwu_flash *flash);
/* The decision at reset; stay: ENTER_BOOTLOADER asked to stay (a RAM flag: lost on power loss). */
fwu_boot_choice fwu_boot(fwu *u, int stay);
/*
 * A REQUEST op: returns the RESPONSE status and writes its data (at most
 * FWU_INFO_LEN bytes), or -1 when op is not a firmware-update op (the
 * firmware answers it as before). The caller acts on OK afterwards:
 * ENTER_BOOTLOADER, FW_TEST_BOOT and (in the bootloader) FW_ABORT reset the
 * board about 100 ms later; FW_CONFIRM stops the trial's watchdog.
 */
int fwu_request(fwu *u, uint8_t op, const uint8_t *args, size_t args_len, uint8_t *data, size_t *data_len);
/* A FW_CHUNK: the FW_PROGRESS status to send (with u->meta->xfer_next), or -1 to stay silent. */
int fwu_chunk(fwu *u, uint32_t offset, uint32_t crc, const uint8_t *data, size_t len);

#endif
