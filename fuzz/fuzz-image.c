/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* libFuzzer harness of the reader: the header, the block map, the
 * structural check, chains and reads.
 *
 * The input is a VDI file followed by one byte k: the file is written
 * as top.vdi and extended (sparse) by k * 128 KiB, so that a small
 * input can have allocated blocks.  The image is opened header only,
 * then whole and checked, then read alone (as a layer if it is a
 * differencing image) and as a chain whose parents are looked for in
 * its folder, where base.vdi (fuzz-common.h) waits.
 *
 * Besides the sanitizers' findings, the harness aborts when what the
 * library says contradicts itself: extents that do not tile the range
 * asked, a zero extent that does not read as zeros, a description that
 * does not parse back to the top image's UUIDs.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "libvdi.h"
#include "minmax.h"

#include "fuzz-common.h"

/* Below a differencing image read alone: a pattern, as the vdidiff
 * filter would read the plugin below it.
 */
static int
below_pread (void *opaque, void *buf, uint32_t count, uint64_t offset)
{
  uint8_t *p = buf;
  uint32_t i;

  for (i = 0; i < count; ++i)
    p[i] = fuzz_base_byte (offset + i);
  return 0;
}

static const struct vdi_below pattern_below = { below_pread, NULL };

struct extent_walk {
  const struct vdi_chain *chain;
  const struct vdi_below *below;
  uint64_t next;                /* where the next extent must start */
};

/* Read the start of each extent and compare what can be known. */
static int
check_extent (void *opaque, uint64_t offset, uint64_t length,
              enum vdi_extent_type type)
{
  struct extent_walk *w = opaque;
  uint8_t buf[4096];
  const uint32_t n = MIN (length, sizeof buf);
  uint32_t i;

  FUZZ_ASSERT (offset == w->next);
  FUZZ_ASSERT (length > 0);
  w->next = offset + length;
  if (vdi_chain_pread (w->chain, buf, n, offset, w->below) == -1)
    return 0;                   /* a data slot that cannot be read */
  for (i = 0; i < n; ++i) {
    if (type == VDI_EXTENT_ZERO ||
        (type == VDI_EXTENT_BELOW && w->below == NULL))
      FUZZ_ASSERT (buf[i] == 0);
    else if (type == VDI_EXTENT_BELOW)
      FUZZ_ASSERT (buf[i] == fuzz_base_byte (offset + i));
  }
  return 0;
}

static void
walk_extents (const struct vdi_chain *chain, const struct vdi_below *below,
              uint64_t offset, uint64_t count)
{
  struct extent_walk w = { chain, below, offset };

  FUZZ_ASSERT (vdi_chain_extents (chain, offset, count, false,
                                  check_extent, &w) == 0);
  FUZZ_ASSERT (w.next == offset + count);
}

static void
read_chain (const struct vdi_chain *chain, const struct vdi_below *below)
{
  const uint64_t size = vdi_chain_size (chain);
  const uint64_t unit = vdi_chain_granularity (chain);
  const struct vdi_header *h = vdi_image_header (vdi_chain_image (chain, 0));
  struct vdi_uuid create, modify;
  uint8_t buf[1024];
  char *description;

  FUZZ_ASSERT (size > 0);
  FUZZ_ASSERT (vdi_chain_depth (chain) >= 1);
  description = vdi_chain_description (chain);
  FUZZ_ASSERT (description != NULL);
  FUZZ_ASSERT (vdi_description_parse (description, &create, &modify) == 0);
  FUZZ_ASSERT (vdi_uuid_equal (&create, &h->uuid_create));
  FUZZ_ASSERT (vdi_uuid_equal (&modify, &h->uuid_modify));
  free (description);

  /* The first units and the last two: walking every unit of a large
   * disk would be slow.
   */
  walk_extents (chain, below, 0, MIN (size, 16 * unit));
  if (size > 2 * unit)
    walk_extents (chain, below, size - 2 * unit, 2 * unit);
  walk_extents (chain, below, size - 1, 1);

  /* Across the end of the first unit, and the very end. */
  if (size > unit + sizeof buf / 2)
    vdi_chain_pread (chain, buf, sizeof buf, unit - sizeof buf / 2, below);
  vdi_chain_pread (chain, buf, MIN (size, sizeof buf),
                   size - MIN (size, sizeof buf), below);
}

int
LLVMFuzzerInitialize (int *argc, char ***argv)
{
  fuzz_init ();
  fuzz_write_base ();
  return 0;
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
  /* Parents are looked for in the image's folder only. */
  const struct vdi_parent_search search = { .registry = NULL };
  const char *path;
  struct vdi_image *img;
  struct vdi_chain *chain;

  if (size < 1)
    return 0;
  path = fuzz_write_file ("top.vdi", data, size - 1,
                          (uint64_t) data[size - 1] * FUZZ_BLOCK_SIZE);

  img = vdi_image_open (path, VDI_OPEN_HEADER_ONLY);
  if (img == NULL)
    return 0;
  FUZZ_ASSERT (!vdi_image_has_map (img));
  vdi_image_close (img);

  img = vdi_image_open (path, 0);
  if (img == NULL)
    return 0;
  vdi_image_check (img);
  vdi_image_leaked_slots (img);
  if (vdi_image_header (img)->type == VDI_TYPE_DIFF) {
    chain = vdi_layer_new (img);
    if (chain) {
      read_chain (chain, &pattern_below);
      vdi_chain_free (chain);
    }
  }
  else {
    chain = vdi_chain_new (&img, 1);
    if (chain) {
      read_chain (chain, NULL);
      vdi_chain_free (chain);
    }
  }

  chain = vdi_chain_open (path, 0, &search);
  if (chain) {
    read_chain (chain, NULL);
    vdi_chain_free (chain);
  }
  return 0;
}
