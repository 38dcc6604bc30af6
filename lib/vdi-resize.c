/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Resizing a dynamic or differencing image, offline, as VirtualBox's
 * vdiResize does: the disk size and the block count change, the map
 * gets FREE entries for the new blocks (ZERO in a differencing image,
 * which must read zeros there whatever its parent holds).  VirtualBox
 * refuses fixed and version 0 images and never shrinks; here a shrink
 * is allowed where nothing past the new end holds data (nor shows the
 * parent's).  Like VirtualBox, a size that is not a multiple of the
 * block size keeps a partial last block.
 *
 * Where the larger map fits before the data area, its new entries
 * are written first and the header last: the header is the commit.
 * Where it does not, VirtualBox moves the first data blocks to the
 * end of the file and renumbers every map entry in place, which a
 * crash in the middle leaves half renumbered.  Here the first k data
 * slots are emptied the same way (each block copied to a new slot at
 * the end, synced, then its map entry changed and synced: a crash
 * leaves both copies, or a slot that no entry uses), but the new map,
 * already renumbered, is written into the k emptied slots, and the
 * header then moves both the map and the data area there in one
 * write.  The space of the old map is left unused: a compaction
 * would have to move the map back to reclaim it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <endian.h>

#include "cleanup.h"
#include "minmax.h"
#include "rounding.h"

#include "vdi-internal.h"

/* The map is written in pieces of this many entries. */
#define MAP_PIECE_ENTRIES 65536

/* VirtualBox's limits (vdiResize): at least 1 MiB, below 4 PiB - 3 MiB. */
#define RESIZE_MIN_SIZE UINT64_C (1024 * 1024)
#define RESIZE_MAX_SIZE (UINT64_C (4) * 1024 * 1024 * 1024 * 1024 * 1024 \
                         - UINT64_C (3) * 1024 * 1024)

static int
check_new_size (const struct vdi_image *img, uint64_t size)
{
  const struct vdi_header *h = vdi_image_header (img);
  const char *filename = vdi_image_filename (img);
  const uint64_t max = MIN (vdi_header_max_disk_size (h->block_size),
                            RESIZE_MAX_SIZE - 1);
  char a[32], b[32], c[32];

  if (size % VDI_SECTOR_SIZE != 0) {
    vdi_error ("%s: the new size %" PRIu64 " is not a multiple of %d bytes",
               filename, size, VDI_SECTOR_SIZE);
    return -1;
  }
  if (size < RESIZE_MIN_SIZE) {
    vdi_error ("%s: the new size %" PRIu64 " is smaller than 1 MiB, "
               "which VirtualBox refuses", filename, size);
    return -1;
  }
  if (size > max) {
    vdi_error ("%s: the new size %s is larger than the largest disk with "
               "blocks of %s (%s)", filename,
               vdi_human_size (size, a, sizeof a),
               vdi_human_size (h->block_size, b, sizeof b),
               vdi_human_size (max, c, sizeof c));
    return -1;
  }
  if (h->type == VDI_TYPE_FIXED) {
    vdi_error ("%s: a fixed image cannot be resized (VirtualBox does not "
               "resize them either): convert it to a dynamic image first",
               filename);
    return -1;
  }
  return 0;
}

/* Does a map entry show data?  Allocated blocks do, and so do FREE
 * blocks of a differencing image: they show the parent's.
 */
static bool
shows_data (const struct vdi_header *h, uint32_t entry)
{
  return VDI_BLOCK_IS_ALLOCATED (entry) ||
    (entry == VDI_BLOCK_FREE && h->type == VDI_TYPE_DIFF);
}

/* Does the image show data past size?  Blocks wholly past it that
 * show data do, and so does a last partial block that shows anything
 * but zeros past it.  Returns 1, 0, or -1 after an error.
 */
static int
has_data_past (const struct vdi_image *img, uint64_t size)
{
  const struct vdi_header *h = vdi_image_header (img);
  const uint32_t new_blocks = DIV_ROUND_UP (size, (uint64_t) h->block_size);
  const uint32_t tail = size % h->block_size;
  uint32_t b, entry;

  for (b = new_blocks; b < h->blocks; ++b)
    if (shows_data (h, vdi_image_map_entry (img, b)))
      return 1;
  if (tail == 0)
    return 0;
  entry = vdi_image_map_entry (img, new_blocks - 1);
  if (entry == VDI_BLOCK_FREE && h->type == VDI_TYPE_DIFF)
    return 1;
  if (VDI_BLOCK_IS_ALLOCATED (entry)) {
    const uint32_t len = h->block_size - tail;
    CLEANUP_FREE char *buf = malloc (len);
    const uint64_t where = vdi_header_slot_offset (h, entry) + tail;
    uint32_t i;

    if (buf == NULL) {
      vdi_error ("malloc: %m");
      return -1;
    }
    if (vdi_full_pread (vdi_image_fd (img), buf, len, where) == -1) {
      vdi_error ("%s: pread at %" PRIu64 ": %m",
                 vdi_image_filename (img), where);
      return -1;
    }
    for (i = 0; i < len; ++i)
      if (buf[i] != 0)
        return 1;
  }
  return 0;
}

/* The last block, if partial and allocated, may hold bytes past the
 * old end (a shrink leaves them): growing must show zeros there.
 * They are out of sight until the header is written.  In a
 * differencing image a partial last block that is FREE would show
 * the parent's data there: refused, before anything is written.
 */
static int
zero_old_tail (struct vdi_image *img)
{
  const struct vdi_header *h = vdi_image_header (img);
  const uint64_t size = vdi_header_virtual_size (h);
  const uint32_t tail = size % h->block_size;
  uint32_t entry;
  CLEANUP_FREE char *zeros = NULL;
  uint64_t where;

  if (tail == 0)
    return 0;
  entry = vdi_image_map_entry (img, size / h->block_size);
  if (entry == VDI_BLOCK_FREE && h->type == VDI_TYPE_DIFF) {
    vdi_error ("%s: the last block is partial and not in this "
               "differencing image: growing would show the parent's "
               "data past the old end (merge the image first)",
               vdi_image_filename (img));
    return -1;
  }
  if (!VDI_BLOCK_IS_ALLOCATED (entry))
    return 0;
  zeros = calloc (1, h->block_size - tail);
  if (zeros == NULL) {
    vdi_error ("calloc: %m");
    return -1;
  }
  where = vdi_header_slot_offset (h, entry) + tail;
  if (vdi_full_pwrite (vdi_image_fd (img), zeros, h->block_size - tail,
                       where) == -1) {
    vdi_error ("%s: pwrite at %" PRIu64 ": %m",
               vdi_image_filename (img), where);
    return -1;
  }
  return 0;
}

/* Write the map entries [first, last) at offset map_offset: those of
 * the image, less shift for slots, and past its blocks FREE, or ZERO
 * in a differencing image (FREE would show the parent's data there;
 * ZERO takes no space either).
 */
static int
write_map (struct vdi_image *img, uint64_t map_offset, uint32_t first,
           uint32_t last, uint32_t shift)
{
  const struct vdi_header *h = vdi_image_header (img);
  const uint32_t old_blocks = h->blocks;
  const uint32_t new_entry =
    h->type == VDI_TYPE_DIFF ? VDI_BLOCK_ZERO : VDI_BLOCK_FREE;
  CLEANUP_FREE uint32_t *piece = malloc (4 * MAP_PIECE_ENTRIES);
  uint32_t b, n, i;

  if (piece == NULL) {
    vdi_error ("malloc: %m");
    return -1;
  }
  for (b = first; b < last; b += n) {
    n = MIN (last - b, (uint32_t) MAP_PIECE_ENTRIES);
    for (i = 0; i < n; ++i) {
      uint32_t entry = new_entry;

      if (b + i < old_blocks) {
        entry = vdi_image_map_entry (img, b + i);
        if (VDI_BLOCK_IS_ALLOCATED (entry))
          entry -= shift;
      }
      piece[i] = htole32 (entry);
    }
    if (vdi_full_pwrite (vdi_image_fd (img), piece, 4 * (size_t) n,
                         map_offset + 4 * (uint64_t) b) == -1) {
      vdi_error ("%s: writing the block map: %m", vdi_image_filename (img));
      return -1;
    }
  }
  return 0;
}

/* Write the header (with the new counter or offsets), synced together
 * with everything written before it.
 */
static int
commit_header (struct vdi_image *img)
{
  if (vdi_image_write_header (img) == -1 || vdi_image_sync (img) == -1)
    return -1;
  return 0;
}

/* The commit of a resize: the new size in the header. */
static int
commit_size (struct vdi_image *img, uint64_t size, uint32_t new_blocks)
{
  if (vdi_image_set_blocks (img, new_blocks) == -1)
    return -1;
  vdi_image_header_for_update (img)->disk_size = size;
  return commit_header (img);
}

/* Empty the first k data slots: each block in one moves to a slot
 * past every other (past k too, so that it is still inside the data
 * area once that moves k slots on).
 */
static int
empty_first_slots (struct vdi_image *img, uint32_t k)
{
  struct vdi_header *h = vdi_image_header_for_update (img);
  const uint32_t first_new = MAX (h->blocks_allocated, k);
  uint32_t moved_end = 0;       /* past the last slot that moves */
  struct vdi_map_update u;
  const uint64_t total = (uint64_t) h->block_extra + h->block_size;
  const int fd = vdi_image_fd (img);
  CLEANUP_FREE uint32_t *block_of = malloc (4 * (size_t) k);
  CLEANUP_FREE char *buf = malloc (total);
  uint32_t b, s;
  int r;

  if (block_of == NULL || buf == NULL) {
    vdi_error ("malloc: %m");
    return -1;
  }
  for (s = 0; s < k; ++s)
    block_of[s] = VDI_BLOCK_FREE;
  for (b = vdi_image_next_not_free (img, 0); b < h->blocks;
       b = vdi_image_next_not_free (img, b + 1)) {
    const uint32_t entry = vdi_image_map_entry (img, b);

    if (entry < k) {
      block_of[entry] = b;
      moved_end = MAX (moved_end, entry + 1);
    }
  }
  if (moved_end == 0)
    return 0;

  /* The counter covers the new slots before any entry points there. */
  if (vdi_image_extend (img, vdi_header_slots_end (h, first_new + moved_end))
      == -1)
    return -1;
  h->blocks_allocated = first_new + moved_end;
  if (commit_header (img) == -1)
    return -1;

  for (s = 0; s < moved_end; ++s) {
    const uint64_t from = vdi_header_slots_end (h, s);
    const uint64_t to = vdi_header_slots_end (h, first_new + s);

    if (block_of[s] == VDI_BLOCK_FREE)
      continue;
    if (vdi_full_pread (fd, buf, total, from) == -1 ||
        vdi_full_pwrite (fd, buf, total, to) == -1) {
      vdi_error ("%s: moving block %" PRIu32 ": %m",
                 vdi_image_filename (img), block_of[s]);
      return -1;
    }
  }
  if (vdi_image_sync (img) == -1)
    return -1;
  for (s = 0; s < moved_end; ++s) {
    if (block_of[s] != VDI_BLOCK_FREE &&
        vdi_image_set_map_entry (img, block_of[s], first_new + s) == -1)
      return -1;
  }
  if (vdi_image_take_map_update (img, &u) == -1)
    return -1;
  r = vdi_image_write_map_update (img, &u);
  vdi_map_update_free (&u);
  if (r == -1)
    return -1;
  return vdi_image_sync (img);
}

/* Grow where the new map does not fit before the data: see the top of
 * this file.
 */
static int
grow_moving_map (struct vdi_image *img, uint64_t size, uint32_t new_blocks)
{
  struct vdi_header *h = vdi_image_header_for_update (img);
  const uint64_t total = (uint64_t) h->block_extra + h->block_size;
  const uint64_t map_offset = h->data_offset;
  const uint32_t k = DIV_ROUND_UP (4 * (uint64_t) new_blocks, total);
  const uint64_t data_offset = map_offset + k * total;

  if (data_offset > UINT32_MAX) {
    vdi_error ("%s: the block map of %" PRIu32 " blocks cannot move past "
               "the data of this image: the data offset would not fit "
               "in 32 bits", vdi_image_filename (img), new_blocks);
    return -1;
  }
  if (empty_first_slots (img, k) == -1 ||
      write_map (img, map_offset, 0, new_blocks, k) == -1 ||
      vdi_image_sync (img) == -1)
    return -1;
  h->blocks_offset = map_offset;
  h->data_offset = data_offset;
  /* The slots below k are gone; when none moved, the counter was k or
   * less and no entry used them.
   */
  h->blocks_allocated = h->blocks_allocated > k ? h->blocks_allocated - k : 0;
  return commit_size (img, size, new_blocks);
}

/* Grow where the new map fits before the data, or where there is no
 * data yet and the data area just starts later, 1 MiB aligned as
 * VirtualBox puts it.
 */
static int
grow_in_place (struct vdi_image *img, uint64_t size, uint32_t new_blocks)
{
  struct vdi_header *h = vdi_image_header_for_update (img);
  const uint64_t map_end = h->blocks_offset + 4 * (uint64_t) new_blocks;
  const uint64_t data_offset = MAX ((uint64_t) h->data_offset,
                                    ROUND_UP (map_end,
                                              (uint64_t) VDI_DATA_ALIGN));

  if (data_offset > UINT32_MAX) {
    vdi_error ("%s: a block map of %" PRIu32 " blocks does not fit before "
               "a 32-bit data offset", vdi_image_filename (img), new_blocks);
    return -1;
  }
  if (write_map (img, h->blocks_offset, h->blocks, new_blocks, 0) == -1)
    return -1;
  if (map_end > h->data_offset)
    h->data_offset = data_offset;
  return commit_size (img, size, new_blocks);
}

int
vdi_resize (const char *filename, uint64_t size, bool shrink)
{
  struct vdi_image *img;
  struct vdi_header *h;
  enum vdi_merge_direction direction;
  uint64_t old_size;
  uint32_t new_blocks;
  int r = -1;

  switch (vdi_merge_pending (filename, &direction)) {
  case -1:
    return -1;
  case 1:
    vdi_error ("%s: a merge %s of this image was interrupted; run it "
               "again to finish it before resizing", filename,
               vdi_journal_direction_name (direction));
    return -1;
  }
  img = vdi_image_open (filename, VDI_OPEN_WRITE);
  if (img == NULL)
    return -1;
  h = vdi_image_header_for_update (img);
  old_size = vdi_header_virtual_size (h);
  if (check_new_size (img, size) == -1)
    goto out;
  new_blocks = DIV_ROUND_UP (size, (uint64_t) h->block_size);

  if (size == old_size)
    r = 0;
  else if (size < old_size) {
    if (!shrink) {
      vdi_error ("%s: the new size is smaller than the disk (%" PRIu64
                 " bytes): shrinking needs --shrink", filename, old_size);
      goto out;
    }
    switch (has_data_past (img, size)) {
    case -1:
      goto out;
    case 1:
      vdi_error ("%s: cannot shrink to %" PRIu64 " bytes: the image holds "
                 "data past that size%s", filename, size,
                 h->type == VDI_TYPE_DIFF
                 ? " (or shows its parent's there: only ZERO blocks can "
                 "be dropped from a differencing image)" : "");
      goto out;
    }
    /* The entries past the new end are FREE or ZERO: they are dropped. */
    r = commit_size (img, size, new_blocks);
  }
  else if (zero_old_tail (img) == -1)
    goto out;
  else if (h->blocks_offset + 4 * (uint64_t) new_blocks <= h->data_offset ||
           h->blocks_allocated == 0)
    r = grow_in_place (img, size, new_blocks);
  else
    r = grow_moving_map (img, size, new_blocks);
  if (r == 0)
    vdi_debug ("%s: resized from %" PRIu64 " to %" PRIu64 " bytes",
               filename, old_size, size);

 out:
  vdi_image_close (img);
  return r;
}
