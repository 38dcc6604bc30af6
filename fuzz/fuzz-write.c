/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* libFuzzer harness of the write engine (vdi-write.c).
 *
 * The input chooses an image, made new for each run by the library
 * and checked clean, then drives writes, zeroes, trims, flushes, reads,
 * extents queries, reopenings and crash copies on it, in the way the
 * vdi plugin and the vdidiff filter call libvdi.  A model of the disk
 * in memory follows every change.  The harness aborts (a finding) if
 * a request fails, if a read or an extent disagrees with the model,
 * if the image or a copy of it taken between two requests (a crash)
 * does not check clean, or if anything but the top image changed.
 *
 * Input: 3 bytes of layout, then 8 bytes a request.
 *
 *   layout[0]  bits 0-1: 0 a dynamic image, 1 a fixed one, 2 a
 *              differencing image over base.vdi (a chain), 3 a
 *              differencing layer over a pattern (the vdidiff filter);
 *              bit 2: 512 extra bytes a block; bit 3: a plain 1.1
 *              header (384 bytes) rather than VirtualBox's 400;
 *              bits 4-5: block size 128 KiB << n (n < 3)
 *   layout[1..2]  disk size in sectors, little-endian, modulo 4096,
 *              plus one
 *
 *   request[0]  bits 0-3: the operation (enum op, modulo); bit 6: the
 *              length is whole blocks; bit 7: the offset is block
 *              aligned; bit 5: FUA
 *   request[1..3]  offset, modulo the disk size
 *   request[4..6]  length - 1, modulo 4 blocks, cut at the end of the
 *              disk
 *   request[7]  the data: 0 writes zeros, else a pattern from it
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <string.h>
#include <inttypes.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include "libvdi.h"
#include "minmax.h"
#include "rounding.h"
#include "vdi-io.h"

#include "fuzz-common.h"

enum op {
  OP_WRITE, OP_ZERO, OP_FAST_ZERO, OP_TRIM, OP_FLUSH, OP_READ, OP_EXTENTS,
  OP_REOPEN, OP_CRASH_COPY,
  NR_OPS
};

#define MAX_REQUESTS 64
#define MAX_SECTORS 4096
#define MAX_SIZE (MAX_SECTORS * 512)

enum kind { KIND_DYNAMIC, KIND_FIXED, KIND_CHAIN, KIND_LAYER };

struct disk {
  enum kind kind;
  const char *path;             /* top.vdi */
  struct vdi_chain *chain;
  const struct vdi_below *below;
  uint64_t size;
  uint32_t block_size;
  uint8_t model[MAX_SIZE];
};

static struct disk disk;
static uint8_t buf[4 * (512 << 10)];  /* 4 of the largest blocks */
static const uint8_t zeros[MAX_SIZE];
/* What writes write: the bytes from offset + the request's data byte,
 * so that data written to the wrong place or left over shows.
 */
static uint8_t pattern[MAX_SIZE + 256];
static struct timespec base_changed;

/* fuzz_base_byte of each offset: the harness's own loops would slow
 * it down (every comparison is traced for libFuzzer).
 */
static uint8_t base_bytes[MAX_SIZE];

static int
below_pread (void *opaque, void *b, uint32_t count, uint64_t offset)
{
  memcpy (b, base_bytes + offset, count);
  return 0;
}

static const struct vdi_below pattern_below = { below_pread, NULL };

/* What the guest sees before any write: the layer, what is below;
 * the chain, base.vdi with data in its odd blocks.
 */
static void
initial_model (void)
{
  uint64_t offset;

  memset (disk.model, 0, disk.size);
  if (disk.kind == KIND_LAYER)
    memcpy (disk.model, base_bytes, disk.size);
  else if (disk.kind == KIND_CHAIN)
    for (offset = FUZZ_BLOCK_SIZE; offset < MIN (disk.size, FUZZ_BASE_SIZE);
         offset += 2 * FUZZ_BLOCK_SIZE)
      memcpy (disk.model + offset, base_bytes + offset,
              MIN (disk.size - offset, FUZZ_BLOCK_SIZE));
}

/* When base.vdi last changed, to see that it never does. */
static struct timespec
changed (const char *path)
{
  struct stat st;

  if (stat (path, &st) == -1)
    fuzz_fail ("%s: %m", path);
  return st.st_ctim;
}

static void
copy_file (const char *from, const char *to)
{
  int in = open (from, O_RDONLY | O_CLOEXEC);
  int out = open (to, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  uint64_t offset = 0;
  ssize_t n;

  if (in == -1 || out == -1)
    fuzz_fail ("%s, %s: %m", from, to);
  while ((n = read (in, buf, sizeof buf)) > 0) {
    if (vdi_full_pwrite (out, buf, n, offset) == -1)
      fuzz_fail ("%s: %m", to);
    offset += n;
  }
  if (n == -1 || close (out) == -1)
    fuzz_fail ("%s, %s: %m", from, to);
  close (in);
}

/* A fixed image: created empty, then given every slot in order. */
static void
make_fixed (const char *path, struct vdi_header *h)
{
  uint32_t i, entry;
  int fd;

  h->type = VDI_TYPE_FIXED;
  h->blocks_allocated = h->blocks;
  if (vdi_image_create (path, h) == -1)
    fuzz_fail ("%s: cannot create a fixed image", path);
  fd = open (path, O_WRONLY | O_CLOEXEC);
  if (fd == -1)
    fuzz_fail ("%s: %m", path);
  for (i = 0; i < h->blocks; ++i) {
    entry = htole32 (i);
    if (vdi_full_pwrite (fd, &entry, 4,
                         h->blocks_offset + 4 * (uint64_t) i) == -1)
      fuzz_fail ("%s: %m", path);
  }
  if (ftruncate (fd, vdi_header_slots_end (h, h->blocks)) == -1)
    fuzz_fail ("%s: %m", path);
  close (fd);
}

static void
open_disk (void)
{
  /* Parents are looked for in the image's folder only. */
  const struct vdi_parent_search search = { .registry = NULL };
  struct vdi_image *img;

  if (disk.kind == KIND_CHAIN)
    disk.chain = vdi_chain_open (disk.path, VDI_OPEN_WRITE, &search);
  else {
    img = vdi_image_open (disk.path, VDI_OPEN_WRITE);
    FUZZ_ASSERT (img != NULL);
    disk.chain = disk.kind == KIND_LAYER
      ? vdi_layer_new (img) : vdi_chain_new (&img, 1);
  }
  FUZZ_ASSERT (disk.chain != NULL);
  FUZZ_ASSERT (vdi_chain_size (disk.chain) == disk.size);
}

/* vdi-img check of path: clean, and (unless after a crash) with no
 * leaked slot.
 */
static void
check_image (const char *path, bool crashed)
{
  struct vdi_image *img = vdi_image_open (path, 0);

  if (img == NULL)
    fuzz_fail ("%s: does not open", path);
  if (vdi_image_check (img) == -1)
    fuzz_fail ("%s: does not check clean", path);
  if (!crashed && vdi_image_leaked_slots (img) != 0)
    fuzz_fail ("%s: %" PRIu32 " leaked slots", path,
               vdi_image_leaked_slots (img));
  vdi_image_close (img);
}

static void
compare (uint64_t offset, uint64_t count)
{
  uint64_t i;

  if (vdi_chain_pread (disk.chain, buf, count, offset, disk.below) == -1)
    fuzz_fail ("read %" PRIu64 "+%" PRIu64 ": %m", offset, count);
  if (memcmp (buf, disk.model + offset, count) == 0)
    return;
  for (i = 0; buf[i] == disk.model[offset + i]; ++i)
    ;
  fuzz_fail ("byte %" PRIu64 " reads %u, not %u", offset + i,
             buf[i], disk.model[offset + i]);
}

static void
compare_all (void)
{
  uint64_t offset, n;

  for (offset = 0; offset < disk.size; offset += n) {
    n = MIN (disk.size - offset, sizeof buf);
    compare (offset, n);
  }
}

static int
check_extent (void *opaque, uint64_t offset, uint64_t length,
              enum vdi_extent_type type)
{
  uint64_t *next = opaque;

  FUZZ_ASSERT (offset == *next && length > 0);
  *next = offset + length;
  if (type == VDI_EXTENT_ZERO ||
      (type == VDI_EXTENT_BELOW && disk.below == NULL))
    FUZZ_ASSERT (memcmp (disk.model + offset, zeros, length) == 0);
  else if (type == VDI_EXTENT_BELOW)
    FUZZ_ASSERT (memcmp (disk.model + offset, base_bytes + offset,
                         length) == 0);
  return 0;
}

static void
make_disk (const uint8_t *layout)
{
  struct vdi_header h;
  struct vdi_image *base;
  unsigned sectors;

  disk.kind = layout[0] & 3;
  disk.block_size = FUZZ_BLOCK_SIZE << MIN ((layout[0] >> 4) & 3, 2);
  sectors = 1 + (layout[1] | layout[2] << 8) % MAX_SECTORS;
  disk.size = sectors * UINT64_C (512);
  disk.path = fuzz_path ("top.vdi");
  disk.below = disk.kind == KIND_LAYER ? &pattern_below : NULL;

  vdi_header_init_dynamic (&h, disk.kind >= KIND_CHAIN
                           ? VDI_TYPE_DIFF : VDI_TYPE_NORMAL,
                           disk.size, disk.block_size);
  if (layout[0] & 4)
    h.block_extra = 512;
  if (layout[0] & 8)
    h.header_size = VDI_HEADER_1_1_SIZE;
  /* A layer's parent UUID names nothing here. */
  if (vdi_uuid_generate (&h.uuid_create) == -1 ||
      vdi_uuid_generate (&h.uuid_modify) == -1 ||
      (disk.kind == KIND_LAYER &&
       vdi_uuid_generate (&h.uuid_linkage) == -1))
    fuzz_fail ("vdi_uuid_generate: %m");
  if (disk.kind == KIND_CHAIN) {
    base = vdi_image_open (fuzz_path ("base.vdi"), VDI_OPEN_HEADER_ONLY);
    FUZZ_ASSERT (base != NULL);
    h.uuid_linkage = vdi_image_header (base)->uuid_create;
    h.uuid_parent_modify = vdi_image_header (base)->uuid_modify;
    vdi_image_close (base);
  }
  if (disk.kind == KIND_FIXED)
    make_fixed (disk.path, &h);
  else if (vdi_image_create (disk.path, &h) == -1)
    fuzz_fail ("%s: cannot create the image", disk.path);
  check_image (disk.path, false);
  initial_model ();
  open_disk ();
}

static void
fail_request (const char *what, uint64_t offset, uint32_t count)
{
  fuzz_fail ("%s %" PRIu64 "+%" PRIu32 ": %m", what, offset, count);
}

static void
do_request (const uint8_t *r)
{
  const enum op op = (r[0] & 15) % NR_OPS;
  const unsigned flags = r[0] & 0x20 ? VDI_WRITE_FUA : 0;
  uint64_t offset = (r[1] | r[2] << 8 | (uint64_t) r[3] << 16) % disk.size;
  uint64_t count = r[4] | r[5] << 8 | (uint64_t) r[6] << 16;
  const uint8_t *data;
  uint64_t next;

  if (r[0] & 0x80)
    offset = ROUND_DOWN (offset, disk.block_size);
  if (r[0] & 0x40)
    count = (1 + count % 3) * disk.block_size;
  else
    count = 1 + count % (4 * disk.block_size);
  count = MIN (count, disk.size - offset);

  switch (op) {
  case OP_WRITE:
    data = r[7] == 0 ? zeros : pattern + offset + r[7];
    if (vdi_chain_pwrite (disk.chain, data, count, offset, flags,
                          disk.below) == -1)
      fail_request ("write", offset, count);
    memcpy (disk.model + offset, data, count);
    break;
  case OP_ZERO:
  case OP_TRIM:                 /* as the vdi plugin trims */
    if (vdi_chain_zero (disk.chain, count, offset, flags,
                        disk.below) == -1)
      fail_request ("zero", offset, count);
    memset (disk.model + offset, 0, count);
    break;
  case OP_FAST_ZERO:
    if (vdi_chain_zero (disk.chain, count, offset, flags | VDI_ZERO_FAST,
                        disk.below) == -1) {
      if (errno != ENOTSUP)
        fail_request ("fast zero", offset, count);
    }
    else
      memset (disk.model + offset, 0, count);
    break;
  case OP_FLUSH:
    if (vdi_chain_flush (disk.chain) == -1)
      fail_request ("flush", 0, 0);
    break;
  case OP_READ:
    compare (offset, count);
    break;
  case OP_EXTENTS:
    next = offset;
    FUZZ_ASSERT (vdi_chain_extents (disk.chain, offset, count, false,
                                    check_extent, &next) == 0);
    FUZZ_ASSERT (next == offset + count);
    break;
  case OP_REOPEN:
    vdi_chain_free (disk.chain);
    check_image (disk.path, false);
    open_disk ();
    compare_all ();
    break;
  case OP_CRASH_COPY:
    /* A crash now leaves the file as it is. */
    copy_file (disk.path, fuzz_path ("crash.vdi"));
    check_image (fuzz_path ("crash.vdi"), true);
    break;
  case NR_OPS:
    abort ();
  }
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  size_t i;

  for (i = 0; i < sizeof pattern; ++i)
    pattern[i] = i * 7 + (i >> 9) + 1;
  for (i = 0; i < sizeof base_bytes; ++i)
    base_bytes[i] = fuzz_base_byte (i);
  fuzz_init ();
  fuzz_write_base ();
  base_changed = changed (fuzz_path ("base.vdi"));
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  struct timespec t;
  size_t i;

  if (size < 3)
    return 0;
  make_disk (data);
  for (i = 3; i + 8 <= size && i < 3 + 8 * MAX_REQUESTS; i += 8)
    do_request (data + i);

  if (vdi_chain_flush (disk.chain) == -1)
    fail_request ("flush", 0, 0);
  compare_all ();
  vdi_chain_free (disk.chain);
  check_image (disk.path, false);
  open_disk ();
  compare_all ();
  vdi_chain_free (disk.chain);
  t = changed (fuzz_path ("base.vdi"));
  if (t.tv_sec != base_changed.tv_sec || t.tv_nsec != base_changed.tv_nsec)
    fuzz_fail ("base.vdi changed");
  return 0;
}
