/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of vdi_compact (vdi-compact.c), against a model: random
 * images whose blocks are FREE, ZERO, data, all zeros or zeros but
 * for one byte, in slots shuffled through the file with leaked slots
 * among them and extra bytes before each block, alone or as the
 * differencing child of a parent with data.  After compaction the
 * leaf reads the same, zero blocks are ZERO (never FREE), the data
 * slots are 0, 1, ... with nothing after them, each block with its
 * own extra bytes, and a second
 * compaction writes nothing.  Also the refusals.
 *
 * Images live in a folder tree of test-tree.h: the base in
 * m/base.vdi, a child in m/Snapshots/child.vdi.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>
#include <fcntl.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "minmax.h"

#include "libvdi.h"
#include "vdi-io.h"
#include "test-common.h"
#include "test-tree.h"

#define BASE "m/base.vdi"
#define CHILD "m/Snapshots/child.vdi"
#define MAX_BLOCKS 24

static const struct vdi_parent_search no_dirs = { .registry = NULL };

/* What a block of the model is before compaction. */
enum kind {
  FREE,                         /* FREE entry */
  ZERO,                         /* ZERO entry */
  DATA,                         /* a slot of random bytes */
  ZEROS,                        /* a slot of zeros: must become ZERO */
  PARTIAL,                      /* a slot of zeros but one byte: stays */
};

struct model {
  struct img im;                /* header (its pattern unused) */
  char pattern[MAX_BLOCKS + 1];  /* for img_init */
  enum kind kind[MAX_BLOCKS];
  uint32_t kept;                /* blocks that must keep a slot */
};

/* The extra bytes of the slot of block b are all (uint8_t) (b + 1),
 * so that they show whether they moved with their block.
 */
static void
mark_extra (const char *path, const struct model *m, const uint32_t *map)
{
  const struct vdi_header *h = &m->im.h;
  const uint64_t slot_size = (uint64_t) h->block_extra + h->block_size;
  uint8_t *extra = malloc (h->block_extra + 1);
  int fd = open (path, O_WRONLY);
  uint32_t b;

  assert (extra != NULL && fd >= 0);
  for (b = 0; b < h->blocks; ++b) {
    if (m->kind[b] < DATA)
      continue;
    memset (extra, b + 1, h->block_extra);
    CU_ASSERT_EQUAL_FATAL (vdi_full_pwrite (fd, extra, h->block_extra,
                                            h->data_offset +
                                            map[b] * slot_size), 0);
  }
  close (fd);
  free (extra);
}

/* Write the model's image at top_dir/rel: the allocated blocks in
 * shuffled slots, with up to 3 leaked slots (as many as fit) of random bytes among
 * them.
 */
static void
model_write (struct model *m, const char *rel)
{
  const struct vdi_header *h = &m->im.h;
  uint32_t map[MAX_BLOCKS], slot_of[MAX_BLOCKS];
  uint32_t b, i, nslots = 0;
  uint8_t *slots;
  char *tmp;

  m->kept = 0;
  for (b = 0; b < h->blocks; ++b) {
    if (m->kind[b] >= DATA)
      nslots++;
    if (m->kind[b] == DATA || m->kind[b] == PARTIAL)
      m->kept++;
  }
  /* No more slots than blocks, or the image would not open. */
  nslots += test_random_below (MIN (h->blocks - nslots, UINT32_C (3)) + 1);
  /* A random permutation of the slots; the last leaked ones are used
   * by no entry.
   */
  for (i = 0; i < nslots; ++i) {
    uint32_t j = test_random_below (i + 1);

    slot_of[i] = slot_of[j];
    slot_of[j] = i;
  }
  slots = malloc ((size_t) nslots * h->block_size + 1);
  assert (slots != NULL);
  test_random_fill (slots, (size_t) nslots * h->block_size);
  i = 0;
  for (b = 0; b < h->blocks; ++b) {
    uint8_t *data;

    switch (m->kind[b]) {
    case FREE: map[b] = VDI_BLOCK_FREE; continue;
    case ZERO: map[b] = VDI_BLOCK_ZERO; continue;
    default: break;
    }
    map[b] = slot_of[i++];
    data = slots + (size_t) map[b] * h->block_size;
    if (m->kind[b] == ZEROS || m->kind[b] == PARTIAL)
      memset (data, 0, h->block_size);
    if (m->kind[b] == PARTIAL)
      data[test_random_below (h->block_size)] = 1 + test_random_below (255);
  }
  m->im.h.blocks_allocated = nslots;

  mkdirs (strcmp (rel, BASE) == 0 ? "m" : "m/Snapshots");
  tmp = test_write_image (h, map, slots, nslots, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (tmp);
  mark_extra (tmp, m, map);
  CU_ASSERT_EQUAL_FATAL (rename (tmp, at (rel)), 0);
  free (slots);
}

/* A random model of blocks blocks of block_size bytes, with extra
 * bytes before each block half of the time.
 */
static void
model_random (struct model *m, unsigned n, uint32_t block_size,
              uint32_t blocks)
{
  uint32_t b;

  memset (m->pattern, 'F', blocks);
  m->pattern[blocks] = '\0';
  img_init (&m->im, n, block_size, blocks, m->pattern);
  if (test_random_below (2))
    m->im.h.block_extra = 512 << test_random_below (3);
  for (b = 0; b < blocks; ++b)
    m->kind[b] = test_random_below (PARTIAL + 1);
}

static uint8_t *
read_leaf (const char *rel, uint64_t size)
{
  struct vdi_chain *chain = vdi_chain_open (at (rel), 0, &no_dirs);
  uint8_t *buf = malloc (size);

  assert (buf != NULL);
  if (chain == NULL)
    fprintf (stderr, "%s\n", test_log.last_error);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_pread (chain, buf, size, 0, NULL), 0);
  vdi_chain_free (chain);
  return buf;
}

/* The compacted image at top_dir/rel against its model. */
static void
assert_compacted (const struct model *m, const char *rel)
{
  struct vdi_image *img = open_img (rel);
  const struct vdi_header *h = vdi_image_header (img);
  const uint64_t slot_size = (uint64_t) h->block_extra + h->block_size;
  bool used[MAX_BLOCKS] = { false };
  size_t len;
  uint8_t *bytes = slurp (rel, &len);
  uint32_t b;
  uint64_t i;

  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  CU_ASSERT_EQUAL (h->blocks_allocated, m->kept);
  CU_ASSERT_FATAL (len >= h->data_offset + m->kept * slot_size);
  CU_ASSERT (vdi_uuid_equal (&h->uuid_modify, &m->im.h.uuid_modify));
  for (b = 0; b < h->blocks; ++b) {
    const uint32_t entry = vdi_image_map_entry (img, b);

    switch (m->kind[b]) {
    case FREE:
      CU_ASSERT_EQUAL (entry, VDI_BLOCK_FREE);
      break;
    case ZERO: case ZEROS:
      CU_ASSERT_EQUAL (entry, VDI_BLOCK_ZERO);
      break;
    case DATA: case PARTIAL:
      CU_ASSERT_FATAL (entry < m->kept);
      CU_ASSERT (!used[entry]);
      used[entry] = true;
      for (i = 0; i < h->block_extra; ++i)
        CU_ASSERT_EQUAL_FATAL (bytes[h->data_offset + entry * slot_size + i],
                               b + 1);
      break;
    }
  }
  /* Nothing after the last slot kept. */
  CU_ASSERT_EQUAL (len, h->data_offset + m->kept * slot_size);
  vdi_image_close (img);
  free (bytes);
}

/* Compact top_dir/rel: no error, and the leaf reads the same. */
static void
compact_and_compare (const char *rel, const char *leaf, uint64_t size)
{
  uint8_t *before = read_leaf (leaf, size), *after;

  CU_ASSERT_EQUAL (vdi_compact (at (rel), NULL, NULL), 0);
  ASSERT_NO_ERROR ();
  after = read_leaf (leaf, size);
  CU_ASSERT (memcmp (before, after, size) == 0);
  CU_ASSERT_EQUAL (test_log.warnings, 0);
  free (before);
  free (after);
}

/* A second compaction writes nothing. */
static void
assert_compact_again_same (const char *rel)
{
  size_t len;
  uint8_t *bytes = slurp (rel, &len);

  CU_ASSERT_EQUAL (vdi_compact (at (rel), NULL, NULL), 0);
  ASSERT_NO_ERROR ();
  assert_same_file (rel, bytes, len);
  free (bytes);
}

static void
test_compact_random_base (void)
{
  static const uint32_t block_sizes[] = { 128 * KiB, 256 * KiB, 512 * KiB };
  unsigned i;

  for (i = 0; i < 60; ++i) {
    const uint32_t bs = block_sizes[test_random_below (3)];
    const uint32_t blocks = 1 + test_random_below (MAX_BLOCKS);
    struct model m;

    test_log_reset ();
    dir_make ();
    model_random (&m, 1, bs, blocks);
    model_write (&m, BASE);
    compact_and_compare (BASE, BASE, (uint64_t) bs * blocks);
    assert_compacted (&m, BASE);
    assert_compact_again_same (BASE);
    dir_remove ();
  }
}

/* The child over a parent with data everywhere: its zero blocks must
 * stay ZERO, not show the parent.  Then the parent is compacted under
 * its child, which must not go stale.
 */
static void
test_compact_random_child (void)
{
  unsigned i;

  for (i = 0; i < 40; ++i) {
    const uint32_t blocks = 1 + test_random_below (MAX_BLOCKS);
    const uint64_t size = (uint64_t) blocks * BS;
    struct model parent, child;
    uint32_t b;

    test_log_reset ();
    dir_make ();
    model_random (&parent, 1, BS, blocks);
    for (b = 0; b < blocks; ++b)
      if (test_random_below (4))
        parent.kind[b] = DATA;
    model_write (&parent, BASE);
    model_random (&child, 2, BS, blocks);
    img_child (&child.im, 2, &parent.im, child.pattern);
    child.im.h.block_extra = parent.im.h.block_extra;
    model_write (&child, CHILD);

    compact_and_compare (CHILD, CHILD, size);
    assert_compacted (&child, CHILD);
    assert_compact_again_same (CHILD);
    compact_and_compare (BASE, CHILD, size);
    assert_compacted (&parent, BASE);
    dir_remove ();
  }
}

/* A fixed image keeps every slot: refused, nothing written. */
static void
test_compact_fixed (void)
{
  struct img fixed;
  size_t len;
  uint8_t *bytes;

  dir_make ();
  img_base (&fixed, 1, 3, "DDD");
  fixed.h.type = VDI_TYPE_FIXED;
  img_write (&fixed, BASE);
  bytes = slurp (BASE, &len);
  CU_ASSERT_EQUAL (vdi_compact (at (BASE), NULL, NULL), -1);
  ASSERT_ONE_ERROR (at (BASE), "fixed");
  assert_same_file (BASE, bytes, len);
  free (bytes);
  dir_remove ();
}

/* An image open elsewhere, for reading or writing (another open file
 * description of this process, which OFD locks treat alike): refused,
 * nothing written.
 */
static void
test_compact_in_use (void)
{
  static const unsigned flags[] = { 0, VDI_OPEN_WRITE };
  unsigned i;

  for (i = 0; i < 2; ++i) {
    struct img base;
    struct vdi_image *held;
    size_t len;
    uint8_t *bytes;

    test_log_reset ();
    dir_make ();
    img_base (&base, 1, 3, "DZD");
    img_write (&base, BASE);
    bytes = slurp (BASE, &len);
    held = vdi_image_open (at (BASE), flags[i]);
    CU_ASSERT_PTR_NOT_NULL_FATAL (held);
    CU_ASSERT_EQUAL (vdi_compact (at (BASE), NULL, NULL), -1);
    ASSERT_ONE_ERROR (at (BASE), "in use");
    vdi_image_close (held);
    assert_same_file (BASE, bytes, len);
    free (bytes);
    dir_remove ();
  }
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-compact");

  ADD_TEST (s, test_compact_random_base);
  ADD_TEST (s, test_compact_random_child);
  ADD_TEST (s, test_compact_fixed);
  ADD_TEST (s, test_compact_in_use);
  return test_run ();
}
