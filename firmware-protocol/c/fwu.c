#include "fwu.h"

#include <string.h>

#include "sha256.h"

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | (p[1] << 8)); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void wr16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); }
static void wr32(uint8_t *p, uint32_t v) { wr16(p, (uint16_t)v); wr16(p + 2, (uint16_t)(v >> 16)); }

static int cmp_version(const uint8_t *a, const uint8_t *b) {
  for (int i = 0; i < 3; i++)
    if (a[i] != b[i]) return a[i] < b[i] ? -1 : 1;
  return 0;
}

static void save(fwu *u) { u->flash->save_meta(u->flash->ctx, u->meta); }

void fwu_fresh_meta(fwu_meta *m, const uint8_t version[3]) {
  memset(m, 0, sizeof *m);
  m->slots[0].state = FWU_SLOT_VALID;
  memcpy(m->slots[0].version, version, 3);
  m->slots[1].state = FWU_SLOT_EMPTY;
}

void fwu_init(fwu *u, uint16_t board_model, uint16_t max_chunk, uint8_t window, fwu_meta *meta, const fwu_flash *flash) {
  memset(u, 0, sizeof *u);
  u->board_model = board_model;
  u->max_chunk = max_chunk;
  u->window = window;
  u->meta = meta;
  u->flash = flash;
  u->running_slot = -1;
  u->boot_mode = FWP_BOOT_BOOTLOADER;
}

static fwu_boot_choice run(fwu *u, uint8_t mode, int8_t slot, uint8_t trial) {
  fwu_boot_choice c;
  c.mode = mode;
  c.slot = slot;
  c.trial = trial;
  u->running_slot = slot;
  u->boot_mode = mode;
  return c;
}

fwu_boot_choice fwu_boot(fwu *u, int stay) {
  fwu_meta *m = u->meta;
  u->nak_sent = 0;
  u->erased_to = 0;
  if (m->xfer_state == FWU_XFER_TESTING) {
    if (m->trial_booted) {
      /* Reset again before the confirm: the new image failed; back to the old one for good. */
      m->xfer_state = FWU_XFER_REJECTED;
      m->slots[m->xfer_slot].state = FWU_SLOT_INVALID;
      m->trial_booted = 0;
      save(u);
    } else {
      m->trial_booted = 1;
      save(u);
      return run(u, FWP_BOOT_APPLICATION, (int8_t)m->xfer_slot, 1);
    }
  }
  if (stay) return run(u, FWP_BOOT_BOOTLOADER, -1, 0);
  if (m->slots[m->active_slot].state == FWU_SLOT_VALID) return run(u, FWP_BOOT_APPLICATION, (int8_t)m->active_slot, 0);
  if (m->slots[1 - m->active_slot].state == FWU_SLOT_VALID) return run(u, FWP_BOOT_APPLICATION, (int8_t)(1 - m->active_slot), 0);
  return run(u, FWP_BOOT_BOOTLOADER, -1, 0);
}

static size_t write_resume(const fwu *u, uint8_t *d) {
  wr32(d, u->meta->xfer_next);
  wr16(d + 4, u->max_chunk);
  d[6] = u->window;
  return FWU_RESUME_LEN;
}

static size_t write_info(const fwu *u, uint8_t *d) {
  const fwu_meta *m = u->meta;
  d[0] = u->boot_mode;
  d[1] = m->active_slot;
  wr16(d + 2, u->board_model);
  wr32(d + 4, u->flash->slot_size);
  wr16(d + 8, u->max_chunk);
  d[10] = u->window;
  d[11] = m->xfer_state;
  wr32(d + 12, m->xfer_size);
  wr32(d + 16, m->xfer_next);
  memcpy(d + 20, m->xfer_sha256, 32);
  memcpy(d + 52, m->xfer_version, 3);
  d[55] = m->xfer_slot;
  for (int i = 0; i < 2; i++) {
    d[56 + 4 * i] = m->slots[i].state;
    memcpy(d + 57 + 4 * i, m->slots[i].version, 3);
  }
  return FWU_INFO_LEN;
}

/* Whether flash [from, to) of slot reads erased (0xFF), read in small pieces. */
static int erased(const fwu *u, uint8_t slot, uint32_t from, uint32_t to) {
  uint8_t buf[32];
  while (from < to) {
    size_t n = to - from < sizeof buf ? to - from : sizeof buf;
    u->flash->read(u->flash->ctx, slot, from, buf, n);
    for (size_t i = 0; i < n; i++)
      if (buf[i] != 0xFF) return 0;
    from += (uint32_t)n;
  }
  return 1;
}

static int begin(fwu *u, const uint8_t *a, size_t len, uint8_t *d, size_t *dl) {
  fwu_meta *m = u->meta;
  if (len < FWU_BEGIN_LEN) return FWP_ST_BAD_ARGUMENT;
  uint32_t size = rd32(a);
  const uint8_t *sha = a + 4, *version = a + 36;
  uint16_t model = rd16(a + 39);
  uint8_t flags = a[41];
  if (model != u->board_model) {
    d[0] = FWU_REFUSE_MODEL;
    *dl = 1;
    return FWP_ST_BAD_ARGUMENT;
  }
  if (size == 0 || size > u->flash->slot_size) {
    d[0] = FWU_REFUSE_SIZE;
    *dl = 1;
    return FWP_ST_BAD_ARGUMENT;
  }
  const fwu_slot *active = &m->slots[m->active_slot];
  if (!(flags & FWU_BEGIN_ALLOW_DOWNGRADE) && active->state == FWU_SLOT_VALID && cmp_version(version, active->version) < 0) {
    d[0] = FWU_REFUSE_DOWNGRADE;
    *dl = 1;
    return FWP_ST_BAD_ARGUMENT;
  }
  int same = m->xfer_size == size && !memcmp(m->xfer_sha256, sha, 32) && !cmp_version(m->xfer_version, version);
  if (same && m->xfer_state == FWU_XFER_VERIFIED) {
    *dl = write_resume(u, d);
    return FWP_ST_OK;
  }
  if (same && m->xfer_state == FWU_XFER_RECEIVING) {
    /* Resume. Flash past next may hold a write cut short by power loss: then its sector is written again. */
    uint32_t s = u->flash->sector_size;
    uint32_t start = m->xfer_next - m->xfer_next % s;
    uint32_t end = start + s < u->flash->slot_size ? start + s : u->flash->slot_size;
    if (m->xfer_next % s != 0 && !erased(u, m->xfer_slot, m->xfer_next, end)) {
      m->xfer_next = start;
      save(u);
    }
    u->erased_to = m->xfer_next % s == 0 ? m->xfer_next : end;
    u->nak_sent = 0;
    *dl = write_resume(u, d);
    return FWP_ST_OK;
  }
  /* A new image, into the slot not booted by default. */
  uint8_t slot = (uint8_t)(1 - m->active_slot);
  m->slots[slot].state = FWU_SLOT_INVALID;
  memcpy(m->slots[slot].version, version, 3);
  m->xfer_state = FWU_XFER_RECEIVING;
  m->xfer_size = size;
  m->xfer_next = 0;
  memcpy(m->xfer_sha256, sha, 32);
  memcpy(m->xfer_version, version, 3);
  m->xfer_slot = slot;
  m->trial_booted = 0;
  save(u);
  u->erased_to = 0;
  u->nak_sent = 0;
  *dl = write_resume(u, d);
  return FWP_ST_OK;
}

static int verify(fwu *u, uint8_t *d, size_t *dl) {
  fwu_meta *m = u->meta;
  if (m->xfer_state == FWU_XFER_VERIFIED) return FWP_ST_OK;
  if (m->xfer_state != FWU_XFER_RECEIVING) return FWP_ST_BAD_ARGUMENT;
  if (m->xfer_next < m->xfer_size) {
    *dl = write_resume(u, d);
    return FWP_ST_BUSY;
  }
  fwp_sha256 h;
  uint8_t buf[64], digest[32];
  fwp_sha256_init(&h);
  for (uint32_t at = 0; at < m->xfer_size; at += sizeof buf) {
    size_t n = m->xfer_size - at < sizeof buf ? m->xfer_size - at : sizeof buf;
    u->flash->read(u->flash->ctx, m->xfer_slot, at, buf, n);
    fwp_sha256_update(&h, buf, n);
  }
  fwp_sha256_final(&h, digest);
  if (memcmp(digest, m->xfer_sha256, 32)) {
    m->xfer_next = 0;
    u->erased_to = 0;
    save(u);
    *dl = write_resume(u, d);
    return FWP_ST_FAILED;
  }
  m->xfer_state = FWU_XFER_VERIFIED;
  m->slots[m->xfer_slot].state = FWU_SLOT_VALID;
  save(u);
  return FWP_ST_OK;
}

int fwu_request(fwu *u, uint8_t op, const uint8_t *args, size_t args_len, uint8_t *d, size_t *dl) {
  fwu_meta *m = u->meta;
  int bl = u->boot_mode == FWP_BOOT_BOOTLOADER;
  *dl = 0;
  switch (op) {
    case FWP_OP_ENTER_BOOTLOADER:
      return FWP_ST_OK;
    case FWP_OP_FW_INFO:
      *dl = write_info(u, d);
      return FWP_ST_OK;
    case FWP_OP_FW_BEGIN:
      if (!bl) return FWP_ST_WRONG_MODE;
      return begin(u, args, args_len, d, dl);
    case FWP_OP_FW_VERIFY:
      if (!bl) return FWP_ST_WRONG_MODE;
      return verify(u, d, dl);
    case FWP_OP_FW_TEST_BOOT: {
      if (!bl) return FWP_ST_WRONG_MODE;
      uint16_t deadline = args_len >= 2 ? rd16(args) : 0;
      if (deadline < FWU_DEADLINE_MIN_S || deadline > FWU_DEADLINE_MAX_S) return FWP_ST_BAD_ARGUMENT;
      if (m->xfer_state == FWU_XFER_TESTING) return FWP_ST_OK; /* a retry after a lost response */
      if (m->xfer_state != FWU_XFER_VERIFIED) return FWP_ST_BAD_ARGUMENT;
      m->xfer_state = FWU_XFER_TESTING;
      m->trial_booted = 0;
      m->trial_deadline_s = deadline;
      save(u);
      return FWP_ST_OK;
    }
    case FWP_OP_FW_CONFIRM:
      if (m->xfer_state == FWU_XFER_CONFIRMED) return FWP_ST_OK; /* a retry */
      if (bl) return FWP_ST_WRONG_MODE;
      if (m->xfer_state != FWU_XFER_TESTING || u->running_slot != (int8_t)m->xfer_slot) return FWP_ST_BAD_ARGUMENT;
      m->xfer_state = FWU_XFER_CONFIRMED;
      m->active_slot = m->xfer_slot;
      m->trial_booted = 0;
      save(u);
      return FWP_ST_OK;
    case FWP_OP_FW_ABORT:
      if (m->xfer_state == FWU_XFER_TESTING) return FWP_ST_BAD_ARGUMENT;
      if (m->xfer_state == FWU_XFER_RECEIVING || m->xfer_state == FWU_XFER_VERIFIED) {
        m->slots[m->xfer_slot].state = FWU_SLOT_INVALID;
        m->xfer_state = FWU_XFER_NONE;
        save(u);
      }
      return FWP_ST_OK;
    default:
      return -1;
  }
}

static int refuse(fwu *u, int status) {
  if (u->nak_sent) return -1;
  u->nak_sent = 1;
  return status;
}

int fwu_chunk(fwu *u, uint32_t offset, uint32_t crc, const uint8_t *data, size_t len) {
  fwu_meta *m = u->meta;
  if (u->boot_mode != FWP_BOOT_BOOTLOADER || m->xfer_state != FWU_XFER_RECEIVING) return refuse(u, FWU_PROGRESS_NO_TRANSFER);
  if (len == 0 || len > u->max_chunk || offset + len > m->xfer_size) return refuse(u, FWU_PROGRESS_BAD_CHUNK);
  if (fwp_crc32(data, len) != crc) return refuse(u, FWU_PROGRESS_BAD_CHECK);
  if (offset > m->xfer_next) return refuse(u, FWU_PROGRESS_OUT_OF_ORDER);
  if (offset + len <= m->xfer_next) return FWU_PROGRESS_OK; /* a repeat of what is written: acknowledged again */
  uint32_t from = m->xfer_next - offset, end = offset + (uint32_t)len, s = u->flash->sector_size;
  while (u->erased_to < end) {
    uint32_t n = u->flash->slot_size - u->erased_to < s ? u->flash->slot_size - u->erased_to : s;
    u->flash->erase(u->flash->ctx, m->xfer_slot, u->erased_to, n);
    u->erased_to += s;
  }
  if (u->flash->program(u->flash->ctx, m->xfer_slot, m->xfer_next, data + from, len - from) != 0) return refuse(u, FWU_PROGRESS_FLASH_ERROR);
  m->xfer_next = end;
  save(u);
  u->nak_sent = 0;
  return FWU_PROGRESS_OK;
}
