/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of vdi_resize (vdi-resize.c): growing with the map
 * fitting before the data and running into it, shrinking refused and
 * allowed, a partial last block, differencing images, fixed images,
 * the size limits, an image in use.  Every resized image must read
 * what it read before, zeros past the old end, and check clean.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "minmax.h"
#include "test-common.h"

#define MiB (UINT64_C (1024) * 1024)

/* A dynamic image of size bytes with 1 MiB blocks (the map at 0x200,
 * the data right after it), every block holding random data in a
 * shuffled slot but those in free_blocks, which are FREE.
 */
static char *
make_image (uint64_t size, uint32_t free_blocks)
{
  struct vdi_header h;
  uint32_t *map;
  uint8_t *data;
  uint32_t b, slots = 0, i;
  char *filename;

  test_header_init (&h, size, MiB, 1);
  map = malloc (4 * h.blocks);
  data = malloc (h.blocks * MiB);
  CU_ASSERT_PTR_NOT_NULL_FATAL (map);
  CU_ASSERT_PTR_NOT_NULL_FATAL (data);
  for (b = 0; b < h.blocks; ++b)
    map[b] = b < free_blocks ? VDI_BLOCK_FREE : slots++;
  /* Shuffle the slots among the allocated blocks. */
  for (b = h.blocks - 1; b > free_blocks; --b) {
    uint32_t t;

    i = free_blocks + test_random_below (b - free_blocks + 1);
    t = map[b];
    map[b] = map[i];
    map[i] = t;
  }
  test_random_fill (data, slots * MiB);
  h.blocks_allocated = slots;
  filename = test_write_image (&h, map, data, slots, 0);
  free (map);
  free (data);
  return filename;
}

/* What the image reads: its first len bytes from offset (clipped to
 * its size), after a check; *size gets its virtual size.
 */
static uint8_t *
read_range (const char *filename, uint64_t offset, uint64_t len,
            uint64_t *size)
{
  struct vdi_image *img = vdi_image_open (filename, 0);
  struct vdi_chain *chain;
  uint8_t *buf;
  uint64_t off, n;

  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  chain = vdi_chain_new (&img, 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  *size = vdi_chain_size (chain);
  len = offset < *size ? MIN (len, *size - offset) : 0;
  buf = malloc (len + 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  for (off = 0; off < len; off += n) {
    n = MIN (MiB, len - off);
    CU_ASSERT_EQUAL (vdi_chain_pread (chain, buf + off, n, offset + off,
                                      NULL), 0);
  }
  vdi_chain_free (chain);
  return buf;
}

static uint8_t *
read_all (const char *filename, uint64_t *size)
{
  return read_range (filename, 0, UINT64_MAX, size);
}

/* The whole file, to see that a refused resize changed nothing. */
static uint8_t *
slurp (const char *filename, size_t *len)
{
  FILE *fp = fopen (filename, "r");
  uint8_t *buf;

  CU_ASSERT_PTR_NOT_NULL_FATAL (fp);
  fseek (fp, 0, SEEK_END);
  *len = ftell (fp);
  rewind (fp);
  buf = malloc (*len);
  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  CU_ASSERT_EQUAL (fread (buf, 1, *len, fp), *len);
  fclose (fp);
  return buf;
}

static bool
all_zero (const uint8_t *buf, uint64_t len)
{
  uint64_t i;

  for (i = 0; i < len; ++i)
    if (buf[i] != 0)
      return false;
  return true;
}

/* Grow filename to new_size: it reads what it read (the data of the
 * test images lies in the first 64 MiB), then zeros (the first and
 * last 8 MiB past the old end are looked at).
 */
static void
grow_and_compare (const char *filename, uint64_t new_size)
{
  const uint64_t look = 8 * MiB;
  uint64_t old_size, size;
  uint8_t *before = read_range (filename, 0, 64 * MiB, &old_size);
  uint8_t *after, *past;

  CU_ASSERT_EQUAL (vdi_resize (filename, new_size, false), 0);
  ASSERT_NO_ERROR ();
  after = read_range (filename, 0, 64 * MiB, &size);
  CU_ASSERT_EQUAL (size, new_size);
  CU_ASSERT (memcmp (before, after, MIN (old_size, 64 * MiB)) == 0);
  past = read_range (filename, old_size, look, &size);
  CU_ASSERT (all_zero (past, MIN (look, size - old_size)));
  free (past);
  past = read_range (filename, size - MIN (look, size - old_size), look,
                     &size);
  CU_ASSERT (all_zero (past, MIN (look, size - old_size)));
  free (past);
  free (before);
  free (after);
}

static uint32_t
header_field (const char *filename, int which)
{
  struct vdi_image *img = vdi_image_open (filename, VDI_OPEN_HEADER_ONLY);
  const struct vdi_header *h;
  uint32_t v;

  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  h = vdi_image_header (img);
  v = which == 0 ? h->blocks_offset : which == 1 ? h->data_offset
    : h->blocks_allocated;
  vdi_image_close (img);
  return v;
}

/* The new map fits before the data: nothing moves. */
static void
test_resize_grow_fits (void)
{
  char *filename = make_image (8 * MiB, 2);
  const uint32_t data_offset = header_field (filename, 1);

  grow_and_compare (filename, 100 * MiB); /* 100 entries: 400 bytes */
  CU_ASSERT_EQUAL (header_field (filename, 1), data_offset);
}

/* The new map runs into the data: the first slots are emptied and the
 * map moves there.  With every block allocated, and with fewer blocks
 * than slots to empty.
 */
static void
test_resize_grow_moves (void)
{
  static const struct { uint64_t size; uint32_t free_blocks; } cases[] = {
    { 8 * MiB, 0 }, { 8 * MiB, 3 }, { 4 * MiB, 1 },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    char *filename = make_image (cases[i].size, cases[i].free_blocks);
    const uint32_t data_offset = header_field (filename, 1);
    const uint32_t allocated = header_field (filename, 2);

    /* 5000 entries, 20000 bytes: a slot of 1 MiB holds them. */
    grow_and_compare (filename, 5000 * MiB);
    CU_ASSERT_EQUAL (header_field (filename, 0), data_offset);
    CU_ASSERT_EQUAL (header_field (filename, 1), data_offset + MiB);
    CU_ASSERT_EQUAL (header_field (filename, 2), allocated);
    /* Once more: the map moves again, behind the first. */
    grow_and_compare (filename, 400000 * MiB);
    test_tmp_cleanup ();
  }
}

/* Shrinking: only with the flag, only where no data is past the new
 * end; a refusal changes nothing in the file.
 */
static void
test_resize_shrink (void)
{
  char *filename = make_image (16 * MiB, 0);
  uint8_t *file_before, *file_after;
  size_t len_before, len_after;
  uint64_t size;
  uint8_t *buf;

  file_before = slurp (filename, &len_before);
  CU_ASSERT_EQUAL (vdi_resize (filename, 8 * MiB, false), -1);
  ASSERT_ONE_ERROR (filename, "--shrink");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_resize (filename, 8 * MiB, true), -1);
  ASSERT_ONE_ERROR (filename, "data past");
  file_after = slurp (filename, &len_after);
  CU_ASSERT_EQUAL (len_before, len_after);
  CU_ASSERT (memcmp (file_before, file_after, len_before) == 0);
  free (file_before);
  free (file_after);

  /* The last 6 blocks FREE: down to 10 MiB is allowed, and growing
   * back reads zeros there.
   */
  test_tmp_cleanup ();
  test_log_reset ();
  filename = make_image (16 * MiB, 0);
  {
    struct vdi_header h;
    uint32_t map[16], b;

    test_header_init (&h, 16 * MiB, MiB, 2);
    for (b = 0; b < 16; ++b)
      map[b] = b < 10 ? b : VDI_BLOCK_FREE;
    map[12] = VDI_BLOCK_ZERO;
    h.blocks_allocated = 10;
    filename = test_write_image (&h, map, NULL, 10, 0);
  }
  CU_ASSERT_EQUAL (vdi_resize (filename, 9 * MiB, true), -1);
  ASSERT_ONE_ERROR (filename, "data past");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_resize (filename, 10 * MiB, true), 0);
  ASSERT_NO_ERROR ();
  buf = read_all (filename, &size);
  CU_ASSERT_EQUAL (size, 10 * MiB);
  free (buf);
  grow_and_compare (filename, 16 * MiB);
}

/* A partial last block: kept whole, as VirtualBox keeps it; bytes past
 * a shrink's end are zeros once the image grows again.
 */
static void
test_resize_partial_block (void)
{
  char *filename = make_image (4 * MiB, 0);
  uint64_t size;
  uint8_t *buf;

  /* The tail of block 3 holds data: a shrink into it is refused. */
  CU_ASSERT_EQUAL (vdi_resize (filename, 3 * MiB + 512, true), -1);
  ASSERT_ONE_ERROR (filename, "data past");
  test_log_reset ();
  grow_and_compare (filename, 5 * MiB + 4096);
  CU_ASSERT_EQUAL (header_field (filename, 2), 4);
  grow_and_compare (filename, 7 * MiB);
  buf = read_all (filename, &size);
  CU_ASSERT_EQUAL (size, 7 * MiB);
  free (buf);
}

/* An allocated partial last block: the bytes past the old end are
 * hidden, and growing must show zeros there, whether they already
 * are zeros or hold data (a shrink, or another tool, left them).
 */
static void
test_resize_partial_tail (void)
{
  const uint64_t size = 3 * MiB + 4096;
  struct vdi_header h;
  uint32_t map[4] = { 2, 0, 3, 1 };
  uint8_t *data = malloc (4 * MiB);
  int tail_zero;

  CU_ASSERT_PTR_NOT_NULL_FATAL (data);
  for (tail_zero = 0; tail_zero <= 1; ++tail_zero) {
    char *filename;

    test_header_init (&h, size, MiB, 4);
    h.blocks_allocated = 4;
    test_random_fill (data, 4 * MiB);
    /* Block 3 is in slot 1: its hidden tail starts 4096 bytes in. */
    if (tail_zero)
      memset (data + MiB + 4096, 0, MiB - 4096);
    filename = test_write_image (&h, map, data, 4, 0);
    grow_and_compare (filename, 6 * MiB);
    CU_ASSERT_EQUAL (header_field (filename, 2), 4);
    test_tmp_cleanup ();
  }
  free (data);
}

/* A differencing image of child_size bytes over a parent of 16 MiB
 * with data in every block; the child's map is child_map.  Both are
 * written to temporary files, *parent_name gets the parent's.
 */
static char *
make_diff (uint64_t child_size, const uint32_t *child_map,
           uint32_t child_slots, char **parent_name)
{
  struct vdi_header ph, ch;
  uint32_t pmap[16], b;

  test_header_init (&ph, 16 * MiB, MiB, 6);
  for (b = 0; b < 16; ++b)
    pmap[b] = b;
  ph.blocks_allocated = 16;
  *parent_name = test_write_image (&ph, pmap, NULL, 16, 0);
  test_header_init (&ch, child_size, MiB, 7);
  ch.type = VDI_TYPE_DIFF;
  ch.uuid_linkage = ph.uuid_create;
  ch.blocks_allocated = child_slots;
  return test_write_image (&ch, child_map, NULL, child_slots, 0);
}

/* Read len bytes from offset through the chain child over parent. */
static uint8_t *
read_chain (const char *child, const char *parent, uint64_t offset,
            uint64_t len)
{
  struct vdi_image *images[2];
  struct vdi_chain *chain;
  uint8_t *buf = malloc (len);

  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  images[0] = vdi_image_open (child, 0);
  images[1] = vdi_image_open (parent, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[0]);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[1]);
  CU_ASSERT_EQUAL (vdi_image_check (images[0]), 0);
  chain = vdi_chain_new (images, 2);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT (offset + len <= vdi_chain_size (chain));
  CU_ASSERT_EQUAL (vdi_chain_pread (chain, buf, len, offset, NULL), 0);
  vdi_chain_free (chain);
  return buf;
}

/* A differencing image over a larger parent with data past the
 * child's end: grown, the child reads zeros there, not the parent's
 * data, with the map fitting and with the map moving.
 */
static void
test_resize_diff_grow (void)
{
  static const uint64_t sizes[] = { 16 * MiB, 5000 * MiB };
  const uint32_t map[8] = {
    VDI_BLOCK_FREE, 0, VDI_BLOCK_FREE, VDI_BLOCK_ZERO, 1,
    VDI_BLOCK_FREE, VDI_BLOCK_FREE, VDI_BLOCK_FREE,
  };
  size_t i;

  for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
    char *parent;
    char *child = make_diff (8 * MiB, map, 2, &parent);
    uint8_t *before = read_chain (child, parent, 0, 8 * MiB);
    uint8_t *after, *past;

    CU_ASSERT_EQUAL (vdi_resize (child, sizes[i], false), 0);
    ASSERT_NO_ERROR ();
    after = read_chain (child, parent, 0, 8 * MiB);
    CU_ASSERT (memcmp (before, after, 8 * MiB) == 0);
    past = read_chain (child, parent, 8 * MiB, 8 * MiB);
    CU_ASSERT (all_zero (past, 8 * MiB));
    free (before);
    free (after);
    free (past);
    test_tmp_cleanup ();
  }
}

/* A differencing image: FREE blocks show the parent's data, so only
 * ZERO blocks past the new end can be dropped; a partial FREE last
 * block cannot grow (its tail would show the parent's data).
 */
static void
test_resize_diff_refused (void)
{
  const uint32_t map[8] = {
    0, VDI_BLOCK_FREE, 1, VDI_BLOCK_ZERO,
    VDI_BLOCK_ZERO, VDI_BLOCK_FREE, VDI_BLOCK_ZERO, VDI_BLOCK_ZERO,
  };
  const uint32_t partial_map[2] = { 0, VDI_BLOCK_FREE };
  char *parent, *child;
  uint8_t *file_before, *file_after;
  size_t len_before, len_after;

  child = make_diff (8 * MiB, map, 2, &parent);
  CU_ASSERT_EQUAL (vdi_resize (child, 5 * MiB, true), -1);
  ASSERT_ONE_ERROR (child, "only ZERO blocks");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_resize (child, 6 * MiB, true), 0);
  ASSERT_NO_ERROR ();
  test_tmp_cleanup ();

  child = make_diff (MiB + 4096, partial_map, 1, &parent);
  file_before = slurp (child, &len_before);
  CU_ASSERT_EQUAL (vdi_resize (child, 4 * MiB, false), -1);
  ASSERT_ONE_ERROR (child, "the last block is partial");
  file_after = slurp (child, &len_after);
  CU_ASSERT_EQUAL (len_before, len_after);
  CU_ASSERT (memcmp (file_before, file_after, len_before) == 0);
  free (file_before);
  free (file_after);
}

static void
test_resize_fixed (void)
{
  struct vdi_header h;
  uint32_t map[4] = { 0, 1, 2, 3 };
  char *filename;

  test_header_init (&h, 4 * MiB, MiB, 3);
  h.type = VDI_TYPE_FIXED;
  h.blocks_allocated = 4;
  filename = test_write_image (&h, map, NULL, 4, 0);
  CU_ASSERT_EQUAL (vdi_resize (filename, 8 * MiB, false), -1);
  ASSERT_ONE_ERROR (filename, "fixed image");
}

/* Sizes at VirtualBox's limits and the layout's. */
static void
test_resize_limits (void)
{
  char *filename = make_image (4 * MiB, 4);
  const uint64_t max = vdi_header_max_disk_size (MiB);

  CU_ASSERT_EQUAL (vdi_resize (filename, 8 * MiB + 1, false), -1);
  ASSERT_ONE_ERROR (filename, "multiple of 512");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_resize (filename, MiB - 512, true), -1);
  ASSERT_ONE_ERROR (filename, "smaller than 1 MiB");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_resize (filename, max + 512, false), -1);
  ASSERT_ONE_ERROR (filename, "larger than the largest disk");
  test_log_reset ();
  /* No data: the data area just moves on; then down to 1 MiB. */
  CU_ASSERT_EQUAL (vdi_resize (filename, max / 1024, false), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (vdi_resize (filename, MiB, true), 0);
  ASSERT_NO_ERROR ();
}

static void
test_resize_in_use (void)
{
  char *filename = make_image (4 * MiB, 0);
  struct vdi_image *held = vdi_image_open (filename, 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (held);
  CU_ASSERT_EQUAL (vdi_resize (filename, 8 * MiB, false), -1);
  ASSERT_ONE_ERROR (filename, "in use");
  vdi_image_close (held);
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-resize");

  ADD_TEST (s, test_resize_grow_fits);
  ADD_TEST (s, test_resize_grow_moves);
  ADD_TEST (s, test_resize_shrink);
  ADD_TEST (s, test_resize_partial_block);
  ADD_TEST (s, test_resize_partial_tail);
  ADD_TEST (s, test_resize_diff_grow);
  ADD_TEST (s, test_resize_diff_refused);
  ADD_TEST (s, test_resize_fixed);
  ADD_TEST (s, test_resize_limits);
  ADD_TEST (s, test_resize_in_use);
  return test_run ();
}
