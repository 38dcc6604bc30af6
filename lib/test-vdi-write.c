/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Tests of the write engine (vdi-write.c), on images in temporary
 * files, each checked against a model of the disk in memory and
 * against the bytes of the file (read here, not through the library):
 *
 * - allocation goes to slot cBlocksAllocated, in the order blocks are
 *   first written; the data reaches the file at once, the map entries
 *   and the counter only at a flush (or a FUA write), and then the
 *   header on disk counts the slots;
 * - a process that dies before a flush leaves an image that opens and
 *   checks clean and shows what the last flush wrote;
 * - a partial write into an unallocated block copies the rest of the
 *   block up from the chain (or from what lies below a layer);
 * - zeroing (or writing zeros over) a whole unallocated block writes
 *   a ZERO entry and allocates nothing, zeroing an allocated block
 *   keeps its slot, zeroing part of a block that reads zeros changes
 *   nothing, a fast zero that would copy data up fails with ENOTSUP
 *   and changes nothing;
 * - a fixed image never grows and keeps its identity map;
 * - the modify UUID is renewed at the first write and at each flush
 *   after writes, never otherwise; the create UUID never changes;
 * - a chain opened read-only refuses every change with EROFS;
 * - threads writing into the same unallocated blocks at once each
 *   allocate nothing twice;
 * - allocations that fail (the file cannot grow, the chain below
 *   cannot be read) leave the image as valid as it was: no slot
 *   counted that nothing uses, whether the failed one was the last
 *   slot counted or another allocation took a later slot meanwhile.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <errno.h>
#include <assert.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "test-common.h"

#define KiB 1024
#define BS (128 * KiB)          /* the smallest block size */

#define FREE VDI_BLOCK_FREE
#define ZERO VDI_BLOCK_ZERO

/* An image in a temporary file and its chain, with a model. */
struct disk {
  char *path;
  struct vdi_chain *chain;
  uint64_t size;
  uint8_t *model;
};

/* Write an empty dynamic (or, with type, another type of) image of
 * size bytes with block size BS; type FIXED gets an identity map and
 * every slot filled with random data.
 */
static char *
make_image (uint64_t size, uint32_t type, unsigned seed, uint8_t **fixed_data)
{
  struct vdi_header h;
  uint32_t *map, i, nslots = 0;
  uint8_t *slots = NULL;
  char *path;

  test_header_init (&h, size, BS, seed);
  h.type = type;
  map = malloc (h.blocks * sizeof *map);
  assert (map != NULL);
  for (i = 0; i < h.blocks; ++i)
    map[i] = FREE;
  if (type == VDI_TYPE_FIXED) {
    nslots = h.blocks;
    h.blocks_allocated = nslots;
    for (i = 0; i < h.blocks; ++i)
      map[i] = i;
    slots = malloc ((size_t) nslots * BS);
    assert (slots != NULL);
    test_random_fill (slots, (size_t) nslots * BS);
    /* The bytes past the end of the disk are never seen. */
    memset (slots + size, 0, (size_t) nslots * BS - size);
    *fixed_data = slots;
  }
  if (type == VDI_TYPE_DIFF)
    test_uuid_make (&h.uuid_linkage, seed + 100);
  path = test_write_image (&h, map, slots, nslots, 0);
  free (map);
  return path;
}

static void
disk_open (struct disk *d, char *path, bool layer, bool writable)
{
  struct vdi_image *img = vdi_image_open (path, writable ? VDI_OPEN_WRITE : 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  d->path = path;
  d->size = vdi_header_virtual_size (vdi_image_header (img));
  d->chain = layer ? vdi_layer_new (img) : vdi_chain_new (&img, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (d->chain);
  if (d->model == NULL) {
    d->model = calloc (1, d->size);
    assert (d->model != NULL);
  }
}

static void
disk_close (struct disk *d)
{
  vdi_chain_free (d->chain);
  d->chain = NULL;
}

static void
disk_free (struct disk *d)
{
  disk_close (d);
  free (d->model);
  d->model = NULL;
}

static void
flush (struct disk *d)
{
  CU_ASSERT_EQUAL (vdi_chain_flush (d->chain), 0);
}

/* What lies below a layer: a pattern that depends on the offset. */
static uint8_t
below_byte (uint64_t offset)
{
  return (uint8_t) ((offset * 7) ^ (offset >> 9)) | 1;
}

static int below_calls;

static int
below_pread (void *opaque, void *buf, uint32_t count, uint64_t offset)
{
  uint8_t *p = buf;
  uint32_t i;

  below_calls++;
  for (i = 0; i < count; ++i)
    p[i] = below_byte (offset + i);
  return 0;
}

static const struct vdi_below below = { below_pread, NULL };

/* The whole disk through the chain must equal the model. */
static void
check_model (struct disk *d, const struct vdi_below *b)
{
  uint8_t *buf = malloc (d->size);
  uint64_t i;

  assert (buf != NULL);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_pread (d->chain, buf, d->size, 0, b), 0);
  for (i = 0; i < d->size; ++i)
    if (buf[i] != d->model[i]) {
      fprintf (stderr, "%s: byte %" PRIu64 " is 0x%02x, model 0x%02x\n",
               d->path, i, buf[i], d->model[i]);
      CU_FAIL ("the disk differs from the model");
      break;
    }
  free (buf);
}

/* Close the disk and open it again read-only: it still shows the
 * model and its image checks clean.  Then free it.
 */
static void
reopen_check_free (struct disk *d, bool layer, const struct vdi_below *b)
{
  disk_close (d);
  disk_open (d, d->path, layer, false);
  check_model (d, b);
  CU_ASSERT_EQUAL (vdi_image_check (vdi_chain_image (d->chain, 0)), 0);
  ASSERT_NO_ERROR ();
  disk_free (d);
}

/* Raw reads of the file, independent of the library. */
static uint32_t
file_le32 (const char *path, uint64_t offset)
{
  uint8_t b[4];
  int fd = open (path, O_RDONLY);

  assert (fd >= 0);
  assert (pread (fd, b, 4, offset) == 4);
  close (fd);
  return b[0] | b[1] << 8 | b[2] << 16 | (uint32_t) b[3] << 24;
}

static void
file_bytes (const char *path, uint64_t offset, void *buf, size_t len)
{
  int fd = open (path, O_RDONLY);

  assert (fd >= 0);
  assert (pread (fd, buf, len, offset) == (ssize_t) len);
  close (fd);
}

#define OFF_BLOCKS 0x154
#define OFF_DATA 0x158
#define OFF_ALLOCATED 0x184
#define OFF_UUID_CREATE 0x188
#define OFF_UUID_MODIFY 0x198

static uint32_t
file_map_entry (const char *path, uint32_t b)
{
  return file_le32 (path, file_le32 (path, OFF_BLOCKS) + 4 * (uint64_t) b);
}

static uint64_t
file_size (const char *path)
{
  struct stat st;

  assert (stat (path, &st) == 0);
  return st.st_size;
}

static void
do_write (struct disk *d, uint64_t offset, uint32_t len, uint8_t fill,
          const struct vdi_below *b)
{
  uint8_t *buf = malloc (len);

  assert (buf != NULL);
  memset (buf, fill, len);
  CU_ASSERT_EQUAL (vdi_chain_pwrite (d->chain, buf, len, offset, 0, b), 0);
  memcpy (d->model + offset, buf, len);
  free (buf);
}

static void
do_zero (struct disk *d, uint64_t offset, uint32_t len,
         const struct vdi_below *b)
{
  CU_ASSERT_EQUAL (vdi_chain_zero (d->chain, len, offset, 0, b), 0);
  memset (d->model + offset, 0, len);
}

/* Allocation order, slot contents, counter, file size. */
static void
test_allocation_order (void)
{
  struct disk d = { 0 };
  uint64_t data_offset;
  uint8_t slot[BS];
  uint32_t i;

  disk_open (&d, make_image (8 * BS, VDI_TYPE_NORMAL, 1, NULL), false, true);
  data_offset = file_le32 (d.path, OFF_DATA);
  do_write (&d, 5 * BS + 1000, 3000, 0x55, NULL);
  do_write (&d, 2 * BS - 10, 20, 0x22, NULL);   /* blocks 1 and 2 */
  do_write (&d, 7 * BS, BS, 0x77, NULL);        /* whole block 7 */
  do_write (&d, 5 * BS + 2000, 10, 0x5a, NULL); /* in place */
  check_model (&d, NULL);

  /* Until a flush the map and the counter on disk stay as they were. */
  CU_ASSERT_EQUAL (file_map_entry (d.path, 5), FREE);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 0);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 5), 0);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), 1);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 2), 2);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 7), 3);
  for (i = 0; i < 8; ++i)
    if (i != 1 && i != 2 && i != 5 && i != 7)
      CU_ASSERT_EQUAL (file_map_entry (d.path, i), FREE);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 4);
  CU_ASSERT_EQUAL (file_size (d.path), data_offset + 4 * BS);

  /* Slot 0 holds block 5 whole: zeros around the data. */
  file_bytes (d.path, data_offset, slot, BS);
  CU_ASSERT (memcmp (slot, d.model + 5 * BS, BS) == 0);
  file_bytes (d.path, data_offset + 3 * BS, slot, BS);
  CU_ASSERT (memcmp (slot, d.model + 7 * BS, BS) == 0);

  /* Reopened, the image shows the same, and the library agrees. */
  reopen_check_free (&d, false, NULL);
}

/* Every slot counted, one of them unused (an allocation a crash cut
 * short): the next allocation takes that slot, the counter stays.
 */
static void
test_reuse_unused_slot (void)
{
  struct disk d = { 0 };
  struct vdi_header h;
  uint32_t map[4] = { 0, FREE, 2, FREE };
  uint64_t data_offset;
  uint8_t slot[BS];
  char *path;

  test_header_init (&h, 4 * BS, BS, 7);
  h.blocks_allocated = 3;               /* slot 1 counted, unused */
  path = test_write_image (&h, map, NULL, 3, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (path);
  h.blocks_allocated = 4;               /* slot 3 counted too: all */
  {
    uint8_t buf[VDI_HEADER_READ_SIZE];
    int fd = open (path, O_WRONLY);

    vdi_header_encode (&h, buf);
    CU_ASSERT_EQUAL (pwrite (fd, buf, sizeof buf, 0), (ssize_t) sizeof buf);
    CU_ASSERT_EQUAL (ftruncate (fd, h.data_offset + 4 * (uint64_t) BS), 0);
    close (fd);
  }

  disk_open (&d, path, false, true);
  CU_ASSERT_EQUAL (vdi_chain_pread (d.chain, d.model, d.size, 0, NULL), 0);
  data_offset = file_le32 (d.path, OFF_DATA);
  do_write (&d, 1 * BS + 100, 200, 0x11, NULL);
  do_write (&d, 3 * BS, BS, 0x33, NULL);
  flush (&d);
  /* Slots 1 and 3 were free: taken in that order. */
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), 1);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), 3);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 4);
  file_bytes (d.path, data_offset + 1 * BS, slot, BS);
  CU_ASSERT (memcmp (slot, d.model + 1 * BS, BS) == 0);
  check_model (&d, NULL);
  reopen_check_free (&d, false, NULL);
}

/* Zeroing in all its cases on a base image. */
static void
test_zero_base (void)
{
  struct disk d = { 0 };
  uint64_t size0;

  disk_open (&d, make_image (6 * BS, VDI_TYPE_NORMAL, 2, NULL), false, true);
  size0 = file_size (d.path);

  do_zero (&d, 1 * BS, BS, NULL);               /* whole FREE: ZERO */
  do_write (&d, 2 * BS, BS, 0, NULL);           /* zero data: ZERO */
  do_zero (&d, 3 * BS + 100, 1000, NULL);       /* part of FREE: nothing */
  do_zero (&d, 1 * BS + 100, 1000, NULL);       /* part of ZERO: nothing */
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), ZERO);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 2), ZERO);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), FREE);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 0);
  CU_ASSERT_EQUAL (file_size (d.path), size0);

  /* A write into a ZERO block allocates it, zeros around the data. */
  do_write (&d, 1 * BS + 10, 10, 0x11, NULL);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), 0);
  /* Zeroing an allocated block, whole or in part, keeps its slot. */
  do_write (&d, 4 * BS + 5, 100, 0x44, NULL);
  do_zero (&d, 4 * BS, BS, NULL);
  do_zero (&d, 1 * BS + 15, 2, NULL);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), 0);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 4), 1);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 2);
  check_model (&d, NULL);

  /* Fast zero on a base never needs data. */
  CU_ASSERT_EQUAL (vdi_chain_zero (d.chain, 3000, 5 * BS + 7, VDI_ZERO_FAST,
                                   NULL), 0);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 5), FREE);
  reopen_check_free (&d, false, NULL);
}

/* A differencing layer over something: copy-up, ZERO never FREE,
 * fast zero refused where it would copy data up.
 */
static void
test_layer_copy_up (void)
{
  struct disk d = { 0 };
  uint64_t i, data_offset;
  uint8_t slot[BS];
  int calls;

  disk_open (&d, make_image (5 * BS + 1536, VDI_TYPE_DIFF, 3, NULL),
             true, true);
  for (i = 0; i < d.size; ++i)
    d.model[i] = below_byte (i);
  check_model (&d, &below);
  data_offset = file_le32 (d.path, OFF_DATA);

  do_write (&d, 2 * BS + 4096, 512, 0xaa, &below);
  file_bytes (d.path, data_offset, slot, BS);
  CU_ASSERT (memcmp (slot, d.model + 2 * BS, BS) == 0);

  /* Whole blocks zeroed, trimmed or written with zeros: ZERO. */
  do_zero (&d, 0, BS, &below);
  do_write (&d, 1 * BS, BS, 0, &below);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 0), ZERO);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), ZERO);

  /* A fast zero of part of a FREE block would copy up: refused. */
  calls = below_calls;
  errno = 0;
  CU_ASSERT_EQUAL (vdi_chain_zero (d.chain, 100, 3 * BS + 50, VDI_ZERO_FAST,
                                   &below), -1);
  CU_ASSERT (errno == ENOTSUP || errno == EOPNOTSUPP);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), FREE);
  CU_ASSERT_EQUAL (below_calls, calls);
  test_log_reset ();
  /* Done for real, it copies up. */
  do_zero (&d, 3 * BS + 50, 100, &below);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), 1);
  /* The last block is partial: its slot is whole, zeros past the end. */
  do_write (&d, 5 * BS + 1000, 536, 0xcc, &below);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 5), 2);
  file_bytes (d.path, data_offset + 2 * BS, slot, BS);
  CU_ASSERT (memcmp (slot, d.model + 5 * BS, 1536) == 0);
  for (i = 1536; i < BS; ++i)
    if (slot[i] != 0) {
      CU_FAIL ("bytes past the end of the disk are not zero");
      break;
    }
  check_model (&d, &below);
  reopen_check_free (&d, true, &below);
}

/* A fixed image: in place only, never grows, identity map. */
static void
test_fixed (void)
{
  struct disk d = { 0 };
  uint8_t *data;
  uint64_t size0;
  uint32_t i;

  disk_open (&d, make_image (4 * BS, VDI_TYPE_FIXED, 4, &data), false, true);
  memcpy (d.model, data, d.size);
  free (data);
  size0 = file_size (d.path);
  do_write (&d, BS - 3, 7, 0x31, NULL);
  do_zero (&d, 2 * BS, BS, NULL);
  do_write (&d, 3 * BS, BS, 0, NULL);
  do_zero (&d, 10, 20, NULL);
  check_model (&d, NULL);
  CU_ASSERT_EQUAL (file_size (d.path), size0);
  for (i = 0; i < 4; ++i)
    CU_ASSERT_EQUAL (file_map_entry (d.path, i), i);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 4);
  flush (&d);
  reopen_check_free (&d, false, NULL);
}

/* One write over allocated blocks whose slots follow each other in
 * the file (written as one run) and blocks whose slots do not (block 3
 * got its slot after block 4), with unallocated blocks between.
 */
static void
test_allocated_runs (void)
{
  struct disk d = { 0 };
  unsigned round;

  disk_open (&d, make_image (8 * BS, VDI_TYPE_NORMAL, 5, NULL), false, true);
  do_write (&d, 0, 3 * BS, 0x11, NULL);
  do_write (&d, 4 * BS, BS, 0x22, NULL);
  do_write (&d, 3 * BS, BS, 0x33, NULL);
  do_write (&d, 6 * BS, 2 * BS, 0x44, NULL);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 3), 4);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 4), 3);
  for (round = 0; round < 2; ++round) {
    do_write (&d, 100, 8 * BS - 200, 0x55 + round, NULL);
    check_model (&d, NULL);
    do_zero (&d, BS / 2, 7 * BS, NULL);
    check_model (&d, NULL);
  }
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 5), 7);
  flush (&d);
  reopen_check_free (&d, false, NULL);
}

/* The modify UUID: renewed at the first write and at flushes after
 * writes, as VirtualBox does; never the create UUID.
 */
static void
test_modify_uuid (void)
{
  struct disk d = { 0 };
  uint8_t create0[16], create[16], m0[16], m1[16], m2[16], m[16];

  disk_open (&d, make_image (4 * BS, VDI_TYPE_NORMAL, 5, NULL), false, true);
  file_bytes (d.path, OFF_UUID_CREATE, create0, 16);
  file_bytes (d.path, OFF_UUID_MODIFY, m0, 16);

  flush (&d);
  file_bytes (d.path, OFF_UUID_MODIFY, m, 16);
  CU_ASSERT (memcmp (m, m0, 16) == 0);          /* no write, no change */

  do_write (&d, 100, 100, 1, NULL);
  file_bytes (d.path, OFF_UUID_MODIFY, m1, 16);
  CU_ASSERT (memcmp (m1, m0, 16) != 0);         /* first write */
  do_write (&d, 300, 100, 2, NULL);
  do_zero (&d, 2 * BS, BS, NULL);
  file_bytes (d.path, OFF_UUID_MODIFY, m, 16);
  CU_ASSERT (memcmp (m, m1, 16) == 0);          /* later writes */

  flush (&d);
  file_bytes (d.path, OFF_UUID_MODIFY, m2, 16);
  CU_ASSERT (memcmp (m2, m1, 16) != 0);         /* flush after writes */
  flush (&d);
  file_bytes (d.path, OFF_UUID_MODIFY, m, 16);
  CU_ASSERT (memcmp (m, m2, 16) == 0);          /* flush, nothing new */

  file_bytes (d.path, OFF_UUID_CREATE, create, 16);
  CU_ASSERT (memcmp (create, create0, 16) == 0);
  ASSERT_NO_ERROR ();
  disk_free (&d);
}

/* Opened read-only: every change fails with EROFS, the file is
 * untouched.
 */
static void
test_read_only (void)
{
  struct disk d = { 0 };
  uint8_t buf[512] = { 1 }, before[1024], after[1024];
  char *path = make_image (4 * BS, VDI_TYPE_NORMAL, 6, NULL);

  CU_ASSERT_EQUAL_FATAL (file_size (path), sizeof before);
  file_bytes (path, 0, before, sizeof before);
  disk_open (&d, path, false, false);
  errno = 0;
  CU_ASSERT_EQUAL (vdi_chain_pwrite (d.chain, buf, 512, 0, 0, NULL), -1);
  CU_ASSERT_EQUAL (errno, EROFS);
  ASSERT_ONE_ERROR (path, "read-only");
  test_log_reset ();
  errno = 0;
  CU_ASSERT_EQUAL (vdi_chain_zero (d.chain, BS, 0, 0, NULL), -1);
  CU_ASSERT_EQUAL (errno, EROFS);
  test_log_reset ();
  flush (&d);
  CU_ASSERT_EQUAL_FATAL (file_size (path), sizeof after);
  file_bytes (path, 0, after, sizeof after);
  CU_ASSERT (memcmp (before, after, sizeof before) == 0);
  disk_free (&d);
}

/* Threads writing into the same unallocated blocks at once. */
#define THREADS 6
#define RACE_BLOCKS 16

struct racer {
  struct disk *d;
  unsigned index;
  pthread_barrier_t *barrier;
};

static void *
race (void *arg)
{
  struct racer *r = arg;
  uint8_t buf[1000];
  uint32_t b;
  void *ret = NULL;

  memset (buf, 0x10 + r->index, sizeof buf);
  for (b = 0; b < RACE_BLOCKS; ++b) {
    /* Thread i owns bytes [i * 2000, i * 2000 + 1000) of each block. */
    uint64_t offset = (uint64_t) b * BS + r->index * 2000 + (b % 7);

    /* On failure keep going, so the others are not left waiting. */
    pthread_barrier_wait (r->barrier);
    if (vdi_chain_pwrite (r->d->chain, buf, sizeof buf, offset, 0,
                          &below) == -1)
      ret = (void *) 1;
    memcpy (r->d->model + offset, buf, sizeof buf);
  }
  return ret;
}

static void
test_allocation_race (void)
{
  struct disk d = { 0 };
  pthread_barrier_t barrier;
  pthread_t threads[THREADS];
  struct racer racers[THREADS];
  uint64_t i;
  uint32_t b, seen = 0;
  unsigned t;

  disk_open (&d, make_image (RACE_BLOCKS * BS, VDI_TYPE_DIFF, 7, NULL),
             true, true);
  for (i = 0; i < d.size; ++i)
    d.model[i] = below_byte (i);
  pthread_barrier_init (&barrier, NULL, THREADS);
  for (t = 0; t < THREADS; ++t) {
    racers[t] = (struct racer) { &d, t, &barrier };
    assert (pthread_create (&threads[t], NULL, race, &racers[t]) == 0);
  }
  for (t = 0; t < THREADS; ++t) {
    void *ret;

    assert (pthread_join (threads[t], &ret) == 0);
    CU_ASSERT_PTR_NULL (ret);
  }
  pthread_barrier_destroy (&barrier);
  check_model (&d, &below);

  /* Each block got exactly one slot, and the counter says so. */
  flush (&d);
  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), RACE_BLOCKS);
  for (b = 0; b < RACE_BLOCKS; ++b) {
    uint32_t e = file_map_entry (d.path, b);

    CU_ASSERT_FATAL (e < RACE_BLOCKS);
    CU_ASSERT ((seen & (1u << e)) == 0);
    seen |= 1u << e;
  }
  reopen_check_free (&d, true, &below);
}

/* A process that dies after a flush and more writes: the image opens
 * and checks clean, shows what the flush wrote, and the slot the lost
 * allocation took is handed out again.
 */
static void
test_crash_before_flush (void)
{
  struct disk d = { 0 };
  uint8_t flushed[BS], lost[BS];
  uint64_t data_offset;
  pid_t pid;
  int status;

  d.path = make_image (4 * BS, VDI_TYPE_NORMAL, 9, NULL);
  memset (flushed, 0x11, sizeof flushed);
  memset (lost, 0x33, sizeof lost);
  pid = fork ();
  CU_ASSERT_FATAL (pid >= 0);
  if (pid == 0) {
    struct vdi_image *img = vdi_image_open (d.path, VDI_OPEN_WRITE);
    struct vdi_chain *chain = img ? vdi_chain_new (&img, 1) : NULL;

    if (chain == NULL ||
        vdi_chain_pwrite (chain, flushed, BS, 0, 0, NULL) == -1 ||
        vdi_chain_pwrite (chain, flushed, 100, 2 * BS + 50, 0, NULL) == -1 ||
        vdi_chain_flush (chain) == -1 ||
        vdi_chain_pwrite (chain, lost, BS, 1 * BS, 0, NULL) == -1 ||
        vdi_chain_zero (chain, BS, 3 * BS, 0, NULL) == -1)
      _exit (1);
    _exit (0);                  /* no flush, no close */
  }
  CU_ASSERT_FATAL (waitpid (pid, &status, 0) == pid);
  CU_ASSERT_FATAL (WIFEXITED (status) && WEXITSTATUS (status) == 0);

  CU_ASSERT_EQUAL (file_le32 (d.path, OFF_ALLOCATED), 2);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 1), FREE);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), FREE);
  disk_open (&d, d.path, false, true);
  CU_ASSERT_EQUAL (vdi_image_check (vdi_chain_image (d.chain, 0)), 0);
  memcpy (d.model, flushed, BS);
  memcpy (d.model + 2 * BS + 50, flushed, 100);
  check_model (&d, NULL);

  /* The lost allocation's slot (2) is the next one handed out. */
  data_offset = file_le32 (d.path, OFF_DATA);
  do_write (&d, 3 * BS, BS, 0x44, NULL);
  flush (&d);
  CU_ASSERT_EQUAL (file_map_entry (d.path, 3), 2);
  file_bytes (d.path, data_offset + 2 * BS, lost, BS);
  CU_ASSERT (memcmp (lost, d.model + 3 * BS, BS) == 0);
  check_model (&d, NULL);
  ASSERT_NO_ERROR ();
  disk_free (&d);
}

/* The image on disk, flushed and reopened, has exactly `used' slots
 * counted, all of them used, checks clean and shows the model.
 */
static void
check_counted (struct disk *d, uint32_t used, const struct vdi_below *b)
{
  const struct vdi_image *top;

  flush (d);
  CU_ASSERT_EQUAL (file_le32 (d->path, OFF_ALLOCATED), used);
  disk_close (d);
  disk_open (d, d->path, b != NULL, true);
  top = vdi_chain_image (d->chain, 0);
  CU_ASSERT_EQUAL (vdi_image_header (top)->blocks_allocated, used);
  CU_ASSERT_EQUAL (vdi_image_leaked_slots (top), 0);
  CU_ASSERT_EQUAL (vdi_image_check (top), 0);
  check_model (d, b);
  ASSERT_NO_ERROR ();
}

/* A dozen allocations that fail because the file may not grow
 * (RLIMIT_FSIZE: EFBIG, as a full disk gives ENOSPC) count nothing:
 * the image stays as valid as it was, and later allocations take the
 * slots in order.
 */
static void
test_failed_allocations (void)
{
  struct disk d = { 0 };
  struct rlimit old, limit;
  uint8_t buf[1000];
  unsigned i;

  disk_open (&d, make_image (16 * BS, VDI_TYPE_NORMAL, 11, NULL),
             false, true);
  do_write (&d, 3 * BS + 7, 100, 0x33, NULL);
  flush (&d);

  assert (getrlimit (RLIMIT_FSIZE, &old) == 0);
  limit = old;
  limit.rlim_cur = file_size (d.path);
  assert (signal (SIGXFSZ, SIG_IGN) != SIG_ERR);
  assert (setrlimit (RLIMIT_FSIZE, &limit) == 0);
  memset (buf, 0x77, sizeof buf);
  for (i = 4; i < 16; ++i) {
    test_log_reset ();
    errno = 0;
    CU_ASSERT_EQUAL (vdi_chain_pwrite (d.chain, buf, sizeof buf,
                                       i * BS + 10, 0, NULL), -1);
    CU_ASSERT_EQUAL (errno, EFBIG);
    ASSERT_ONE_ERROR (d.path, "writing block");
  }
  assert (setrlimit (RLIMIT_FSIZE, &old) == 0);
  test_log_reset ();
  /* A write into the allocated block still works meanwhile. */
  do_write (&d, 3 * BS + 500, 100, 0x34, NULL);
  check_counted (&d, 1, NULL);

  do_write (&d, 9 * BS, BS, 0x99, NULL);
  do_write (&d, 5 * BS + 1, 1, 0x55, NULL);
  check_counted (&d, 3, NULL);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 9), 1);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 5), 2);
  disk_free (&d);
}

/* What lies below, failing once on demand with EIO (reported by the
 * below, as nbdkit's next layer does): before failing it runs another
 * write (so that an allocation runs while another is in flight,
 * filling its slot), as another request would.
 */
static struct disk *nested_disk;
static uint64_t nested_offset;
static bool nested_fails, below_fails;
static const struct vdi_below failing_below;

static int
failing_below_pread (void *opaque, void *buf, uint32_t count,
                     uint64_t offset)
{
  uint8_t data[100];

  if (nested_disk) {
    struct disk *d = nested_disk;

    nested_disk = NULL;
    memset (data, 0x66, sizeof data);
    if (nested_fails) {
      below_fails = true;
      CU_ASSERT_EQUAL (vdi_chain_pwrite (d->chain, data, sizeof data,
                                         nested_offset, 0, &failing_below),
                       -1);
    }
    else {
      CU_ASSERT_EQUAL (vdi_chain_pwrite (d->chain, data, sizeof data,
                                         nested_offset, 0, &below), 0);
      memcpy (d->model + nested_offset, data, sizeof data);
    }
    below_fails = true;
  }
  if (below_fails) {
    below_fails = false;
    errno = EIO;
    return -1;
  }
  return below_pread (opaque, buf, count, offset);
}

static const struct vdi_below failing_below = { failing_below_pread, NULL };

/* One allocation fails while another runs: the slot of the failed one
 * is given back whether it was the last one counted (the other failed
 * too) or lay below the other's (taken by the next allocation).
 */
static void
test_failed_allocation_in_parallel (void)
{
  struct disk d = { 0 };
  uint8_t buf[100];
  uint64_t i;

  disk_open (&d, make_image (8 * BS, VDI_TYPE_DIFF, 12, NULL), true, true);
  for (i = 0; i < d.size; ++i)
    d.model[i] = below_byte (i);
  memset (buf, 0x11, sizeof buf);

  /* Block 1 (slot 0) fails after block 2 took slot 1 and filled it. */
  nested_disk = &d;
  nested_offset = 2 * BS + 5;
  nested_fails = false;
  errno = 0;
  CU_ASSERT_EQUAL (vdi_chain_pwrite (d.chain, buf, sizeof buf, 1 * BS + 5, 0,
                                     &failing_below), -1);
  CU_ASSERT_EQUAL (errno, EIO);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 2), 1);
  /* Slot 0 is counted, unused until the next allocation takes it. */
  do_write (&d, 3 * BS + 9, 100, 0x33, &below);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 3), 0);
  check_counted (&d, 2, &below);

  /* Block 4 (slot 2) fails after block 5 (slot 3) failed too: both
   * are given back.
   */
  nested_disk = &d;
  nested_offset = 5 * BS + 5;
  nested_fails = true;
  errno = 0;
  CU_ASSERT_EQUAL (vdi_chain_pwrite (d.chain, buf, sizeof buf, 4 * BS + 5, 0,
                                     &failing_below), -1);
  CU_ASSERT_EQUAL (errno, EIO);
  check_counted (&d, 2, &below);
  do_write (&d, 6 * BS + 1, 10, 0x66, &below);
  CU_ASSERT_EQUAL (vdi_image_map_entry (vdi_chain_image (d.chain, 0), 6), 2);
  check_counted (&d, 3, &below);
  disk_free (&d);
}

/* Allocating a block of 128 MiB takes a small fixed amount of memory,
 * not a buffer of the block's size: partial writes (one across the
 * edge of the pieces the slot is filled in) and zeroing into a layer
 * whose blocks are all unallocated, under an address space limit of
 * 64 MiB more than the process has.  The block reads as what lies
 * below with the writes on top.
 */
static void
test_large_block_memory (void)
{
  const uint32_t block_size = 128 * KiB * KiB;
  struct disk d = { 0 };
  struct vdi_header h;
  struct rlimit old, limit;
  uint32_t map[2] = { FREE, FREE };
  uint8_t buf[3000];
  uint64_t i;
  char *path;

  test_header_init (&h, 2 * (uint64_t) block_size, block_size, 13);
  h.type = VDI_TYPE_DIFF;
  test_uuid_make (&h.uuid_linkage, 113);
  path = test_write_image (&h, map, NULL, 0, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (path);
  disk_open (&d, path, true, true);
  for (i = 0; i < d.size; ++i)
    d.model[i] = below_byte (i);
  memset (buf, 0x42, sizeof buf);

  assert (getrlimit (RLIMIT_AS, &old) == 0);
  limit = old;
  limit.rlim_cur = test_vm_size () + 64 * KiB * KiB;
  assert (setrlimit (RLIMIT_AS, &limit) == 0);
  CU_ASSERT_EQUAL (vdi_chain_pwrite (d.chain, buf, sizeof buf,
                                     KiB * KiB - 1000, 0, &below), 0);
  CU_ASSERT_EQUAL (vdi_chain_zero (d.chain, 5000, block_size + 77, 0, &below),
                   0);
  assert (setrlimit (RLIMIT_AS, &old) == 0);
  memcpy (d.model + KiB * KiB - 1000, buf, sizeof buf);
  memset (d.model + block_size + 77, 0, 5000);
  check_model (&d, &below);
  ASSERT_NO_ERROR ();
  check_counted (&d, 2, &below);
  disk_free (&d);
}

/* The blocks that test_page_edges writes: at the first and last
 * entries of the pages that the map (1024 entries) and the lookup
 * table (512 units, a block each here) are kept in, and the last
 * block.  Even ones get 3000 bytes of 0x10 + their index from byte
 * 1000 on (the rest copied up from below), odd ones are zeroed.
 */
static const uint32_t edge_blocks[] = {
  0, 511, 512, 1023, 1024, 1535, 2047, 2048, 3076
};
#define NR_EDGE_BLOCKS (sizeof edge_blocks / sizeof edge_blocks[0])

/* What byte offset of that disk reads. */
static uint8_t
edge_byte (uint64_t offset)
{
  const uint32_t b = offset / BS, pos = offset % BS;
  size_t i;

  for (i = 0; i < NR_EDGE_BLOCKS; ++i)
    if (edge_blocks[i] == b) {
      if (i % 2 == 1)
        return 0;
      if (pos >= 1000 && pos < 4000)
        return 0x10 + i;
    }
  return below_byte (offset);
}

/* [offset, offset + len) of the chain reads as edge_byte says. */
static bool
edge_read_ok (struct vdi_chain *chain, uint64_t offset, uint32_t len)
{
  uint8_t *buf = malloc (len);
  uint32_t i;
  bool ok;

  assert (buf != NULL);
  ok = vdi_chain_pread (chain, buf, len, offset, &below) == 0;
  for (i = 0; ok && i < len; ++i)
    if (buf[i] != edge_byte (offset + i)) {
      fprintf (stderr, "byte %" PRIu64 " is 0x%02x, want 0x%02x\n",
               offset + i, buf[i], edge_byte (offset + i));
      ok = false;
    }
  free (buf);
  return ok;
}

static int
check_edge_extent (void *opaque, uint64_t offset, uint64_t length,
                   enum vdi_extent_type type)
{
  uint64_t *next = opaque;
  uint64_t o;

  CU_ASSERT_EQUAL (offset, *next);
  for (o = offset; o < offset + length; o += BS) {
    enum vdi_extent_type want = VDI_EXTENT_BELOW;
    size_t i;

    for (i = 0; i < NR_EDGE_BLOCKS; ++i)
      if (edge_blocks[i] == o / BS)
        want = i % 2 ? VDI_EXTENT_ZERO : VDI_EXTENT_DATA;
    CU_ASSERT_EQUAL (type, want);
  }
  *next = offset + length;
  return 0;
}

/* Around every block written, a read across a whole page of blocks
 * that hold nothing, and the extents of the whole disk.
 */
static void
check_edges (struct vdi_chain *chain, uint64_t size)
{
  uint64_t next = 0;
  size_t i;

  for (i = 0; i < NR_EDGE_BLOCKS; ++i) {
    const uint64_t b = edge_blocks[i];
    const uint64_t lo = b > 0 ? (b - 1) * BS : 0;
    const uint64_t hi = (b + 2) * BS < size ? (b + 2) * BS : size;

    CU_ASSERT_TRUE (edge_read_ok (chain, lo, hi - lo));
  }
  CU_ASSERT_TRUE (edge_read_ok (chain, 2560 * BS - 7, 514 * BS));
  CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, size, false,
                                      check_edge_extent, &next), 0);
  CU_ASSERT_EQUAL (next, size);
}

/* A layer of 3077 blocks (a multiple of neither page) with nothing
 * allocated: every page of its map and of its table is shared.
 * Writes at the edges of those pages give them pages of their own;
 * the blocks around them still read what lies below, before and after
 * a flush and once opened again, and the map entries reach the file.
 */
static void
test_page_edges (void)
{
  const uint64_t size = 3077 * (uint64_t) BS;
  char *path = make_image (size, VDI_TYPE_DIFF, 21, NULL);
  struct vdi_image *img;
  struct vdi_chain *chain;
  uint8_t buf[3000];
  uint32_t slot = 0;
  size_t i;

  CU_ASSERT_PTR_NOT_NULL_FATAL (path);
  img = vdi_image_open (path, VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  chain = vdi_layer_new (img);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  for (i = 0; i < NR_EDGE_BLOCKS; ++i) {
    const uint64_t start = edge_blocks[i] * (uint64_t) BS;

    memset (buf, 0x10 + i, sizeof buf);
    if (i % 2 == 0) {
      CU_ASSERT_EQUAL (vdi_chain_pwrite (chain, buf, sizeof buf, start + 1000,
                                         0, &below), 0);
    }
    else {
      CU_ASSERT_EQUAL (vdi_chain_zero (chain, BS, start, 0, &below), 0);
    }
  }
  check_edges (chain, size);
  CU_ASSERT_EQUAL (vdi_chain_flush (chain), 0);
  for (i = 0; i < NR_EDGE_BLOCKS; ++i)
    CU_ASSERT_EQUAL (file_map_entry (path, edge_blocks[i]),
                     i % 2 ? ZERO : slot++);
  CU_ASSERT_EQUAL (file_map_entry (path, 513), FREE);
  CU_ASSERT_EQUAL (file_map_entry (path, 3075), FREE);
  check_edges (chain, size);
  vdi_chain_free (chain);

  img = vdi_image_open (path, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  chain = vdi_layer_new (img);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  check_edges (chain, size);
  vdi_chain_free (chain);
  ASSERT_NO_ERROR ();
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-write");

  ADD_TEST (s, test_allocation_order);
  ADD_TEST (s, test_reuse_unused_slot);
  ADD_TEST (s, test_zero_base);
  ADD_TEST (s, test_layer_copy_up);
  ADD_TEST (s, test_fixed);
  ADD_TEST (s, test_allocated_runs);
  ADD_TEST (s, test_modify_uuid);
  ADD_TEST (s, test_read_only);
  ADD_TEST (s, test_allocation_race);
  ADD_TEST (s, test_crash_before_flush);
  ADD_TEST (s, test_failed_allocations);
  ADD_TEST (s, test_failed_allocation_in_parallel);
  ADD_TEST (s, test_large_block_memory);
  ADD_TEST (s, test_page_edges);
  return test_run ();
}
