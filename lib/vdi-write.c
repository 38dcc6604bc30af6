/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The write engine, shared by the vdi plugin and the vdidiff filter.
 *
 * Only the top image of a chain is written, the way VirtualBox writes
 * (VDI.cpp vdiWrite with VD.cpp's helpers):
 *
 * - A write into an allocated block goes to its slot in place, with
 *   no lock.
 *
 * - A write into an unallocated block (FREE or ZERO) allocates the
 *   whole block at slot cBlocksAllocated.  Bytes the write does not
 *   cover come from the chain below the top image (or zeros for a
 *   ZERO block or a base image).  A whole-block write of zeros
 *   allocates nothing: the entry becomes ZERO.
 *
 * - Allocation changes the counter and the map entry in memory only;
 *   the data goes to the file at once.  A flush (or a FUA write)
 *   makes the file cover every counted slot, writes the header, syncs
 *   so that the data and the counter are on disk, and only then
 *   writes the changed pages of the map and syncs again.  So whatever
 *   the moment of a crash, or of a power cut, no entry on disk points
 *   at garbage or at a slot past the counter (which VirtualBox would
 *   hand out again): the worst is counted slots that nothing uses,
 *   and a write that was not flushed is lost, as NBD allows.  Keeping
 *   the metadata out of the allocation path matters for speed: every
 *   write to the file takes the inode's lock, and a header or map
 *   write per allocation would wait behind the data writes of others.
 *
 * - An allocation that fails (a full disk, a parent that cannot be
 *   read) gives its slot back: the counter goes down again, or the
 *   next allocation takes the slot, so that failed writes leave no
 *   counted slot that nothing uses.
 *
 * - Zeroing a whole unallocated block writes a ZERO entry, never
 *   FREE: in a differencing image FREE would bring the parent's data
 *   back (VirtualBox issue #850).
 *
 * - The first write after open and the first flush after writes give
 *   the image a new modify UUID.
 *
 * Map and header updates are serialised by chain->lock.  Whoever finds
 * a block unallocated takes the lock and looks again, since another
 * writer may have allocated it meanwhile or be allocating it now.
 * The data of an allocation is copied and written without the lock,
 * and so is the map at a flush.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <linux/falloc.h>

#ifdef HAVE_MALLOC_TRIM
#include <malloc.h>
#endif

#include "bits.h"
#include "cleanup.h"
#include "minmax.h"
#include "rounding.h"

#include "vdi-internal.h"

/* Has the guest's view of unit range [first, last] nothing but zeros,
 * without reading data?
 */
static bool
units_read_zero (const struct vdi_chain *chain, uint64_t first, uint64_t last,
                 const struct vdi_below *below)
{
  uint64_t u;

  for (u = first; u <= last; ++u) {
    uint64_t entry = chain_entry (chain, u);

    if (entry != ENTRY_ZERO &&
        !(entry == ENTRY_BELOW && (below == NULL || below->pread == NULL)))
      return false;
  }
  return true;
}

/* The table unit holding byte lo of top block b. */
static uint64_t
block_unit (const struct vdi_chain *chain, uint32_t b, uint32_t lo)
{
  const uint32_t block_size = vdi_image_header (chain->images[0])->block_size;

  return ((uint64_t) b * block_size + lo) >> chain->unit_bits;
}

/* The table units of top block b: [*first, *last]. */
static void
block_unit_range (const struct vdi_chain *chain, uint32_t b, uint64_t *first,
             uint64_t *last)
{
  const uint32_t block_size = vdi_image_header (chain->images[0])->block_size;
  const uint64_t block_start = (uint64_t) b * block_size;

  *first = block_start >> chain->unit_bits;
  *last = (MIN (block_start + block_size,
                chain->units << chain->unit_bits) - 1) >> chain->unit_bits;
}

/* Point the table entries of top block b at its slot, or at zeros.
 * Its units have pages of the chain's own (vdi_chain_own_units).
 */
static void
update_table (struct vdi_chain *chain, uint32_t b)
{
  const struct vdi_header *h = vdi_image_header (chain->images[0]);
  const uint32_t entry = vdi_image_map_entry (chain->images[0], b);
  const uint64_t block_start = (uint64_t) b * h->block_size;
  uint64_t u, first, last;

  block_unit_range (chain, b, &first, &last);
  for (u = first; u <= last; ++u) {
    uint64_t value = ENTRY_ZERO;

    if (VDI_BLOCK_IS_ALLOCATED (entry))
      value = vdi_header_slot_offset (h, entry) +
        ((u << chain->unit_bits) - block_start);
    chain_set_entry (chain, u, value);
  }
}

/* Give the top image a new modify UUID, in memory, unless its writes
 * only copy in what it reads already (chain->keep_modify_uuid).
 */
static int
renew_modify_uuid (struct vdi_chain *chain)
{
  if (chain->keep_modify_uuid)
    return 0;
  return vdi_uuid_generate
    (&vdi_image_header_for_update (chain->images[0])->uuid_modify);
}

/* Before the first change after open, renew the modify UUID and put
 * it on disk, as VirtualBox does.  Called with chain->lock held.
 */
static int
mark_modified (struct vdi_chain *chain)
{
  struct vdi_image *top = chain->images[0];

  if (chain->modified)
    return 0;
  if (renew_modify_uuid (chain) == -1 ||
      vdi_image_write_header (top) == -1 ||
      vdi_image_sync (top) == -1)
    return -1;
  __atomic_store_n (&chain->modified, true, __ATOMIC_RELEASE);
  return 0;
}

/* Called before every change. */
static int
begin_change (struct vdi_chain *chain)
{
  if (!vdi_image_is_writable (chain->images[0])) {
    vdi_error ("%s: the image is open read-only",
               vdi_image_filename (chain->images[0]));
    errno = EROFS;
    return -1;
  }
  if (__atomic_load_n (&chain->top_hidden, __ATOMIC_ACQUIRE)) {
    vdi_error ("%s: the image is served as if it were empty and has not "
               "been emptied yet (vdi_chain_reset_top)",
               vdi_image_filename (chain->images[0]));
    errno = EROFS;
    return -1;
  }
  if (!__atomic_load_n (&chain->modified, __ATOMIC_ACQUIRE)) {
    ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&chain->lock);
    if (mark_modified (chain) == -1)
      return -1;
  }
  __atomic_store_n (&chain->dirty, true, __ATOMIC_RELEASE);
  return 0;
}

/* Set the map entry of top block b, to reach the file at the next
 * flush, and its table entries.  Either may need memory for a page:
 * both are had before anything changes.  Called with chain->lock
 * held.
 */
static int
set_map_entry (struct vdi_chain *chain, uint32_t b, uint32_t entry)
{
  uint64_t first, last;

  block_unit_range (chain, b, &first, &last);
  if (vdi_chain_own_units (chain, first, last) == -1 ||
      vdi_image_set_map_entry (chain->images[0], b, entry) == -1)
    return -1;
  update_table (chain, b);
  return 0;
}

/* Fill buf with the n bytes that top block b (whose entry is entry)
 * shows from byte pos on.
 */
static int
read_block_part (const struct vdi_chain *chain, uint32_t b, uint32_t entry,
                 uint32_t pos, uint32_t n, char *buf,
                 const struct vdi_below *below)
{
  const uint32_t block_size = vdi_image_header (chain->images[0])->block_size;
  const uint64_t start = (uint64_t) b * block_size + pos;

  memset (buf, 0, n);
  if (entry == VDI_BLOCK_ZERO || start >= chain->size)
    return 0;
  return vdi_chain_pread (chain, buf, MIN ((uint64_t) n, chain->size - start),
                          start, below);
}

/* Is top block b being allocated by another request?  Called with
 * chain->lock held.
 */
static bool
is_allocating (const struct vdi_chain *chain, uint32_t b)
{
  size_t i;

  for (i = 0; i < chain->nr_allocating; ++i)
    if (chain->allocating[i].block == b)
      return true;
  return false;
}

/* Once every slot is counted, a slot that a crash left counted but
 * unused (its allocation never reached the map) is taken again: the
 * lowest slot that no map entry and no allocation in flight holds.
 * Returns -1 if there is none.  Called with chain->lock held.
 */
static int64_t
unused_slot (const struct vdi_chain *chain)
{
  const struct vdi_image *top = chain->images[0];
  const uint32_t blocks = vdi_image_header (top)->blocks;
  CLEANUP_FREE uint8_t *used = calloc (bits_bytes (blocks), 1);
  uint32_t i, slot;

  if (used == NULL) {
    vdi_error ("calloc: %m");
    return -1;
  }
  for (i = vdi_image_next_not_free (top, 0); i < blocks;
       i = vdi_image_next_not_free (top, i + 1)) {
    slot = vdi_image_map_entry (top, i);
    if (VDI_BLOCK_IS_ALLOCATED (slot))
      bit_set (used, slot);
  }
  for (i = 0; i < chain->nr_allocating; ++i)
    bit_set (used, chain->allocating[i].slot);
  for (slot = 0; slot < blocks; ++slot)
    if (!bit_is_set (used, slot))
      return slot;
  return -1;
}

/* Write n bytes of buf at offset, part of the slot of top block b. */
static int
write_slot_part (struct vdi_image *top, uint32_t b, const void *buf,
                 uint32_t n, uint64_t offset)
{
  if (vdi_full_pwrite (vdi_image_fd (top), buf, n, offset) == 0)
    return 0;
  vdi_error ("%s: writing block %" PRIu32 ": %m",
             vdi_image_filename (top), b);
  return -1;
}

/* The slot the next allocation takes: one that a failed allocation
 * gave back, else the counter's next slot, else one a crash left
 * unused.  Returns -1 if there is none.  Called with chain->lock held.
 */
static int64_t
next_slot (const struct vdi_chain *chain)
{
  const struct vdi_header *h = vdi_image_header (chain->images[0]);

  if (chain->nr_released > 0)
    return chain->released[chain->nr_released - 1];
  if (h->blocks_allocated < h->blocks)
    return h->blocks_allocated;
  return unused_slot (chain);
}

/* Reserve a slot for top block b, whose entry is FREE or ZERO (see
 * next_slot).  Other requests for block b wait on chain->allocated
 * until publish_slot.  Returns the slot, or -1.  Called with
 * chain->lock held.
 */
static int64_t
reserve_slot (struct vdi_chain *chain, uint32_t b)
{
  struct vdi_image *top = chain->images[0];
  struct vdi_header *h = vdi_image_header_for_update (top);
  struct allocation *allocating;
  int64_t slot = -1;

  if (h->type != VDI_TYPE_FIXED)
    slot = next_slot (chain);
  if (slot == -1) {
    vdi_error ("%s: block %" PRIu32 " is not allocated and cannot be "
               "(%s image, %" PRIu32 " of %" PRIu32 " blocks allocated)",
               vdi_image_filename (top), b, vdi_type_name (h->type),
               h->blocks_allocated, h->blocks);
    errno = EIO;
    return -1;
  }
  allocating = realloc (chain->allocating,
                        (chain->nr_allocating + 1) * sizeof *allocating);
  if (allocating == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  chain->allocating = allocating;
  if (chain->nr_released > 0)
    chain->nr_released--;
  else if (slot == h->blocks_allocated)
    h->blocks_allocated++;
  chain->allocating[chain->nr_allocating].block = b;
  chain->allocating[chain->nr_allocating].slot = slot;
  chain->nr_allocating++;
  return slot;
}

/* A slot is filled in pieces of at most this many bytes, so that an
 * allocation takes that much memory whatever the block size, and so
 * that each pwrite holds the file's inode lock only briefly: Linux
 * serialises buffered writes to one file, and while one thread wrote
 * a whole 1 MiB block the others spun on the lock.  In pieces of
 * 64 KiB, 4 KiB random writes through vdidiff (fio, 16 in flight, each
 * first write to a block filling it) ran at about 90,000 a second
 * here instead of 17,000.
 */
#define FILL_PIECE (64 * 1024)

/* Fill buffers are kept for the next allocation, a few of them: one
 * allocated and freed each time costs more than the copy (glibc hands
 * a freed megabyte back to the kernel, and the next one faults its
 * pages in again under the process's mmap lock, which every nbdkit
 * thread contends for), and one kept by every thread would hold a
 * megabyte for each of nbdkit's threads.
 */
#define FILL_POOL_MAX 8

static pthread_mutex_t fill_pool_lock = PTHREAD_MUTEX_INITIALIZER;
static char *fill_pool[FILL_POOL_MAX];
static size_t fill_pool_len;

static char *
take_fill_buffer (void)
{
  char *buf = NULL;

  pthread_mutex_lock (&fill_pool_lock);
  if (fill_pool_len > 0)
    buf = fill_pool[--fill_pool_len];
  pthread_mutex_unlock (&fill_pool_lock);
  if (buf == NULL) {
    buf = malloc (FILL_PIECE);
    if (buf == NULL)
      vdi_error ("malloc: %m");
  }
  return buf;
}

static void
give_back_fill_buffer (char *buf)
{
  if (buf == NULL)
    return;
  pthread_mutex_lock (&fill_pool_lock);
  if (fill_pool_len < FILL_POOL_MAX) {
    fill_pool[fill_pool_len++] = buf;
    buf = NULL;
  }
  pthread_mutex_unlock (&fill_pool_lock);
  free (buf);
}

void
vdi_release_memory (void)
{
  char *pooled[FILL_POOL_MAX];
  size_t i, n;

  pthread_mutex_lock (&fill_pool_lock);
  n = fill_pool_len;
  memcpy (pooled, fill_pool, n * sizeof *pooled);
  fill_pool_len = 0;
  pthread_mutex_unlock (&fill_pool_lock);
  for (i = 0; i < n; ++i)
    free (pooled[i]);
#ifdef HAVE_MALLOC_TRIM
  malloc_trim (0);
#endif
}

/* Fill the reserved slot of top block b (whose entry was entry): zeros
 * in the extra bytes VDI may reserve before each block (VirtualBox
 * never makes images with any), then len bytes of data (NULL: zeros)
 * at byte lo of the block and the rest from what the block shows now,
 * through buf, a fill buffer (see fill_slot).  Runs without
 * chain->lock, so that allocations run in parallel.
 */
static int
fill_slot_with (struct vdi_chain *chain, uint32_t b, uint32_t entry,
                uint32_t slot, const void *data, uint32_t lo, uint32_t len,
                const struct vdi_below *below, char *buf)
{
  struct vdi_image *top = chain->images[0];
  const struct vdi_header *h = vdi_image_header (top);
  const uint64_t offset = vdi_header_slot_offset (h, slot);
  const uint32_t piece = MIN (h->block_size, (uint32_t) FILL_PIECE);
  uint32_t pos, n;

  if (h->block_extra > 0)
    memset (buf, 0, piece);
  for (pos = 0; pos < h->block_extra; pos += n) {
    n = MIN (h->block_extra - pos, piece);
    if (write_slot_part (top, b, buf, n, offset - h->block_extra + pos) == -1)
      return -1;
  }
  /* A whole block from the caller needs no pieces: it is one write
   * that holds the inode lock once, which suits a sequential writer
   * (fio 1 MiB writes ran slower in 64 KiB pieces).
   */
  if (data && lo == 0 && len == h->block_size)
    return write_slot_part (top, b, data, len, offset);
  for (pos = 0; pos < h->block_size; pos += n) {
    const char *part = buf;
    uint32_t from, to;

    /* The piece [pos, pos + n) of the block, and the part [from, to)
     * of it that the caller writes.
     */
    n = MIN (h->block_size - pos, piece);
    from = MAX (pos, lo);
    to = MIN (pos + n, lo + len);
    if (from == pos && to == pos + n) {
      if (data)
        part = (const char *) data + (pos - lo);
      else
        memset (buf, 0, n);
    }
    else {
      if (read_block_part (chain, b, entry, pos, n, buf, below) == -1)
        return -1;
      if (from < to && data)
        memcpy (buf + (from - pos), (const char *) data + (from - lo),
                to - from);
      else if (from < to)
        memset (buf + (from - pos), 0, to - from);
    }
    if (write_slot_part (top, b, part, n, offset + pos) == -1)
      return -1;
  }
  return 0;
}

static int
fill_slot (struct vdi_chain *chain, uint32_t b, uint32_t entry,
           uint32_t slot, const void *data, uint32_t lo, uint32_t len,
           const struct vdi_below *below)
{
  const struct vdi_header *h = vdi_image_header (chain->images[0]);
  /* A whole block from the caller is written as it is, with no buffer
   * (whole blocks of zeros never get here: they become ZERO entries).
   */
  const bool whole = data && lo == 0 && len == h->block_size;
  char *buf = NULL;
  int r;

  if (!whole || h->block_extra > 0) {
    buf = take_fill_buffer ();
    if (buf == NULL)
      return -1;
  }
  r = fill_slot_with (chain, b, entry, slot, data, lo, len, below, buf);
  give_back_fill_buffer (buf);
  return r;
}

/* Take slot off the list of released slots, if it is there.  Called
 * with chain->lock held.
 */
static bool
take_released (struct vdi_chain *chain, uint32_t slot)
{
  size_t i;

  for (i = 0; i < chain->nr_released; ++i)
    if (chain->released[i] == slot) {
      chain->released[i] = chain->released[--chain->nr_released];
      return true;
    }
  return false;
}

/* Give back the slot of an allocation that failed (ENOSPC, EIO), so
 * that the image stays as valid as it was: counted slots that nothing
 * uses fail the checks of qemu-img and vdi_image_check.  The last
 * counted slot is uncounted, with the released ones right below it;
 * one below slots still counted (allocations that ran alongside) is
 * kept for the next allocation.  Called with chain->lock held.
 */
static void
release_slot (struct vdi_chain *chain, uint32_t slot)
{
  struct vdi_header *h = vdi_image_header_for_update (chain->images[0]);
  uint32_t *released;

  if (slot + 1 == h->blocks_allocated) {
    do
      h->blocks_allocated--;
    while (h->blocks_allocated > 0 &&
           take_released (chain, h->blocks_allocated - 1));
    return;
  }
  /* Without memory the slot stays counted but unused, as after a
   * crash: a leak, which unused_slot finds once every slot is counted.
   */
  released = realloc (chain->released,
                      (chain->nr_released + 1) * sizeof *released);
  if (released == NULL)
    return;
  chain->released = released;
  chain->released[chain->nr_released++] = slot;
}

/* End the allocation of top block b: point its map entry at the slot
 * if filled, else (or if that fails) give the slot back; and wake the
 * requests waiting for the block.  Returns 0 if the block has the
 * slot now, else -1.  Called with chain->lock held.
 */
static int
publish_slot (struct vdi_chain *chain, uint32_t b, uint32_t slot, bool filled)
{
  size_t i;

  for (i = 0; i < chain->nr_allocating; ++i)
    if (chain->allocating[i].block == b) {
      chain->allocating[i] = chain->allocating[--chain->nr_allocating];
      break;
    }
  if (filled && set_map_entry (chain, b, slot) == -1)
    filled = false;
  if (!filled)
    release_slot (chain, slot);
  pthread_cond_broadcast (&chain->allocated);
  return filled ? 0 : -1;
}

/* What a write to an unallocated top block takes, decided under
 * chain->lock.
 */
enum placement {
  PLACED,                       /* nothing more: zeros needing no data */
  PLACE_IN_BLOCK,               /* another request allocated it meanwhile */
  PLACE_IN_NEW_SLOT,            /* a slot was reserved for it */
};

/* Decide how to write len bytes of data (NULL: zeros) at byte lo of
 * top block b, which was unallocated when the caller looked.  Waits
 * while another request allocates the block, and looks again.  Sets
 * *entry to the block's entry now and, for PLACE_IN_NEW_SLOT, *slot.
 * Returns an enum placement, or -1.  Called with chain->lock held.
 */
static int
place_write (struct vdi_chain *chain, uint32_t b, const void *data,
             uint32_t lo, uint32_t len, const struct vdi_below *below,
             uint32_t *entry, uint32_t *slot)
{
  struct vdi_image *top = chain->images[0];
  const struct vdi_header *h = vdi_image_header (top);
  int64_t r;

  while (!VDI_BLOCK_IS_ALLOCATED (vdi_image_map_entry (top, b)) &&
         is_allocating (chain, b))
    pthread_cond_wait (&chain->allocated, &chain->lock);
  *entry = vdi_image_map_entry (top, b);
  if (VDI_BLOCK_IS_ALLOCATED (*entry))
    return PLACE_IN_BLOCK;

  /* Zeros over a whole block: no data, a ZERO entry. */
  if (lo == 0 && len == h->block_size &&
      (data == NULL || vdi_is_zero (data, len))) {
    if (set_map_entry (chain, b, VDI_BLOCK_ZERO) == -1)
      return -1;
    return PLACED;
  }
  /* Zeros over part of a block that reads as zeros already. */
  if (data == NULL &&
      (*entry == VDI_BLOCK_ZERO ||
       units_read_zero (chain, block_unit (chain, b, lo),
                        block_unit (chain, b, lo + len - 1), below)))
    return PLACED;

  r = reserve_slot (chain, b);
  if (r == -1)
    return -1;
  *slot = r;
  return PLACE_IN_NEW_SLOT;
}

/* Write len bytes of data (NULL: zeros) in place, from byte lo of the
 * slot entry of an allocated top block (len may run on into the slots
 * that follow it, see allocated_span).
 */
static int
write_in_block (struct vdi_chain *chain, uint32_t entry, const void *data,
                uint32_t lo, uint32_t len)
{
  struct vdi_image *top = chain->images[0];
  const uint64_t offset = vdi_header_slot_offset (vdi_image_header (top),
                                                  entry) + lo;
  const int fd = vdi_image_fd (top);
  CLEANUP_FREE char *zeros = NULL;

  if (data == NULL) {
    if (fallocate (fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                   offset, len) == 0 ||
        fallocate (fd, FALLOC_FL_ZERO_RANGE, offset, len) == 0)
      return 0;
    zeros = calloc (1, len);
    if (zeros == NULL) {
      vdi_error ("calloc: %m");
      return -1;
    }
    data = zeros;
  }
  if (vdi_full_pwrite (fd, data, len, offset) == -1) {
    vdi_error ("%s: pwrite at %" PRIu64 ": %m",
               vdi_image_filename (top), offset);
    return -1;
  }
  return 0;
}

/* Write len bytes of data (NULL: zeros) at byte lo of top block b.
 * An allocated block is written in place without the lock; an
 * unallocated one is placed under the lock, and a new slot filled
 * without it, then published under it again.
 */
static int
write_block (struct vdi_chain *chain, uint32_t b, const void *data,
             uint32_t lo, uint32_t len, const struct vdi_below *below)
{
  uint32_t entry = vdi_image_map_entry (chain->images[0], b);
  uint32_t slot = 0;
  int placement, r;

  if (VDI_BLOCK_IS_ALLOCATED (entry))
    return write_in_block (chain, entry, data, lo, len);

  pthread_mutex_lock (&chain->lock);
  placement = place_write (chain, b, data, lo, len, below, &entry, &slot);
  pthread_mutex_unlock (&chain->lock);

  switch (placement) {
  case PLACED:
    return 0;
  case PLACE_IN_BLOCK:
    return write_in_block (chain, entry, data, lo, len);
  case PLACE_IN_NEW_SLOT:
    r = fill_slot (chain, b, entry, slot, data, lo, len, below);
    pthread_mutex_lock (&chain->lock);
    r = publish_slot (chain, b, slot, r == 0);
    pthread_mutex_unlock (&chain->lock);
    return r;
  default:
    return -1;
  }
}

/* Top block b is allocated in slot entry, and a write covers len
 * bytes of it and count bytes in all.  How many bytes from there on
 * lie in slots that follow each other in the file, so that one pwrite
 * writes them?  (Blocks allocated one after the other, as a merge or a
 * sequential writer leaves them, mostly do.)
 */
static uint32_t
allocated_span (const struct vdi_image *top, uint32_t b, uint32_t entry,
                uint32_t len, uint32_t count)
{
  const struct vdi_header *h = vdi_image_header (top);
  uint32_t n;

  if (h->block_extra > 0)       /* extra bytes lie between the slots */
    return len;
  for (n = 1; len < count && b + n < h->blocks &&
         vdi_image_map_entry (top, b + n) == entry + n; ++n)
    len += MIN (count - len, h->block_size);
  return len;
}

/* Split [offset, offset + count) at the top image's block edges and
 * write each piece: runs of allocated blocks in place, unallocated
 * blocks one by one.
 */
int
vdi_chain_pwrite (struct vdi_chain *chain, const void *buf,
                  uint32_t count, uint64_t offset, unsigned flags,
                  const struct vdi_below *below)
{
  const uint32_t block_size = vdi_image_header (chain->images[0])->block_size;
  const char *data = buf;

  if (begin_change (chain) == -1)
    return -1;

  while (count > 0) {
    uint32_t b = offset / block_size;
    uint32_t lo = offset % block_size;
    uint32_t len = MIN (count, block_size - lo);
    uint32_t entry = vdi_image_map_entry (chain->images[0], b);
    int r;

    if (VDI_BLOCK_IS_ALLOCATED (entry)) {
      len = allocated_span (chain->images[0], b, entry, len, count);
      r = write_in_block (chain, entry, data, lo, len);
    }
    else
      r = write_block (chain, b, data, lo, len, below);
    if (r == -1)
      return -1;
    if (data)
      data += len;
    count -= len;
    offset += len;
  }

  if (flags & VDI_WRITE_FUA)
    return vdi_chain_flush (chain);
  return 0;
}

/* Would zeroing [offset, offset + count) need data written (a partial
 * block copied up)?  Used to refuse fast zero requests.
 */
static bool
zero_needs_data (const struct vdi_chain *chain, uint32_t count,
                 uint64_t offset, const struct vdi_below *below)
{
  const struct vdi_image *top = chain->images[0];
  const uint32_t block_size = vdi_image_header (top)->block_size;

  while (count > 0) {
    uint32_t b = offset / block_size;
    uint32_t lo = offset % block_size;
    uint32_t len = MIN (count, block_size - lo);
    uint32_t entry = vdi_image_map_entry (top, b);

    if (entry == VDI_BLOCK_FREE && len < block_size &&
        !units_read_zero (chain, block_unit (chain, b, lo),
                          block_unit (chain, b, lo + len - 1), below))
      return true;
    count -= len;
    offset += len;
  }
  return false;
}

int
vdi_chain_zero (struct vdi_chain *chain, uint32_t count, uint64_t offset,
                unsigned flags, const struct vdi_below *below)
{
  if ((flags & VDI_ZERO_FAST) && zero_needs_data (chain, count, offset, below)) {
    errno = ENOTSUP;
    return -1;
  }
  return vdi_chain_pwrite (chain, NULL, count, offset, flags, below);
}

/* Copy the changed map pages and write the header, which counts every
 * slot an entry of the copy points at.  Called with chain->lock held.
 */
static int
begin_flush (struct vdi_chain *chain, struct vdi_map_update *update)
{
  struct vdi_image *top = chain->images[0];
  const struct vdi_header *h = vdi_image_header (top);

  if (vdi_image_take_map_update (top, update) == -1)
    return -1;
  if (!__atomic_load_n (&chain->dirty, __ATOMIC_ACQUIRE) &&
      update->nr_pages == 0)
    return 0;
  if (vdi_image_extend (top, vdi_header_slots_end (h, h->blocks_allocated))
      == -1 ||
      renew_modify_uuid (chain) == -1 ||
      vdi_image_write_header (top) == -1) {
    vdi_image_restore_map_update (top, update);
    vdi_map_update_free (update);
    return -1;
  }
  __atomic_store_n (&chain->dirty, false, __ATOMIC_RELEASE);
  return 0;
}

/* See the comment at the top for the order of the writes. */
int
vdi_chain_flush (struct vdi_chain *chain)
{
  struct vdi_image *top = chain->images[0];
  struct vdi_map_update update;
  int r;

  /* A hidden top image has nothing to flush: its header and map in
   * memory are not the file's.
   */
  if (!vdi_image_is_writable (top) ||
      __atomic_load_n (&chain->top_hidden, __ATOMIC_ACQUIRE))
    return 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&chain->flush_lock);

  pthread_mutex_lock (&chain->lock);
  r = begin_flush (chain, &update);
  pthread_mutex_unlock (&chain->lock);
  if (r == -1)
    return -1;

  if (vdi_image_sync (top) == -1 ||
      (update.nr_pages > 0 &&
       (vdi_image_write_map_update (top, &update) == -1 ||
        vdi_image_sync (top) == -1))) {
    pthread_mutex_lock (&chain->lock);
    vdi_image_restore_map_update (top, &update);
    pthread_mutex_unlock (&chain->lock);
    r = -1;
  }
  vdi_map_update_free (&update);
  return r;
}

int
vdi_chain_reset_top (struct vdi_chain *chain)
{
  struct vdi_image *top = chain->images[0];
  const struct vdi_header *parent = vdi_image_header (chain->images[1]);

  if (!chain->top_hidden) {
    vdi_error ("%s: the image is not hidden, so it is not reset",
               vdi_image_filename (top));
    errno = EINVAL;
    return -1;
  }
  if (!vdi_image_is_writable (top)) {
    vdi_error ("%s: the image is open read-only", vdi_image_filename (top));
    errno = EROFS;
    return -1;
  }

  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&chain->lock);
  if (vdi_image_reset (top, &parent->uuid_modify) == -1)
    return -1;
  /* The reset gave the image a new modify UUID on disk, which is what
   * the first write after open does otherwise.
   */
  __atomic_store_n (&chain->modified, true, __ATOMIC_RELEASE);
  __atomic_store_n (&chain->top_hidden, false, __ATOMIC_RELEASE);
  return 0;
}

/* Closing is the write engine's: changes not flushed yet reach the
 * file first.  Not only when chain->dirty: a flush that ran while an
 * allocation was in flight cleared it, and that block's map entry is
 * still pending.
 */
void
vdi_chain_free (struct vdi_chain *chain)
{
  if (chain == NULL)
    return;
  vdi_chain_flush (chain);
  vdi_chain_destroy (chain);
}
