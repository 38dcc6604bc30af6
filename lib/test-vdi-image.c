/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of images and chains (vdi-image.c, vdi-chain.c) on
 * images written to temporary files.
 *
 * Each image is described in memory (struct layer: header, block map
 * and slot contents).  The reads and extents of a chain are compared
 * with a model computed here from those descriptions at sector
 * granularity, following vdi-format.md section 3: a FREE block asks
 * the parent, ZERO or data stops the walk, FREE all the way down and
 * anything past a parent's end read as zeros.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <limits.h>
#include <string.h>
#include <assert.h>
#include <fcntl.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "test-common.h"

#define KiB 1024
#define MiB (1024 * 1024)
#define SECTOR 512

#define FREE VDI_BLOCK_FREE
#define ZERO VDI_BLOCK_ZERO

/* One image of a test chain. */
struct layer {
  struct vdi_header h;
  uint32_t *map;                /* h.blocks entries, host order */
  uint8_t *slots;               /* nslots * block_size bytes */
  uint32_t nslots;
  char *path;                   /* once written; owned by test-common */
};

static void
layer_init (struct layer *l, uint64_t disk_size, uint32_t block_size,
            unsigned seed)
{
  uint32_t i;

  memset (l, 0, sizeof *l);
  test_header_init (&l->h, disk_size, block_size, seed);
  l->map = malloc (l->h.blocks * sizeof *l->map);
  assert (l->map != NULL);
  for (i = 0; i < l->h.blocks; ++i)
    l->map[i] = FREE;
}

static void
layer_free (struct layer *l)
{
  free (l->map);
  free (l->slots);
  l->map = NULL;
  l->slots = NULL;
}

/* Make nslots slots of random data. */
static void
layer_make_slots (struct layer *l, uint32_t nslots)
{
  free (l->slots);
  l->nslots = nslots;
  l->slots = malloc ((size_t) nslots * l->h.block_size + 1);
  assert (l->slots != NULL);
  test_random_fill (l->slots, (size_t) nslots * l->h.block_size);
  l->h.blocks_allocated = nslots;
}

/* Set the block states from pattern, one character per block: 'F'
 * FREE, 'Z' ZERO, 'D' data.  Data blocks get slots in a shuffled
 * order, with random contents.
 */
static void
layer_set_pattern (struct layer *l, const char *pattern)
{
  uint32_t i, n = 0, *perm;

  assert (strlen (pattern) == l->h.blocks);
  for (i = 0; i < l->h.blocks; ++i) {
    switch (pattern[i]) {
    case 'F': l->map[i] = FREE; break;
    case 'Z': l->map[i] = ZERO; break;
    case 'D': l->map[i] = n++; break;
    default: abort ();
    }
  }
  perm = malloc ((n + 1) * sizeof *perm);
  assert (perm != NULL);
  for (i = 0; i < n; ++i)
    perm[i] = i;
  for (i = n; i > 1; --i) {
    uint32_t j = test_random_below (i), t = perm[i - 1];

    perm[i - 1] = perm[j];
    perm[j] = t;
  }
  for (i = 0; i < l->h.blocks; ++i)
    if (VDI_BLOCK_IS_ALLOCATED (l->map[i]))
      l->map[i] = perm[l->map[i]];
  free (perm);
  layer_make_slots (l, n);
}

/* Give each block a random state, about one in three each. */
static void
layer_randomize (struct layer *l)
{
  char *pattern = malloc (l->h.blocks + 1);
  uint32_t i;

  assert (pattern != NULL);
  for (i = 0; i < l->h.blocks; ++i)
    pattern[i] = "FZD"[test_random_below (3)];
  pattern[l->h.blocks] = '\0';
  layer_set_pattern (l, pattern);
  free (pattern);
}

/* Make l a differencing child of parent. */
static void
layer_link (struct layer *l, const struct layer *parent)
{
  l->h.type = VDI_TYPE_DIFF;
  l->h.uuid_linkage = parent->h.uuid_create;
  l->h.uuid_parent_modify = parent->h.uuid_modify;
}

static bool
layer_write (struct layer *l)
{
  l->path = test_write_image (&l->h, l->map, l->slots, l->nslots, 0);
  return l->path != NULL;
}

/* The model: the chain's contents and, per sector, whether the chain
 * resolves it to a data slot (true) or to zeros (false).
 */
struct model {
  uint64_t size;
  uint8_t *data;
  bool *is_data;                /* size / SECTOR entries */
  /* libvdi.h promises that extents never change state inside a unit of
   * the smallest block size of the chain: a unit is data if any of
   * its sectors is.
   */
  uint32_t unit;
  bool *unit_is_data;
  /* Reads pass below_src, and sectors FREE all the way down read
   * below_byte, so that they differ from zeros.
   */
  bool below;
};

/* What lies below a chain read with below_src: never zero. */
static uint8_t
below_byte (uint64_t offset)
{
  return (uint8_t) ((offset * 7) ^ (offset >> 9)) | 1;
}

static int
below_pread (void *opaque, void *buf, uint32_t count, uint64_t offset)
{
  uint8_t *p = buf;
  uint32_t i;

  for (i = 0; i < count; ++i)
    p[i] = below_byte (offset + i);
  return 0;
}

static const struct vdi_below below_src = { below_pread, NULL };

static void
model_build_over (struct model *m, struct layer *layers, size_t n,
                  bool below)
{
  uint64_t s;
  size_t i;

  m->below = below;
  m->size = vdi_header_virtual_size (&layers[0].h);
  m->data = calloc (m->size + 1, 1);
  m->is_data = calloc (m->size / SECTOR + 1, sizeof *m->is_data);
  m->unit = UINT32_MAX;
  for (i = 0; i < n; ++i)
    if (layers[i].h.block_size < m->unit)
      m->unit = layers[i].h.block_size;
  m->unit_is_data = calloc (m->size / m->unit + 1, sizeof *m->unit_is_data);
  assert (m->data != NULL && m->is_data != NULL && m->unit_is_data != NULL);

  for (s = 0; s < m->size / SECTOR; ++s) {
    const uint64_t o = s * SECTOR;

    for (i = 0; i < n; ++i) {
      const struct layer *l = &layers[i];
      uint32_t e;

      if (o >= vdi_header_virtual_size (&l->h))
        break;                  /* past this parent's end: zeros */
      e = l->map[o / l->h.block_size];
      if (e == FREE)
        continue;
      if (e == ZERO)
        break;
      assert (e < l->nslots);
      memcpy (m->data + o,
              l->slots + (uint64_t) e * l->h.block_size +
              o % l->h.block_size,
              SECTOR);
      m->is_data[s] = true;
      m->unit_is_data[o / m->unit] = true;
      break;
    }
    if (i == n && below) {
      uint32_t j;

      for (j = 0; j < SECTOR; ++j)
        m->data[o + j] = below_byte (o + j);
    }
  }
}

static void
model_build (struct model *m, struct layer *layers, size_t n)
{
  model_build_over (m, layers, n, false);
}

static void
model_free (struct model *m)
{
  free (m->data);
  free (m->is_data);
  free (m->unit_is_data);
}

/* Open the layers' files and make a chain of them. */
static struct vdi_chain *
open_chain (struct layer *layers, size_t n)
{
  struct vdi_image *images[8];
  struct vdi_chain *chain;
  size_t i;

  assert (n <= 8);
  for (i = 0; i < n; ++i) {
    if (layers[i].path == NULL && !layer_write (&layers[i]))
      goto err;
    images[i] = vdi_image_open (layers[i].path, 0);
    if (images[i] == NULL) {
      fprintf (stderr, "open %s: %s\n", layers[i].path, test_log.last_error);
      CU_FAIL ("vdi_image_open failed");
      goto err;
    }
  }
  chain = vdi_chain_new (images, n);
  if (chain == NULL) {
    fprintf (stderr, "vdi_chain_new: %s\n", test_log.last_error);
    CU_FAIL ("vdi_chain_new failed");
  }
  return chain;

 err:
  while (i > 0)
    vdi_image_close (images[--i]);
  return NULL;
}

/* Reads. */

/* Read [offset, offset + count) and compare it with the model. */
static bool
check_read (struct vdi_chain *chain, const struct model *m,
            uint64_t offset, uint32_t count)
{
  uint8_t *buf = malloc (count + 1);
  bool ok;
  int r;

  assert (buf != NULL);
  assert (offset + count <= m->size);
  memset (buf, 0xa5, count);
  r = vdi_chain_pread (chain, buf, count, offset,
                       m->below ? &below_src : NULL);
  ok = r == 0 && memcmp (buf, m->data + offset, count) == 0;
  if (!ok)
    fprintf (stderr, "pread [%" PRIu64 ", +%" PRIu32 "): r = %d, "
             "contents %s\n", offset, count, r,
             r == 0 ? "differ from the model" : "not read");
  free (buf);
  return ok;
}

#define CHECK_READ(chain, m, offset, count) \
  CU_ASSERT_TRUE (check_read ((chain), (m), (offset), (count)))

/* Whole disk, single bytes at each end, reads around every boundary
 * of block_size, then random reads of up to max_len bytes, half of
 * them starting near a boundary.
 */
static void
check_reads (struct vdi_chain *chain, const struct model *m,
             uint32_t block_size, unsigned nr_random, uint32_t max_len)
{
  uint64_t b;
  unsigned n;

  CHECK_READ (chain, m, 0, m->size);
  CHECK_READ (chain, m, 0, 1);
  CHECK_READ (chain, m, m->size - 1, 1);
  CHECK_READ (chain, m, m->size - SECTOR, SECTOR);

  for (b = block_size; b < m->size; b += block_size) {
    CHECK_READ (chain, m, b - 1, 2);
    CHECK_READ (chain, m, b - SECTOR, 2 * SECTOR);
    CHECK_READ (chain, m, b - 100, 100);
    CHECK_READ (chain, m, b, 100);
    if (b + block_size + 7 <= m->size)
      /* Unaligned, spanning a whole block and into the next one. */
      CHECK_READ (chain, m, b - 3, block_size + 10);
  }

  for (n = 0; n < nr_random; ++n) {
    uint64_t offset, len;

    if (n & 1) {
      offset = test_random_below (m->size / block_size + 1) * block_size;
      offset += test_random_below (2 * SECTOR);
      if (offset >= SECTOR)
        offset -= SECTOR;
      if (offset >= m->size)
        offset = m->size - 1;
    }
    else
      offset = test_random_below (m->size);
    len = m->size - offset;
    if (len > max_len)
      len = max_len;
    len = 1 + test_random_below (len);
    CHECK_READ (chain, m, offset, len);
  }
}

/* Extents. */

struct extent {
  uint64_t offset, length;
  bool is_zero;
};

struct extent_list {
  struct extent *e;
  size_t n, alloc;
  unsigned calls;
  unsigned fail_at;             /* return -1 from this call (1-based) */
};

/* With nothing below the chain, ZERO runs and runs FREE all the way
 * down both read as zeros; a client sees one hole, so merge them.
 */
static int
collect_extent (void *opaque, uint64_t offset, uint64_t length,
                enum vdi_extent_type type)
{
  struct extent_list *list = opaque;
  const bool is_zero = type != VDI_EXTENT_DATA;

  list->calls++;
  if (list->n > 0 && list->e[list->n - 1].is_zero == is_zero &&
      list->e[list->n - 1].offset + list->e[list->n - 1].length == offset) {
    list->e[list->n - 1].length += length;
    return list->calls == list->fail_at ? -1 : 0;
  }
  if (list->n == list->alloc) {
    list->alloc = list->alloc ? 2 * list->alloc : 16;
    list->e = realloc (list->e, list->alloc * sizeof *list->e);
    assert (list->e != NULL);
  }
  list->e[list->n].offset = offset;
  list->e[list->n].length = length;
  list->e[list->n].is_zero = is_zero;
  list->n++;
  return list->calls == list->fail_at ? -1 : 0;
}

/* The merged runs the model expects for [offset, offset + count). */
static size_t
model_extents (const struct model *m, uint64_t offset, uint64_t count,
               struct extent_list *out)
{
  const uint64_t end = offset + count < m->size ? offset + count : m->size;
  uint64_t pos = offset;

  while (pos < end) {
    bool data = m->unit_is_data[pos / m->unit];
    uint64_t next = (pos / m->unit + 1) * m->unit;

    while (next < end && m->unit_is_data[next / m->unit] == data)
      next += m->unit;
    if (next > end)
      next = end;
    collect_extent (out, pos, next - pos, !data);
    pos = next;
  }
  return out->n;
}

static bool
check_extents (struct vdi_chain *chain, const struct model *m,
               uint64_t offset, uint64_t count)
{
  struct extent_list got = { 0 }, want = { 0 };
  bool ok;
  size_t i;
  int r;

  model_extents (m, offset, count, &want);
  r = vdi_chain_extents (chain, offset, count, false, collect_extent, &got);
  ok = r == 0 && got.n == want.n;
  for (i = 0; ok && i < got.n; ++i)
    ok = got.e[i].offset == want.e[i].offset &&
      got.e[i].length == want.e[i].length &&
      got.e[i].is_zero == want.e[i].is_zero;
  if (!ok) {
    fprintf (stderr, "extents [%" PRIu64 ", +%" PRIu64 "): r = %d, "
             "got %zu, want %zu\n", offset, count, r, got.n, want.n);
    for (i = 0; i < got.n || i < want.n; ++i) {
      if (i < got.n)
        fprintf (stderr, "  got  %" PRIu64 " +%" PRIu64 " %s",
                 got.e[i].offset, got.e[i].length,
                 got.e[i].is_zero ? "zero" : "data");
      if (i < want.n)
        fprintf (stderr, "\tmodel %" PRIu64 " +%" PRIu64 " %s",
                 want.e[i].offset, want.e[i].length,
                 want.e[i].is_zero ? "zero" : "data");
      fprintf (stderr, "\n");
      if (i > 20) {
        fprintf (stderr, "  ...\n");
        break;
      }
    }
  }
  free (got.e);
  free (want.e);
  return ok;
}

#define CHECK_EXTENTS(chain, m, offset, count) \
  CU_ASSERT_TRUE (check_extents ((chain), (m), (offset), (count)))

static void
check_all_extents (struct vdi_chain *chain, const struct model *m,
                   uint32_t block_size, unsigned nr_random)
{
  unsigned n;

  CHECK_EXTENTS (chain, m, 0, m->size);
  CHECK_EXTENTS (chain, m, 0, 1);
  CHECK_EXTENTS (chain, m, m->size - 1, 1);
  CHECK_EXTENTS (chain, m, block_size - 1, 2);
  for (n = 0; n < nr_random; ++n) {
    uint64_t offset = test_random_below (m->size);
    uint64_t count = 1 + test_random_below (m->size - offset);

    CHECK_EXTENTS (chain, m, offset, count);
  }
}

/* The model itself: hand-made cases, so that a wrong model cannot
 * make wrong reads look right.
 */
static void
test_model_sanity (void)
{
  struct layer l[2];
  struct model m;

  layer_init (&l[1], 2 * MiB, 1 * MiB, 10);
  layer_make_slots (&l[1], 2);
  l[1].map[0] = 1;
  l[1].map[1] = 0;
  layer_init (&l[0], 2 * MiB, 512 * KiB, 40);
  layer_link (&l[0], &l[1]);
  layer_make_slots (&l[0], 1);
  l[0].map[0] = FREE;
  l[0].map[1] = 0;
  l[0].map[2] = ZERO;
  l[0].map[3] = FREE;
  model_build (&m, l, 2);

  CU_ASSERT_EQUAL (m.size, 2 * MiB);
  /* [0, 512K): FREE in the child, parent slot 1. */
  CU_ASSERT_EQUAL (memcmp (m.data, l[1].slots + 1 * MiB, 512 * KiB), 0);
  /* [512K, 1M): child slot 0. */
  CU_ASSERT_EQUAL (memcmp (m.data + 512 * KiB, l[0].slots, 512 * KiB), 0);
  /* [1M, 1.5M): ZERO in the child although the parent has data. */
  CU_ASSERT_EQUAL (m.data[1 * MiB], 0);
  CU_ASSERT_EQUAL (memcmp (m.data + 1 * MiB, m.data + 1 * MiB + 1,
                           512 * KiB - 1), 0);
  CU_ASSERT_FALSE (m.is_data[1 * MiB / SECTOR]);
  /* [1.5M, 2M): FREE in the child, second half of parent slot 0. */
  CU_ASSERT_EQUAL (memcmp (m.data + 3 * 512 * KiB,
                           l[1].slots + 512 * KiB, 512 * KiB), 0);
  CU_ASSERT_TRUE (m.is_data[2 * MiB / SECTOR - 1]);
  model_free (&m);
  layer_free (&l[0]);
  layer_free (&l[1]);
}

/* Opening images. */

static void
test_open_dynamic (void)
{
  struct layer l;
  struct vdi_image *img;
  char uuid_a[VDI_UUID_STRLEN], uuid_b[VDI_UUID_STRLEN];

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = 1;
  l.map[1] = FREE;
  l.map[2] = ZERO;
  l.map[3] = 0;
  if (!layer_write (&l))
    goto out;

  img = vdi_image_open (l.path, 0);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    const struct vdi_header *h = vdi_image_header (img);

    CU_ASSERT_STRING_EQUAL (vdi_image_filename (img), l.path);
    CU_ASSERT_TRUE (vdi_image_fd (img) >= 0);
    CU_ASSERT_EQUAL (h->type, VDI_TYPE_NORMAL);
    CU_ASSERT_EQUAL (h->header_size, 400);
    CU_ASSERT_EQUAL (h->disk_size, 4 * MiB);
    CU_ASSERT_EQUAL (h->block_size, 1 * MiB);
    CU_ASSERT_EQUAL (h->blocks, 4);
    CU_ASSERT_EQUAL (h->blocks_allocated, 2);
    CU_ASSERT_EQUAL (h->blocks_offset, 0x200);
    CU_ASSERT_EQUAL (h->data_offset, 0x400);
    CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&h->uuid_create, uuid_a),
                            vdi_uuid_format (&l.h.uuid_create, uuid_b));
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 0), 1);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 2), ZERO);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 3), 0);
    vdi_image_close (img);
  }
 out:
  layer_free (&l);
}

static void
test_open_fixed (void)
{
  struct layer l;
  struct vdi_image *img;
  uint32_t i;

  layer_init (&l, 3 * MiB, 1 * MiB, 1);
  l.h.type = VDI_TYPE_FIXED;
  layer_make_slots (&l, 3);
  for (i = 0; i < 3; ++i)
    l.map[i] = i;
  if (!layer_write (&l))
    goto out;

  img = vdi_image_open (l.path, 0);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    CU_ASSERT_EQUAL (vdi_image_header (img)->type, VDI_TYPE_FIXED);
    CU_ASSERT_EQUAL (vdi_image_header (img)->blocks_allocated, 3);
    for (i = 0; i < 3; ++i)
      CU_ASSERT_EQUAL (vdi_image_map_entry (img, i), i);
    vdi_image_close (img);
  }
 out:
  layer_free (&l);
}

/* A fixed image whose map lacks blocks (FREE, ZERO) is read, but
 * refused for writing at open, and by vdi_image_make_writable: no
 * write could allocate those blocks.
 */
static void
test_fixed_missing_blocks_read_only (void)
{
  struct layer l;
  struct vdi_image *img;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_set_pattern (&l, "DFDZ");
  l.h.type = VDI_TYPE_FIXED;
  if (!layer_write (&l))
    goto out;

  img = vdi_image_open (l.path, VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NULL (img);
  ASSERT_ONE_ERROR (l.path, "fixed image with only 2 of 4 blocks allocated");
  vdi_image_close (img);

  test_log_reset ();
  img = vdi_image_open (l.path, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (vdi_image_make_writable (img), -1);
  ASSERT_ONE_ERROR (l.path, "fixed image with only 2 of 4 blocks allocated");
  CU_ASSERT_FALSE (vdi_image_is_writable (img));
  vdi_image_close (img);
 out:
  layer_free (&l);
}

/* A new image of the largest size its block size allows is laid out
 * right (its data offset is the last 1 MiB-aligned 32-bit one); one
 * sector more, or a 1 PiB disk with 1 MiB blocks, is refused by
 * vdi_image_create in plain words, and nothing is written.
 */
static void
test_create_too_large (void)
{
  static const struct {
    uint64_t size;
    uint32_t block_size;
    const char *phrase;
  } cases[] = {
    { UINT64_C (1) << 50, 1 * MiB,
      "the disk is too large for a VDI image with 1 MiB blocks: 1 PiB "
      "(1125899906842624 bytes), and the largest that fits is 1023.5 TiB "
      "(1125350151028736 bytes)" },
    { UINT64_C (1125350151028736) + 512, 1 * MiB,
      "the largest that fits is 1023.5 TiB (1125350151028736 bytes)" },
    { UINT64_C (0x3ff80000) * 128 * KiB + 512, 128 * KiB,
      "with 128 KiB blocks" },
    { UINT64_MAX - 511, 128 * MiB, "with 128 MiB blocks" },
  };
  const char *dir = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
  struct vdi_header h;
  char *path;
  size_t i;

  /* The largest fits, exactly. */
  CU_ASSERT_EQUAL (vdi_header_max_disk_size (1 * MiB),
                   UINT64_C (1125350151028736));
  vdi_header_init_dynamic (&h, VDI_TYPE_NORMAL,
                           vdi_header_max_disk_size (1 * MiB), 1 * MiB);
  test_uuid_make (&h.uuid_create, 1);
  test_uuid_make (&h.uuid_modify, 2);
  CU_ASSERT_EQUAL (h.blocks, UINT32_C (0x3ff80000));
  CU_ASSERT_EQUAL (h.data_offset, UINT32_C (0xfff00000));
  CU_ASSERT_EQUAL (vdi_header_validate ("max", &h, UINT64_MAX), 0);
  ASSERT_NO_ERROR ();

  assert (asprintf (&path, "%s/test-create-too-large.%d.vdi", dir,
                    (int) getpid ()) > 0);
  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    /* Never let a mistake here create a map of gigabytes. */
    assert (cases[i].size > vdi_header_max_disk_size (cases[i].block_size));
    test_log_reset ();
    vdi_header_init_dynamic (&h, VDI_TYPE_DIFF, cases[i].size,
                             cases[i].block_size);
    test_uuid_make (&h.uuid_create, 1);
    test_uuid_make (&h.uuid_modify, 2);
    test_uuid_make (&h.uuid_linkage, 3);
    CU_ASSERT_EQUAL (vdi_image_create (path, &h), -1);
    ASSERT_ONE_ERROR (path, cases[i].phrase);
    CU_ASSERT_EQUAL (access (path, F_OK), -1);
  }
  free (path);
}

/* A new image is built under a temporary name beside its own; when
 * that fails (here the temporary name is too long for the folder, the
 * image's own just fits), the error names the image, and no file is
 * left behind.
 */
static void
test_create_names_the_image (void)
{
  const char *dir = getenv ("TMPDIR") ? getenv ("TMPDIR") : "/tmp";
  char name[NAME_MAX + 1];
  struct vdi_header h;
  char *path;

  memset (name, 'x', NAME_MAX - 4);
  strcpy (name + NAME_MAX - 4, ".vdi");
  assert (asprintf (&path, "%s/%s", dir, name) > 0);
  vdi_header_init_dynamic (&h, VDI_TYPE_NORMAL, 1 * MiB, 1 * MiB);
  test_uuid_make (&h.uuid_create, 1);
  test_uuid_make (&h.uuid_modify, 2);
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_image_create (path, &h), -1);
  ASSERT_ONE_ERROR (path, ": cannot create the image: File name too long");
  CU_ASSERT_EQUAL (access (path, F_OK), -1);
  free (path);
}

/* Open and expect one error naming the file and phrase. */
static void
expect_open_error (const char *path, unsigned flags, const char *phrase,
                   const char *file, unsigned line)
{
  struct vdi_image *img;

  test_log_reset ();
  img = vdi_image_open (path, flags);
  CU_assertImplementation (img == NULL, line, "vdi_image_open failed",
                           file, "", CU_FALSE);
  test_check_one_error (path, phrase, file, line);
  vdi_image_close (img);
}
#define EXPECT_OPEN_ERROR(path, flags, phrase) \
  expect_open_error ((path), (flags), (phrase), __FILE__, __LINE__)

static void
test_open_missing_file (void)
{
  char *path;

  /* A name that was just removed cannot exist. */
  path = strdup (test_tmp_write ("", 0));
  assert (path != NULL);
  unlink (path);
  EXPECT_OPEN_ERROR (path, 0, "open");
  free (path);
}

static void
test_open_not_vdi (void)
{
  uint8_t junk[4096];
  char *path;

  path = test_tmp_write ("", 0);
  EXPECT_OPEN_ERROR (path, 0, "not a VDI image");
  path = test_tmp_write ("<<< Oracle", 10);
  EXPECT_OPEN_ERROR (path, 0, "not a VDI image");
  test_random_fill (junk, sizeof junk);
  path = test_tmp_write (junk, sizeof junk);
  EXPECT_OPEN_ERROR (path, 0, "not a VDI image");
}

/* A file cut inside the header. */
static void
test_open_truncated_header (void)
{
  struct layer l;
  char *path;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  if (!layer_write (&l))
    goto out;
  path = l.path;
  CU_ASSERT_EQUAL (truncate (path, 72 + 399), 0);
  EXPECT_OPEN_ERROR (path, 0, "truncated VDI header");
 out:
  layer_free (&l);
}

/* Bad block maps. */

static void
test_bad_map_slot_out_of_range (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  /* The file holds 5 slots, so slot 4 is inside it: only the range
   * check can reject it.
   */
  layer_make_slots (&l, 5);
  l.h.blocks_allocated = 4;
  l.map[0] = 0;
  l.map[1] = 1;
  l.map[2] = 4;
  l.map[3] = 2;
  if (layer_write (&l)) {
    EXPECT_OPEN_ERROR (l.path, 0, "corrupt block map");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                    "entry 2 points to slot 4"));
  }
  layer_free (&l);
}

static void
test_bad_map_slot_past_eof (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = 0;
  l.map[1] = 3;                 /* in range, but the file has 2 slots */
  l.map[2] = 1;
  l.map[3] = FREE;
  l.h.blocks_allocated = 4;
  if (layer_write (&l)) {
    EXPECT_OPEN_ERROR (l.path, 0, "past the end of the file");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                    "entry 1 points to slot 3"));
  }
  layer_free (&l);
}

/* The last slot lacks one byte. */
static void
test_bad_map_slot_one_byte_short (void)
{
  struct layer l;

  layer_init (&l, 2 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = 1;
  l.map[1] = 0;
  l.path = test_write_image (&l.h, l.map, l.slots, l.nslots,
                             test_image_natural_size (&l.h, 2) - 1);
  if (l.path) {
    EXPECT_OPEN_ERROR (l.path, 0, "past the end of the file");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                    "entry 0 points to slot 1"));
  }
  layer_free (&l);
}

static void
test_bad_map_shared_slot (void)
{
  struct layer l;

  layer_init (&l, 5 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = FREE;
  l.map[1] = 1;
  l.map[2] = ZERO;
  l.map[3] = 1;
  l.map[4] = 0;
  if (layer_write (&l)) {
    EXPECT_OPEN_ERROR (l.path, 0, "corrupt block map");
    /* The message names both entries. */
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                    "entries 1 and 3 both point to slot 1"));
  }
  layer_free (&l);
}

static void
test_bad_map_truncated (void)
{
  struct layer l;

  /* 16 blocks, no data: the file ends inside the map. */
  layer_init (&l, 16 * MiB, 1 * MiB, 1);
  l.path = test_write_image (&l.h, l.map, NULL, 0,
                             l.h.blocks_offset + 4 * 16 - 4);
  if (l.path) {
    EXPECT_OPEN_ERROR (l.path, 0, "truncated VDI image");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "ends at 576"));
  }
  layer_free (&l);
}

/* Slots are handed out at the counter, so an entry at or past
 * cBlocksAllocated would be handed out twice: VirtualBox rejects it.
 */
static void
test_map_slot_beyond_counter (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 3);
  l.h.blocks_allocated = 2;
  l.map[0] = 1;
  l.map[1] = FREE;
  l.map[2] = 2;
  l.map[3] = 0;
  if (layer_write (&l)) {
    EXPECT_OPEN_ERROR (l.path, 0, "only 2 blocks are allocated");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "entry 2"));
  }
  layer_free (&l);
}

/* A slot that ends exactly at the end of the file is fine. */
static void
test_map_slot_ends_at_eof (void)
{
  struct layer l;
  struct vdi_image *img;

  layer_init (&l, 2 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = 1;
  l.map[1] = 0;
  if (layer_write (&l)) {
    img = vdi_image_open (l.path, 0);
    CU_ASSERT_PTR_NOT_NULL (img);
    ASSERT_NO_ERROR ();
    vdi_image_close (img);
  }
  layer_free (&l);
}

/* VDI_OPEN_HEADER_ONLY: the same corrupt map is not even looked at. */
static void
test_open_header_only (void)
{
  struct layer l;
  struct vdi_image *img;

  layer_init (&l, 4 * MiB, 1 * MiB, 7);
  layer_make_slots (&l, 1);
  l.map[0] = 0;
  l.map[1] = 0;                 /* shared */
  l.map[2] = 9;                 /* out of range */
  l.map[3] = FREE;
  if (!layer_write (&l))
    goto out;

  img = vdi_image_open (l.path, VDI_OPEN_HEADER_ONLY);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    const struct vdi_header *h = vdi_image_header (img);

    CU_ASSERT_EQUAL (h->blocks, 4);
    CU_ASSERT_EQUAL (h->block_size, 1 * MiB);
    CU_ASSERT_TRUE (vdi_uuid_equal (&h->uuid_create, &l.h.uuid_create));
    vdi_image_close (img);
  }

  EXPECT_OPEN_ERROR (l.path, 0, "corrupt block map");
 out:
  layer_free (&l);
}

/* A header-only open still validates the header. */
static void
test_open_header_only_validates (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 7);
  l.h.blocks_allocated = 5;
  if (layer_write (&l))
    EXPECT_OPEN_ERROR (l.path, VDI_OPEN_HEADER_ONLY, "5 blocks allocated");
  layer_free (&l);
}

/* Locks: QEMU's lock bytes (block/file-posix.c).  Byte 100 + N is
 * held by a user that has permission N, byte 200 + N by one that
 * lets nobody else have it; N is 0 for consistent read, 1 for write,
 * 3 for resize.
 */

#define QEMU_READ   (1u << 0)
#define QEMU_WRITE  (1u << 1)
#define QEMU_RESIZE (1u << 3)
#define QEMU_ALL_PERMS 4

/* The lock bytes below 256 that some open file holds, as QEMU tests
 * them (F_OFD_GETLK for an exclusive lock, from a file of its own),
 * in buf: e.g. "100 201 203".
 */
static const char *
held_lock_bytes (const char *path, char buf[static 4 * 256])
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  size_t used = 0;
  off_t byte;

  assert (fd >= 0);
  buf[0] = '\0';
  for (byte = 0; byte < 256; ++byte) {
    struct flock fl = {
      .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = byte, .l_len = 1
    };

    assert (fcntl (fd, F_OFD_GETLK, &fl) == 0);
    if (fl.l_type != F_UNLCK)
      used += sprintf (buf + used, "%s%d", used ? " " : "", (int) byte);
  }
  close (fd);
  return buf;
}

/* Whether another open file than fd holds lock byte base + N for a
 * permission N in perms.
 */
static bool
qemu_conflict (int fd, off_t base, unsigned perms)
{
  unsigned n;

  for (n = 0; n < QEMU_ALL_PERMS; ++n) {
    struct flock fl = {
      .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = base + n,
      .l_len = 1
    };

    if (!(perms & (1u << n)))
      continue;
    assert (fcntl (fd, F_OFD_GETLK, &fl) == 0);
    if (fl.l_type != F_UNLCK)
      return true;
  }
  return false;
}

/* Open path as QEMU does for a user holding the permissions perms and
 * sharing none of unshared: shared locks on its bytes, then a check
 * that nobody refuses what it holds nor holds what it refuses.  The
 * file, or -1 on a conflict.
 */
static int
qemu_open (const char *path, unsigned perms, unsigned unshared)
{
  int fd = open (path, O_RDONLY | O_CLOEXEC);
  bool locked = true;
  unsigned n;

  assert (fd >= 0);
  for (n = 0; n < QEMU_ALL_PERMS; ++n) {
    struct flock fl = {
      .l_type = F_RDLCK, .l_whence = SEEK_SET, .l_len = 1
    };

    fl.l_start = 100 + n;
    if (perms & (1u << n))
      locked &= fcntl (fd, F_OFD_SETLK, &fl) == 0;
    fl.l_start = 200 + n;
    if (unshared & (1u << n))
      locked &= fcntl (fd, F_OFD_SETLK, &fl) == 0;
  }
  /* Only an exclusive lock on a byte refuses the shared one. */
  if (!locked ||
      qemu_conflict (fd, 200, perms) || qemu_conflict (fd, 100, unshared)) {
    close (fd);
    return -1;
  }
  return fd;
}

/* qemu-img info, qemu-nbd -r; qemu-nbd, qemu-img commit; and -U. */
#define QEMU_OPEN_READER(path) \
  qemu_open ((path), QEMU_READ, QEMU_WRITE | QEMU_RESIZE)
#define QEMU_OPEN_WRITER(path) \
  qemu_open ((path), QEMU_READ | QEMU_WRITE | QEMU_RESIZE, \
             QEMU_WRITE | QEMU_RESIZE)
#define QEMU_OPEN_FORCE_SHARE(path) qemu_open ((path), QEMU_READ, 0)

static const char in_use_open[] =
  "image is in use: another process has opened it";
static const char in_use_writing[] =
  "image is in use: another process has it open for writing";

/* Readers hold the bytes of QEMU's readers and share the image with
 * each other and with QEMU's readers, in either order; a writer (of
 * either project, or VDI_OPEN_EXCLUSIVE) is refused beside them, and
 * a refused open or reopen leaves the locks as they were.
 */
static void
test_lock_readers_share (void)
{
  struct layer l;
  struct vdi_image *a, *b;
  char held[4 * 256];
  int q;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  if (!layer_write (&l))
    goto out;

  a = vdi_image_open (l.path, 0);
  b = vdi_image_open (l.path, 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (a);
  CU_ASSERT_PTR_NOT_NULL_FATAL (b);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held), "100 201 203");
  q = QEMU_OPEN_READER (l.path);
  CU_ASSERT_TRUE (q >= 0);
  CU_ASSERT_EQUAL (QEMU_OPEN_WRITER (l.path), -1);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_WRITE, in_use_open);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_EXCLUSIVE, in_use_open);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held), "100 201 203");
  if (q >= 0)
    close (q);

  /* Another reader of ours: a refused reopen keeps the reader's locks,
   * and succeeds once a is alone.
   */
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_image_make_writable (a), -1);
  ASSERT_ONE_ERROR (l.path, in_use_open);
  CU_ASSERT_FALSE (vdi_image_is_writable (a));
  vdi_image_close (b);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held), "100 201 203");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_image_make_writable (a), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held),
                          "100 101 103 201 203");
  vdi_image_close (a);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held), "");

  /* QEMU's reader first. */
  q = QEMU_OPEN_READER (l.path);
  CU_ASSERT_TRUE_FATAL (q >= 0);
  test_log_reset ();
  a = vdi_image_open (l.path, 0);
  CU_ASSERT_PTR_NOT_NULL (a);
  ASSERT_NO_ERROR ();
  vdi_image_close (a);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_WRITE, in_use_open);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held), "100 201 203");
  close (q);
 out:
  layer_free (&l);
}

/* A writer holds the bytes of QEMU's writer and has the image alone,
 * but for QEMU's force-share readers: in either order against QEMU's
 * readers and writers.  An older nbdkit-vdi writer, with an exclusive
 * lock on the whole file, is seen too.
 */
static void
test_lock_writer_alone (void)
{
  struct layer l;
  struct vdi_image *w;
  char held[4 * 256];
  struct flock whole_file = { .l_type = F_WRLCK, .l_whence = SEEK_SET };
  int q;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  if (!layer_write (&l))
    goto out;

  test_log_reset ();
  w = vdi_image_open (l.path, VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (w);
  ASSERT_NO_ERROR ();
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held),
                          "100 101 103 201 203");
  CU_ASSERT_EQUAL (QEMU_OPEN_READER (l.path), -1);
  CU_ASSERT_EQUAL (QEMU_OPEN_WRITER (l.path), -1);
  q = QEMU_OPEN_FORCE_SHARE (l.path);
  CU_ASSERT_TRUE (q >= 0);
  if (q >= 0)
    close (q);
  EXPECT_OPEN_ERROR (l.path, 0, in_use_writing);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_WRITE, in_use_open);
  vdi_image_close (w);

  /* QEMU's writer first. */
  q = QEMU_OPEN_WRITER (l.path);
  CU_ASSERT_TRUE_FATAL (q >= 0);
  EXPECT_OPEN_ERROR (l.path, 0, in_use_writing);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_WRITE, in_use_open);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_EXCLUSIVE, in_use_open);
  CU_ASSERT_STRING_EQUAL (held_lock_bytes (l.path, held),
                          "100 101 103 201 203");
  close (q);

  /* QEMU's force-share reader first. */
  q = QEMU_OPEN_FORCE_SHARE (l.path);
  CU_ASSERT_TRUE_FATAL (q >= 0);
  test_log_reset ();
  w = vdi_image_open (l.path, VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NOT_NULL (w);
  ASSERT_NO_ERROR ();
  vdi_image_close (w);
  close (q);

  q = open (l.path, O_RDWR | O_CLOEXEC);
  CU_ASSERT_EQUAL_FATAL (fcntl (q, F_OFD_SETLK, &whole_file), 0);
  EXPECT_OPEN_ERROR (l.path, 0, in_use_writing);
  EXPECT_OPEN_ERROR (l.path, VDI_OPEN_WRITE, in_use_open);
  close (q);
 out:
  layer_free (&l);
}

/* The structural check and leaked slots. */

/* Write l (and free it): the image must open cleanly with this many
 * leaked slots, and pass the check, or if error is not NULL fail it
 * with one error containing error.
 */
static void
check_leaks (struct layer *l, uint32_t leaked, const char *error)
{
  struct vdi_image *img;

  if (!layer_write (l))
    goto out;
  img = vdi_image_open (l->path, 0);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    CU_ASSERT_EQUAL (vdi_image_leaked_slots (img), leaked);
    if (error) {
      CU_ASSERT_EQUAL (vdi_image_check (img), -1);
      ASSERT_ONE_ERROR (l->path, error);
    }
    else {
      CU_ASSERT_EQUAL (vdi_image_check (img), 0);
      ASSERT_NO_ERROR ();
    }
    vdi_image_close (img);
  }
 out:
  layer_free (l);
}

/* Every counted slot is used: nothing leaks. */
static void
test_leaked_slots_none (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_set_pattern (&l, "DFZD");
  check_leaks (&l, 0, NULL);
}

/* What a crash between an allocation and the flush leaves: the
 * counter and the data of slots that no entry names yet.  The image
 * is sound, so the check passes.
 */
static void
test_leaked_slots_after_crash (void)
{
  struct layer l;

  layer_init (&l, 5 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 4);
  l.map[0] = 3;
  l.map[1] = FREE;
  l.map[2] = ZERO;
  l.map[3] = 0;
  l.map[4] = FREE;              /* slots 1 and 2 leak */
  check_leaks (&l, 2, NULL);
}

/* Every counted slot leaks: a map with no data at all. */
static void
test_leaked_slots_all (void)
{
  struct layer l;

  layer_init (&l, 3 * MiB, 1 * MiB, 1);
  layer_set_pattern (&l, "ZFZ");
  layer_make_slots (&l, 3);
  check_leaks (&l, 3, NULL);
}

/* A file shorter than its counted slots fails the check; the slots
 * past the end are still counted as leaked, since no entry uses them.
 */
static void
test_check_file_shorter_than_counter (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_set_pattern (&l, "FDFF");
  l.h.blocks_allocated = 3;
  check_leaks (&l, 2, "shorter than its 3 allocated blocks");
}

/* Chains of one image. */

static void
check_chain_one (struct layer *l, unsigned nr_random)
{
  struct model m;
  struct vdi_chain *chain;

  model_build (&m, l, 1);
  chain = open_chain (l, 1);
  ASSERT_NO_ERROR ();
  if (chain) {
    CU_ASSERT_EQUAL (vdi_chain_depth (chain), 1);
    CU_ASSERT_EQUAL (vdi_chain_size (chain), m.size);
    CU_ASSERT_EQUAL (vdi_chain_granularity (chain), l->h.block_size);
    CU_ASSERT_STRING_EQUAL (vdi_image_filename (vdi_chain_image (chain, 0)),
                            l->path);
    check_reads (chain, &m, l->h.block_size, nr_random, 3 * l->h.block_size);
    check_all_extents (chain, &m, l->h.block_size, nr_random / 2);
    vdi_chain_free (chain);
  }
  ASSERT_NO_ERROR ();
  model_free (&m);
}

static void
test_chain_dynamic_random (void)
{
  struct layer l;

  layer_init (&l, 8 * MiB, 256 * KiB, 1);
  layer_randomize (&l);
  check_chain_one (&l, 200);
  layer_free (&l);
}

static void
test_chain_fixed (void)
{
  struct layer l;
  uint32_t i;

  layer_init (&l, 4 * MiB, 512 * KiB, 1);
  l.h.type = VDI_TYPE_FIXED;
  layer_make_slots (&l, l.h.blocks);
  for (i = 0; i < l.h.blocks; ++i)
    l.map[i] = i;
  check_chain_one (&l, 100);
  layer_free (&l);
}

/* The block map sits 1 MiB into the file, as VirtualBox makes it. */
static void
test_chain_vbox_layout (void)
{
  struct layer l;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  l.h.blocks_offset = 1 * MiB;
  l.h.data_offset = 2 * MiB;
  layer_randomize (&l);
  check_chain_one (&l, 50);
  layer_free (&l);
}

/* The slots sit in reverse order in the file. */
static void
test_chain_shuffled_slots (void)
{
  struct layer l;
  struct model m;
  struct vdi_chain *chain;
  struct extent_list got = { 0 };
  uint32_t i;

  layer_init (&l, 8 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 8);
  for (i = 0; i < 8; ++i)
    l.map[i] = 7 - i;
  model_build (&m, &l, 1);
  chain = open_chain (&l, 1);
  if (chain) {
    CHECK_READ (chain, &m, 0, 8 * MiB);
    /* Block 0 is the last slot of the file. */
    CU_ASSERT_EQUAL (memcmp (m.data, l.slots + 7 * MiB, 1 * MiB), 0);
    check_reads (chain, &m, 1 * MiB, 50, 3 * MiB);
    /* All data: one merged extent however the slots are ordered. */
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 8 * MiB, false,
                                        collect_extent, &got), 0);
    CU_ASSERT_EQUAL (got.n, 1);
    if (got.n >= 1) {
      CU_ASSERT_EQUAL (got.e[0].offset, 0);
      CU_ASSERT_EQUAL (got.e[0].length, 8 * MiB);
      CU_ASSERT_FALSE (got.e[0].is_zero);
    }
    free (got.e);
    vdi_chain_free (chain);
  }
  ASSERT_NO_ERROR ();
  model_free (&m);
  layer_free (&l);
}

/* cbBlockExtra != 0: each slot starts with extra bytes
 * (TEST_EXTRA_BYTE) that must never be read as data; up to a whole
 * block of them.
 */
static void
test_chain_block_extra (void)
{
  static const uint32_t extras[] = { 512, 4096, 256 * KiB };
  size_t i;

  for (i = 0; i < sizeof extras / sizeof extras[0]; ++i) {
    struct layer l;

    layer_init (&l, 4 * MiB, 256 * KiB, 1);
    l.h.block_extra = extras[i];
    layer_randomize (&l);
    check_chain_one (&l, 50);
    layer_free (&l);
  }
}

/* A disk size that is not a multiple of the block size, nor of the
 * sector size (VirtualBox rounds it down to a sector).
 */
static void
test_chain_unaligned_disk_size (void)
{
  struct layer l;
  uint32_t i;

  layer_init (&l, 3 * MiB + 128 * KiB + 3 * SECTOR + 100, 1 * MiB, 1);
  CU_ASSERT_EQUAL (l.h.blocks, 4);
  layer_make_slots (&l, 4);
  for (i = 0; i < 4; ++i)
    l.map[i] = 3 - i;
  check_chain_one (&l, 100);

  /* The size is the rounded one. */
  CU_ASSERT_EQUAL (vdi_header_virtual_size (&l.h),
                   3 * MiB + 128 * KiB + 3 * SECTOR);
  layer_free (&l);
}

/* Every entry FREE, or every entry ZERO: zeros, one zero extent. */
static void
test_chain_empty (void)
{
  static const uint32_t states[] = { FREE, ZERO };
  size_t k;

  for (k = 0; k < 2; ++k) {
    struct layer l;
    struct model m;
    struct vdi_chain *chain;
    uint32_t i;

    layer_init (&l, 4 * MiB, 1 * MiB, 1);
    for (i = 0; i < 4; ++i)
      l.map[i] = states[k];
    model_build (&m, &l, 1);
    chain = open_chain (&l, 1);
    if (chain) {
      struct extent_list got = { 0 };
      uint8_t *buf = malloc (4 * MiB);
      size_t j, nonzero = 0;

      assert (buf != NULL);
      memset (buf, 0xff, 4 * MiB);
      CU_ASSERT_EQUAL (vdi_chain_pread (chain, buf, 4 * MiB, 0, NULL), 0);
      for (j = 0; j < 4 * MiB; ++j)
        nonzero += buf[j] != 0;
      CU_ASSERT_EQUAL (nonzero, 0);
      CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 4 * MiB, false,
                                          collect_extent, &got), 0);
      CU_ASSERT_EQUAL (got.n, 1);
      if (got.n >= 1) {
        CU_ASSERT_EQUAL (got.e[0].offset, 0);
        CU_ASSERT_EQUAL (got.e[0].length, 4 * MiB);
        CU_ASSERT_TRUE (got.e[0].is_zero);
      }
      free (got.e);
      free (buf);
      vdi_chain_free (chain);
    }
    model_free (&m);
    layer_free (&l);
  }
}

/* A v0 image, built byte by byte: its map at 420 and its data right
 * after the map, at an offset that is not even sector-aligned.
 */
static void
test_chain_v0_image (void)
{
  const uint32_t bs = 128 * KiB, blocks = 3;
  const uint32_t map_off = 420, data_off = 420 + 4 * 3;
  const size_t file_size = data_off + 2 * (size_t) bs;
  uint8_t *file = calloc (file_size, 1);
  struct vdi_image *img;
  struct vdi_chain *chain;
  uint8_t *buf = malloc (blocks * bs);
  char *path;
  unsigned i;

  assert (file != NULL && buf != NULL);
  memcpy (file, "<<< innotek VirtualBox Disk Image >>>\n", 38);
  test_put_le32 (file, 0x40, 0xbeda107f);
  test_put_le32 (file, 0x44, 0x00000002);
  test_put_le32 (file, 0x48, VDI_TYPE_NORMAL);
  test_put_le32 (file, 0x15c, 512);                 /* legacy cbSector */
  test_put_le64 (file, 0x160, (uint64_t) blocks * bs);
  test_put_le32 (file, 0x168, bs);
  test_put_le32 (file, 0x16c, blocks);
  test_put_le32 (file, 0x170, 2);
  for (i = 0; i < 16; ++i) {
    file[0x174 + i] = 0x10 + i;                     /* uuidCreate */
    file[0x184 + i] = 0x40 + i;                     /* uuidModify */
  }
  test_put_le32 (file, map_off + 0, 1);
  test_put_le32 (file, map_off + 4, FREE);
  test_put_le32 (file, map_off + 8, 0);
  test_random_fill (file + data_off, 2 * (size_t) bs);
  path = test_tmp_write (file, file_size);

  img = vdi_image_open (path, 0);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    CU_ASSERT_EQUAL (vdi_image_header (img)->data_offset, data_off);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 0), 1);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 2), 0);
    chain = vdi_chain_new (&img, 1);
    CU_ASSERT_PTR_NOT_NULL (chain);
    if (chain) {
      CU_ASSERT_EQUAL (vdi_chain_size (chain), blocks * bs);
      memset (buf, 0xa5, blocks * bs);
      CU_ASSERT_EQUAL (vdi_chain_pread (chain, buf, blocks * bs, 0, NULL), 0);
      CU_ASSERT_EQUAL (memcmp (buf, file + data_off + bs, bs), 0);
      CU_ASSERT_EQUAL (buf[bs], 0);
      CU_ASSERT_EQUAL (memcmp (buf + bs, buf + bs + 1, bs - 1), 0);
      CU_ASSERT_EQUAL (memcmp (buf + 2 * bs, file + data_off, bs), 0);
      /* Unaligned, across both boundaries. */
      CU_ASSERT_EQUAL (vdi_chain_pread (chain, buf, bs + 2, bs - 1, NULL), 0);
      CU_ASSERT_EQUAL (buf[0], file[data_off + 2 * bs - 1]);
      CU_ASSERT_EQUAL (buf[1], 0);
      CU_ASSERT_EQUAL (buf[bs + 1], file[data_off]);
      vdi_chain_free (chain);
    }
  }
  ASSERT_NO_ERROR ();
  free (buf);
  free (file);
}

/* Extents: only_first, and a callback that fails. */

static void
test_extents_only_first (void)
{
  struct layer l;
  struct model m;
  struct vdi_chain *chain;

  layer_init (&l, 4 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 2);
  l.map[0] = ZERO;
  l.map[1] = ZERO;              /* merges with block 0 */
  l.map[2] = 0;
  l.map[3] = 1;                 /* merges with block 2 */
  model_build (&m, &l, 1);
  chain = open_chain (&l, 1);
  if (chain) {
    struct extent_list got = { 0 };

    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 4 * MiB, true,
                                        collect_extent, &got), 0);
    CU_ASSERT_EQUAL (got.calls, 1);
    if (got.n >= 1) {
      CU_ASSERT_EQUAL (got.e[0].offset, 0);
      CU_ASSERT_EQUAL (got.e[0].length, 2 * MiB);
      CU_ASSERT_TRUE (got.e[0].is_zero);
    }
    got.n = got.calls = 0;

    /* Starting inside the data run, unaligned. */
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 2 * MiB + 1000, 4096, true,
                                        collect_extent, &got), 0);
    CU_ASSERT_EQUAL (got.calls, 1);
    if (got.n >= 1) {
      CU_ASSERT_EQUAL (got.e[0].offset, 2 * MiB + 1000);
      CU_ASSERT_EQUAL (got.e[0].length, 4096);
      CU_ASSERT_FALSE (got.e[0].is_zero);
    }
    got.n = got.calls = 0;

    /* The full list for comparison. */
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 4 * MiB, false,
                                        collect_extent, &got), 0);
    CU_ASSERT_EQUAL (got.calls, 2);
    CHECK_EXTENTS (chain, &m, 0, 4 * MiB);
    free (got.e);
    vdi_chain_free (chain);
  }
  model_free (&m);
  layer_free (&l);
}

static void
test_extents_callback_error (void)
{
  struct layer l;
  struct vdi_chain *chain;
  uint32_t i;

  /* Alternating data and zero blocks: 8 runs. */
  layer_init (&l, 8 * MiB, 1 * MiB, 1);
  layer_make_slots (&l, 4);
  for (i = 0; i < 8; ++i)
    l.map[i] = i & 1 ? ZERO : i / 2;
  chain = open_chain (&l, 1);
  if (chain) {
    struct extent_list got = { 0 };

    got.fail_at = 3;
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 8 * MiB, false,
                                        collect_extent, &got), -1);
    CU_ASSERT_EQUAL (got.calls, 3);
    got.n = got.calls = 0;

    got.fail_at = 1;
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 8 * MiB, false,
                                        collect_extent, &got), -1);
    CU_ASSERT_EQUAL (got.calls, 1);
    got.n = got.calls = 0;

    got.fail_at = 0;
    CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 8 * MiB, false,
                                        collect_extent, &got), 0);
    CU_ASSERT_EQUAL (got.calls, 8);
    free (got.e);
    vdi_chain_free (chain);
  }
  layer_free (&l);
}

/* Chains of several images. */

static void
check_chain (struct layer *layers, size_t n, uint32_t granularity,
             unsigned nr_random)
{
  struct model m;
  struct vdi_chain *chain;
  size_t i;

  model_build (&m, layers, n);
  chain = open_chain (layers, n);
  ASSERT_NO_ERROR ();
  if (chain) {
    CU_ASSERT_EQUAL (vdi_chain_depth (chain), n);
    CU_ASSERT_EQUAL (vdi_chain_size (chain), m.size);
    CU_ASSERT_EQUAL (vdi_chain_granularity (chain), granularity);
    for (i = 0; i < n; ++i)
      CU_ASSERT_STRING_EQUAL (vdi_image_filename (vdi_chain_image (chain, i)),
                              layers[i].path);
    check_reads (chain, &m, granularity, nr_random, 3 * MiB);
    check_all_extents (chain, &m, granularity, nr_random / 2);
    vdi_chain_free (chain);
  }
  ASSERT_NO_ERROR ();
  model_free (&m);
}

/* Two images with the same block size: FREE falls through to the
 * parent, ZERO does not, FREE in both reads zeros.
 */
static void
test_chain_two_same_block_size (void)
{
  struct layer l[2];
  struct model m;
  size_t i;

  layer_init (&l[1], 6 * MiB, 1 * MiB, 10);
  layer_make_slots (&l[1], 4);
  l[1].map[0] = 3;
  l[1].map[1] = 2;
  l[1].map[2] = 1;
  l[1].map[3] = FREE;
  l[1].map[4] = ZERO;
  l[1].map[5] = 0;
  layer_init (&l[0], 6 * MiB, 1 * MiB, 40);
  layer_link (&l[0], &l[1]);
  layer_make_slots (&l[0], 2);
  l[0].map[0] = FREE;           /* parent data */
  l[0].map[1] = ZERO;           /* zeros over parent data */
  l[0].map[2] = 1;              /* own data over parent data */
  l[0].map[3] = FREE;           /* FREE in both: zeros */
  l[0].map[4] = FREE;           /* parent ZERO */
  l[0].map[5] = 0;

  /* What the model says, spelt out. */
  model_build (&m, l, 2);
  CU_ASSERT_EQUAL (memcmp (m.data, l[1].slots + 3 * MiB, 1 * MiB), 0);
  for (i = 1 * MiB; i < 2 * MiB; i += 4096)
    CU_ASSERT_EQUAL (m.data[i], 0);
  CU_ASSERT_EQUAL (memcmp (m.data + 2 * MiB, l[0].slots + 1 * MiB, 1 * MiB),
                   0);
  CU_ASSERT_FALSE (m.is_data[3 * MiB / SECTOR]);
  CU_ASSERT_FALSE (m.is_data[4 * MiB / SECTOR]);
  CU_ASSERT_EQUAL (memcmp (m.data + 5 * MiB, l[0].slots, 1 * MiB), 0);
  model_free (&m);

  check_chain (l, 2, 1 * MiB, 100);
  layer_free (&l[0]);
  layer_free (&l[1]);
}

/* Three images with three block sizes, the middle one with the
 * largest, set by hand so that every kind of fall-through happens:
 *
 *            [0, 1M)      [1M, 2M)     [2M, 3M)     [3M, 4M)
 *   top      FFDZFFDF     ZFFFDFFF     FFFFFFFF     DFZFFFFF   128 KiB
 *   middle   D            F            Z            F          1 MiB
 *   base     DDZF         DFZD         DDDD         FFFF       256 KiB
 */
static void
test_chain_three_block_sizes (void)
{
  struct layer l[3];
  size_t i;

  layer_init (&l[2], 4 * MiB, 256 * KiB, 80);
  layer_set_pattern (&l[2], "DDZF" "DFZD" "DDDD" "FFFF");
  layer_init (&l[1], 4 * MiB, 1 * MiB, 40);
  layer_link (&l[1], &l[2]);
  layer_set_pattern (&l[1], "DFZF");
  layer_init (&l[0], 4 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  layer_set_pattern (&l[0], "FFDZFFDF" "ZFFFDFFF" "FFFFFFFF" "DFZFFFFF");

  check_chain (l, 3, 128 * KiB, 200);
  for (i = 0; i < 3; ++i)
    layer_free (&l[i]);
}

/* The same three layers with random states. */
static void
test_chain_three_block_sizes_random (void)
{
  struct layer l[3];
  size_t i;

  layer_init (&l[2], 4 * MiB, 256 * KiB, 80);
  layer_randomize (&l[2]);
  layer_init (&l[1], 4 * MiB, 1 * MiB, 40);
  layer_link (&l[1], &l[2]);
  layer_randomize (&l[1]);
  layer_init (&l[0], 4 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  layer_randomize (&l[0]);
  check_chain (l, 3, 128 * KiB, 200);
  for (i = 0; i < 3; ++i)
    layer_free (&l[i]);
}

/* Deep chain built at random, with random block sizes. */
static void
test_chain_random_layers (void)
{
  static const uint32_t sizes[] = { 128 * KiB, 256 * KiB, 512 * KiB, 1 * MiB };
  unsigned round;

  for (round = 0; round < 4; ++round) {
    struct layer l[3];
    uint32_t gran = UINT32_MAX;
    size_t i, n = 2 + round % 2;

    for (i = n; i-- > 0;) {
      uint32_t bs = sizes[test_random_below (4)];

      layer_init (&l[i], 4 * MiB, bs, 1 + 32 * i);
      if (i + 1 < n)
        layer_link (&l[i], &l[i + 1]);
      layer_randomize (&l[i]);
      if (bs < gran)
        gran = bs;
    }
    check_chain (l, n, gran, 60);
    for (i = 0; i < n; ++i)
      layer_free (&l[i]);
  }
}

/* Every entry FREE in every layer reads zeros. */
static void
test_chain_free_everywhere (void)
{
  struct layer l[3];
  struct model m;
  size_t i;
  uint64_t j, nonzero = 0;

  layer_init (&l[2], 4 * MiB, 1 * MiB, 80);
  layer_init (&l[1], 4 * MiB, 256 * KiB, 40);
  layer_link (&l[1], &l[2]);
  layer_init (&l[0], 4 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  model_build (&m, l, 3);
  for (j = 0; j < m.size; ++j)
    nonzero += m.data[j] != 0;
  CU_ASSERT_EQUAL (nonzero, 0);
  model_free (&m);
  check_chain (l, 3, 128 * KiB, 40);
  for (i = 0; i < 3; ++i)
    layer_free (&l[i]);
}

/* A ZERO entry in the top stops the walk over data in every parent. */
static void
test_chain_zero_stops (void)
{
  struct layer l[3];
  size_t i;
  uint32_t b;

  layer_init (&l[2], 2 * MiB, 1 * MiB, 80);
  layer_make_slots (&l[2], 2);
  l[2].map[0] = 0;
  l[2].map[1] = 1;
  layer_init (&l[1], 2 * MiB, 1 * MiB, 40);
  layer_link (&l[1], &l[2]);
  layer_make_slots (&l[1], 2);
  l[1].map[0] = 1;
  l[1].map[1] = 0;
  layer_init (&l[0], 2 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  for (b = 0; b < 16; ++b)
    l[0].map[b] = b % 3 == 0 ? ZERO : FREE;
  check_chain (l, 3, 128 * KiB, 60);
  for (i = 0; i < 3; ++i)
    layer_free (&l[i]);
}

/* A parent smaller than its child (the child was resized): past the
 * parent's end the chain reads zeros, even where the parent's last
 * slot holds data.
 */
static void
test_chain_parent_smaller (void)
{
  struct layer l[2];
  uint32_t i;

  /* Parent: 1.5 MiB in 1 MiB blocks, both full of random data, so its
   * second slot has data past the parent's end.
   */
  layer_init (&l[1], 3 * 512 * KiB, 1 * MiB, 40);
  layer_make_slots (&l[1], 2);
  l[1].map[0] = 1;
  l[1].map[1] = 0;
  /* Child: 4 MiB, all FREE. */
  layer_init (&l[0], 4 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  check_chain (l, 2, 128 * KiB, 60);

  /* The same with some child blocks allocated past the parent's end. */
  layer_free (&l[0]);
  layer_init (&l[0], 4 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  layer_make_slots (&l[0], 4);
  for (i = 0; i < 4; ++i)
    l[0].map[14 + 4 * i] = i;
  check_chain (l, 2, 128 * KiB, 60);

  layer_free (&l[0]);
  layer_free (&l[1]);
}

/* The same when the parent's end is not a multiple of the chain's
 * granularity: the parent ends 512 bytes into a 128 KiB unit, and
 * its last slot holds random data past that end.  The reads must
 * still be zeros from the parent's end on; extents may (and, with a
 * table per unit, do) report that unit as data.
 */
static void
test_chain_parent_end_inside_unit (void)
{
  struct layer l[2];
  struct model m;
  struct vdi_chain *chain;
  const uint64_t parent_end = 3 * 512 * KiB + SECTOR;

  layer_init (&l[1], parent_end, 1 * MiB, 40);
  layer_make_slots (&l[1], 2);
  l[1].map[0] = 0;
  l[1].map[1] = 1;
  layer_init (&l[0], 2 * MiB, 128 * KiB, 1);
  layer_link (&l[0], &l[1]);
  model_build (&m, l, 2);
  CU_ASSERT_TRUE (m.is_data[parent_end / SECTOR - 1]);
  CU_ASSERT_FALSE (m.is_data[parent_end / SECTOR]);
  CU_ASSERT_EQUAL (m.data[parent_end], 0);

  chain = open_chain (l, 2);
  if (chain) {
    /* The parent's last sector and the first one past its end. */
    CHECK_READ (chain, &m, parent_end - SECTOR, 2 * SECTOR);
    CHECK_READ (chain, &m, 0, m.size);
    CHECK_EXTENTS (chain, &m, 0, m.size);
    vdi_chain_free (chain);
  }
  ASSERT_NO_ERROR ();
  model_free (&m);
  layer_free (&l[0]);
  layer_free (&l[1]);
}

/* Set the block states from spec, "BLOCK:STATE ..." (STATE as in
 * layer_set_pattern), every other block FREE.
 */
static void
layer_set_sparse (struct layer *l, const char *spec)
{
  char *pattern = malloc (l->h.blocks + 1);
  const char *p = spec;

  assert (pattern != NULL);
  memset (pattern, 'F', l->h.blocks);
  pattern[l->h.blocks] = '\0';
  while (*p) {
    char *end;
    unsigned long b = strtoul (p, &end, 10);

    assert (*end == ':' && b < l->h.blocks);
    pattern[b] = end[1];
    for (p = end + 2; *p == ' '; ++p)
      ;
  }
  layer_set_pattern (l, pattern);
  free (pattern);
}

/* A map of 4099 entries (4 pages of 1024 and 3 entries) whose pages 1
 * and 3 hold nothing: the entries at the edges of the others read
 * back, slots are counted across pages (one leaks), and two entries
 * pages apart naming one slot are found.  Then a map longer than the
 * pieces it is read in.
 */
static void
test_map_pages (void)
{
  struct layer l;
  struct vdi_image *img;

  layer_init (&l, 4099 * 128 * KiB, 128 * KiB, 1);
  layer_set_sparse (&l, "1023:D 2048:D 3071:Z 4096:D 4098:Z");
  layer_make_slots (&l, 4);
  l.map[4096] = 3;              /* the slot it named leaks */
  if (layer_write (&l)) {
    img = vdi_image_open (l.path, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (img);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1022), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1023), l.map[1023]);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1024), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 2047), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 2048), l.map[2048]);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 3071), ZERO);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 4096), 3);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 4097), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 4098), ZERO);
    CU_ASSERT_EQUAL (vdi_image_leaked_slots (img), 1);
    CU_ASSERT_EQUAL (vdi_image_check (img), 0);
    ASSERT_NO_ERROR ();
    vdi_image_close (img);
  }

  l.map[4096] = l.map[2048];
  if (layer_write (&l)) {
    char want[64];

    snprintf (want, sizeof want, "entries 2048 and 4096 both point to slot %"
              PRIu32, l.map[2048]);
    EXPECT_OPEN_ERROR (l.path, 0, want);
  }
  layer_free (&l);

  /* The map is read 1 MiB (262144 entries) at a time: entries on
   * either side of that edge, and the last one.
   */
  layer_init (&l, (262144 + 1030) * (uint64_t) 128 * KiB, 128 * KiB, 1);
  layer_set_sparse (&l, "262143:D 262144:Z 262145:D 263173:D");
  if (layer_write (&l)) {
    img = vdi_image_open (l.path, 0);
    CU_ASSERT_PTR_NOT_NULL_FATAL (img);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 262142), FREE);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 262143), l.map[262143]);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 262144), ZERO);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 262145), l.map[262145]);
    CU_ASSERT_EQUAL (vdi_image_map_entry (img, 263173), l.map[263173]);
    CU_ASSERT_EQUAL (vdi_image_leaked_slots (img), 0);
    vdi_image_close (img);
  }
  layer_free (&l);
}

/* Reads and extents over the units around offset o. */
static void
check_around (struct vdi_chain *chain, const struct model *m, uint64_t o)
{
  const uint64_t lo = o > 3 * m->unit ? o - 3 * m->unit : 0;
  const uint64_t hi = o + 3 * m->unit < m->size ? o + 3 * m->unit : m->size;

  CHECK_READ (chain, m, lo, hi - lo);
  if (o > 0 && o < m->size)
    CHECK_READ (chain, m, o - 1, 2);
  CHECK_EXTENTS (chain, m, lo, hi - lo);
}

/* Chains at the edges of the pages that block maps (1024 entries) and
 * the lookup table (512 units, here of 128 KiB: P0 is [0, 512), P4
 * [2048, 2560) and so on) are kept in, in units:
 *
 *   top     128 KiB blocks, 4099 of them (4 map pages and 3 entries):
 *           data or ZERO at the first and last entries of map and
 *           table pages and at the very last; nothing in [2048, 4096)
 *   middle  256 KiB blocks, ending inside P6 (3200), where nothing has
 *           a block, or at P5's start (2560); blocks at table page
 *           edges and at the last entry of its first map page (P3's
 *           end)
 *   base    1 MiB blocks, ending at P7's start (3584), with blocks at
 *           P0's end, P1's start, P3's end, P5's start, and past the
 *           middle's end
 *
 * So P4 reads what lies below (nothing holds a block there), the pages
 * past the middle's end read zeros, both without entries of their own,
 * and every other page is resolved unit by unit.  The chain is read
 * with something below it, so that units FREE all the way down differ
 * from zeros.  The top hidden (vdi_chain_hide_top), the chain is
 * resolved again, to its parents.
 */
static void
test_chain_page_edges (void)
{
  static const uint64_t middle_units[] = { 3200, 2560 };
  const uint64_t unit = 128 * KiB, page = 512 * unit;
  unsigned round;

  for (round = 0; round < 2; ++round) {
    const uint64_t middle_end = middle_units[round] * unit;
    struct layer l[3], empty[3];
    struct model m, hidden;
    struct vdi_chain *chain;
    uint64_t o;
    unsigned n;

    layer_init (&l[2], 3584 * unit, 1 * MiB, 80);
    layer_set_sparse (&l[2], "63:D 64:D 191:Z 255:D 320:D 447:D");
    layer_init (&l[1], middle_end, 256 * KiB, 40);
    layer_link (&l[1], &l[2]);
    layer_set_sparse (&l[1], round == 0
                      ? "255:D 256:D 767:Z 1023:D 1280:D 1281:D"
                      : "255:D 256:D 767:Z 1023:D");
    layer_init (&l[0], 4099 * unit, 128 * KiB, 1);
    layer_link (&l[0], &l[1]);
    layer_set_sparse (&l[0], "0:D 511:D 512:Z 1023:D 1024:D 1535:Z "
                      "1536:D 2047:D 4096:Z 4098:D");
    model_build_over (&m, l, 3, true);
    /* The top as vdi_chain_hide_top shows it: every block FREE. */
    layer_init (&empty[0], 4099 * unit, 128 * KiB, 1);
    empty[1] = l[1];
    empty[2] = l[2];
    model_build_over (&hidden, empty, 3, true);

    chain = open_chain (l, 3);
    ASSERT_NO_ERROR ();
    if (chain) {
      for (o = page; o < m.size; o += page)
        check_around (chain, &m, o);
      check_around (chain, &m, middle_end);
      check_around (chain, &m, 3584 * unit);
      check_around (chain, &m, m.size);
      /* Over a whole shared page of zeros, and into the next. */
      CHECK_READ (chain, &m, 6 * page - unit / 2, page + unit);
      check_all_extents (chain, &m, unit, 20);
      for (n = 0; n < 50; ++n) {
        uint64_t offset = test_random_below (m.size);
        uint64_t len = m.size - offset < 3 * MiB ? m.size - offset : 3 * MiB;

        len = 1 + test_random_below (len);
        CHECK_READ (chain, &m, offset, len);
      }

      CU_ASSERT_EQUAL (vdi_chain_hide_top (chain), 0);
      for (o = page; o < hidden.size; o += page)
        check_around (chain, &hidden, o);
      check_around (chain, &hidden, middle_end);
      check_around (chain, &hidden, hidden.size);
      check_all_extents (chain, &hidden, unit, 20);
      vdi_chain_free (chain);
    }
    ASSERT_NO_ERROR ();
    model_free (&m);
    model_free (&hidden);
    layer_free (&empty[0]);
    layer_free (&l[0]);
    layer_free (&l[1]);
    layer_free (&l[2]);
  }
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-image");

  ADD_TEST (s, test_model_sanity);

  ADD_TEST (s, test_open_dynamic);
  ADD_TEST (s, test_open_fixed);
  ADD_TEST (s, test_fixed_missing_blocks_read_only);
  ADD_TEST (s, test_create_too_large);
  ADD_TEST (s, test_create_names_the_image);
  ADD_TEST (s, test_open_missing_file);
  ADD_TEST (s, test_open_not_vdi);
  ADD_TEST (s, test_open_truncated_header);
  ADD_TEST (s, test_bad_map_slot_out_of_range);
  ADD_TEST (s, test_bad_map_slot_past_eof);
  ADD_TEST (s, test_bad_map_slot_one_byte_short);
  ADD_TEST (s, test_bad_map_shared_slot);
  ADD_TEST (s, test_bad_map_truncated);
  ADD_TEST (s, test_map_slot_beyond_counter);
  ADD_TEST (s, test_map_slot_ends_at_eof);
  ADD_TEST (s, test_open_header_only);
  ADD_TEST (s, test_open_header_only_validates);
  ADD_TEST (s, test_lock_readers_share);
  ADD_TEST (s, test_lock_writer_alone);

  ADD_TEST (s, test_leaked_slots_none);
  ADD_TEST (s, test_leaked_slots_after_crash);
  ADD_TEST (s, test_leaked_slots_all);
  ADD_TEST (s, test_check_file_shorter_than_counter);
  ADD_TEST (s, test_map_pages);

  ADD_TEST (s, test_chain_dynamic_random);
  ADD_TEST (s, test_chain_fixed);
  ADD_TEST (s, test_chain_vbox_layout);
  ADD_TEST (s, test_chain_shuffled_slots);
  ADD_TEST (s, test_chain_block_extra);
  ADD_TEST (s, test_chain_unaligned_disk_size);
  ADD_TEST (s, test_chain_empty);
  ADD_TEST (s, test_chain_v0_image);
  ADD_TEST (s, test_extents_only_first);
  ADD_TEST (s, test_extents_callback_error);

  ADD_TEST (s, test_chain_two_same_block_size);
  ADD_TEST (s, test_chain_three_block_sizes);
  ADD_TEST (s, test_chain_three_block_sizes_random);
  ADD_TEST (s, test_chain_random_layers);
  ADD_TEST (s, test_chain_free_everywhere);
  ADD_TEST (s, test_chain_zero_stops);
  ADD_TEST (s, test_chain_parent_smaller);
  ADD_TEST (s, test_chain_parent_end_inside_unit);
  ADD_TEST (s, test_chain_page_edges);
  return test_run ();
}
