/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Compacting an image, as VirtualBox's vdiCompact does: a block whose
 * data is all zeros becomes a ZERO entry (never FREE, which would
 * show a parent's data in a differencing image), then the blocks at
 * the end of the file move down into the slots so freed, and the
 * file is cut after the last block.  What the image reads never
 * changes, so its modify UUID stays and its children stay current.
 *
 * The slots are visited from both ends at once: the low end looks
 * for holes (slots of zero blocks, or slots no entry uses), the high
 * end for blocks to fill them with.  Each slot is visited, and so
 * read, once: the read that finds a block at the high end not zero
 * is the read that moves it.  Only blocks past the final end move.
 *
 * Every step leaves an image that checks clean and reads the same.
 * A hole is reused only once the entry that named it is on disk as
 * ZERO (map write, sync); a block is copied into its hole, synced,
 * and only then does its entry name the copy (map write, sync): the
 * old slot is never written.  Until the end the header counts the
 * slots as they were, so every entry stays below the counter; the
 * slots freed are leaked slots meanwhile, which do no harm.  Last,
 * the header counts the slots left (write, sync) and the file is
 * cut.  An interrupted compaction is finished by running it again.
 * This needs no journal: each step is complete in itself.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "minmax.h"

#include "vdi-internal.h"

/* Blocks to move are gathered into batches of up to this many bytes
 * (or one block where blocks are larger), so that a sync covers many
 * of them.
 */
#define COMPACT_BATCH_SIZE UINT32_C (16 * 1024 * 1024)

struct compactor {
  struct vdi_image *img;
  const struct vdi_header *h;
  uint64_t slot_size;           /* cbBlockExtra + cbBlock */
  uint32_t *owner;              /* the block in each slot, or FREE */
  char *scratch;                /* one slot, for the reads at the low end */
  char *batch;                  /* the slots of the moves gathered */
  struct move {
    uint32_t block, to;
  } *moves;
  uint32_t nr_moves, max_moves;
  bool map_dirty;               /* entries changed since the last map write */
  uint32_t visited, total;
  vdi_progress_function progress;
  void *opaque;
};

/* Where slot starts in the file, with its extra bytes. */
static uint64_t
slot_start (const struct compactor *c, uint32_t slot)
{
  return vdi_header_slots_end (c->h, slot);
}

/* Write the changed map pages and sync them. */
static int
write_map (struct compactor *c)
{
  struct vdi_map_update u;
  int r;

  if (vdi_image_take_map_update (c->img, &u) == -1)
    return -1;
  r = vdi_image_write_map_update (c->img, &u);
  vdi_map_update_free (&u);
  if (r == 0)
    r = vdi_image_sync (c->img);
  if (r == 0)
    c->map_dirty = false;
  return r;
}

/* Read slot into buf.  Returns 1 if it holds a block that is not all
 * zeros, 0 if it is a hole now (no entry used it, or its block became
 * ZERO in memory), -1 after an error.
 */
static int
visit (struct compactor *c, uint32_t slot, char *buf)
{
  const uint32_t block = c->owner[slot];

  c->visited++;
  if (c->progress)
    c->progress (c->opaque, c->visited, c->total);
  if (block == VDI_BLOCK_FREE)
    return 0;
  if (vdi_full_pread (vdi_image_fd (c->img), buf, c->slot_size,
                      slot_start (c, slot)) == -1) {
    vdi_error ("%s: pread of block %" PRIu32 ": %m",
               vdi_image_filename (c->img), block);
    return -1;
  }
  if (!vdi_is_zero (buf + c->h->block_extra, c->h->block_size))
    return 1;
  if (vdi_image_set_map_entry (c->img, block, VDI_BLOCK_ZERO) == -1)
    return -1;
  c->owner[slot] = VDI_BLOCK_FREE;
  c->map_dirty = true;
  return 0;
}

/* Do the moves gathered: the holes they fill are freed on disk first,
 * then the copies are written and synced, then the entries name them.
 */
static int
flush_moves (struct compactor *c)
{
  const int fd = vdi_image_fd (c->img);
  uint32_t i;

  if (c->map_dirty && write_map (c) == -1)
    return -1;
  if (c->nr_moves == 0)
    return 0;
  for (i = 0; i < c->nr_moves; ++i) {
    const uint64_t where = slot_start (c, c->moves[i].to);

    if (vdi_full_pwrite (fd, c->batch + i * c->slot_size, c->slot_size,
                         where) == -1) {
      vdi_error ("%s: pwrite of block %" PRIu32 ": %m",
                 vdi_image_filename (c->img), c->moves[i].block);
      return -1;
    }
  }
  if (vdi_image_sync (c->img) == -1)
    return -1;
  for (i = 0; i < c->nr_moves; ++i) {
    if (vdi_image_set_map_entry (c->img, c->moves[i].block,
                                 c->moves[i].to) == -1)
      return -1;
    c->owner[c->moves[i].to] = c->moves[i].block;
  }
  c->nr_moves = 0;
  c->map_dirty = true;
  return write_map (c);
}

/* Visit every slot; on return *end is the number of slots left. */
static int
compact_slots (struct compactor *c, uint32_t *end)
{
  uint32_t low = 0, high = c->total;
  int r;

  /* Slots below low are final, and so are those that moves gathered
   * will fill; slots from high on are visited and will go.
   */
  while (low < high) {
    r = visit (c, low, c->scratch);
    if (r == -1)
      return -1;
    if (r == 1) {
      low++;
      continue;
    }
    /* A hole at low: fill it with the last block above it. */
    do {
      if (--high == low)
        break;
      r = visit (c, high, c->batch + c->nr_moves * c->slot_size);
      if (r == -1)
        return -1;
    } while (r == 0);
    if (high == low)
      break;
    c->moves[c->nr_moves++] = (struct move) { c->owner[high], low };
    c->owner[high] = VDI_BLOCK_FREE;
    low++;
    if (c->nr_moves == c->max_moves && flush_moves (c) == -1)
      return -1;
  }
  *end = low;
  return flush_moves (c);
}

/* The header counts the slots left, then the file loses the rest. */
static int
cut (struct compactor *c, uint32_t end)
{
  struct vdi_header *h = vdi_image_header_for_update (c->img);
  const uint64_t size = vdi_header_slots_end (h, end);
  struct stat st;

  if (h->blocks_allocated != end) {
    h->blocks_allocated = end;
    if (vdi_image_write_header (c->img) == -1 ||
        vdi_image_sync (c->img) == -1)
      return -1;
  }
  if (fstat (vdi_image_fd (c->img), &st) == -1) {
    vdi_error ("%s: fstat: %m", vdi_image_filename (c->img));
    return -1;
  }
  if ((uint64_t) st.st_size <= size)
    return 0;
  if (ftruncate (vdi_image_fd (c->img), size) == -1) {
    vdi_error ("%s: ftruncate: %m", vdi_image_filename (c->img));
    return -1;
  }
  return vdi_image_sync (c->img);
}

int
vdi_compact (const char *filename, vdi_progress_function progress,
             void *opaque)
{
  struct compactor c = { .progress = progress, .opaque = opaque };
  uint32_t b, end;
  int r = -1;

  c.img = vdi_image_open (filename, VDI_OPEN_WRITE);
  if (c.img == NULL)
    return -1;
  c.h = vdi_image_header (c.img);
  if (c.h->type == VDI_TYPE_FIXED) {
    vdi_error ("%s: a fixed image keeps a slot for every block: it cannot "
               "be compacted", filename);
    goto out;
  }

  c.slot_size = (uint64_t) c.h->block_extra + c.h->block_size;
  c.total = c.h->blocks_allocated;
  c.max_moves = MAX (COMPACT_BATCH_SIZE / c.slot_size, UINT64_C (1));
  c.owner = malloc (MAX (c.total, UINT32_C (1)) * sizeof *c.owner);
  c.scratch = malloc (c.slot_size);
  c.batch = malloc (c.max_moves * c.slot_size);
  c.moves = malloc (c.max_moves * sizeof *c.moves);
  if (c.owner == NULL || c.scratch == NULL || c.batch == NULL ||
      c.moves == NULL) {
    vdi_error ("%s: malloc: %m", filename);
    goto out;
  }
  /* vdi_image_open has checked that entries name distinct slots
   * below the counter.
   */
  memset (c.owner, 0xff, c.total * sizeof *c.owner); /* VDI_BLOCK_FREE */
  for (b = vdi_image_next_not_free (c.img, 0); b < c.h->blocks;
       b = vdi_image_next_not_free (c.img, b + 1)) {
    const uint32_t entry = vdi_image_map_entry (c.img, b);

    if (VDI_BLOCK_IS_ALLOCATED (entry))
      c.owner[entry] = b;
  }

  if (compact_slots (&c, &end) == -1 || cut (&c, end) == -1)
    goto out;
  vdi_debug ("%s: compacted from %" PRIu32 " to %" PRIu32 " blocks",
             filename, c.total, end);
  r = 0;

 out:
  free (c.owner);
  free (c.scratch);
  free (c.batch);
  free (c.moves);
  vdi_image_close (c.img);
  return r;
}
