/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* A chain of images, resolved once into one lookup table.
 *
 * VirtualBox reads a chain top down: a FREE block asks the parent, a
 * ZERO block or data stops the walk, and FREE all the way down reads
 * as zeros.  Layers may use different block sizes, so the table has
 * one entry per unit of the smallest block size in the chain (all
 * block sizes are powers of two, so every block is a whole number of
 * units).  Each entry says where the unit's data starts:
 *
 *   0                       zeros (a ZERO entry stopped the walk)
 *   1                       FREE all the way down: what lies below the
 *                           chain (zeros, or the plugin under the
 *                           vdidiff filter)
 *   image << 54 | offset    the unit is at this file offset of
 *                           chain->images[image]
 *
 * Offsets 0 and 1 are in the pre-header, never data, so they are free
 * to mean something else.  A read then costs one table lookup per
 * unit and one pread per run of units that are contiguous in one
 * file, whatever the depth.
 *
 * The table is kept in pages of TABLE_PAGE_ENTRIES entries, reached
 * through a directory of page pointers, so that it takes memory for
 * what the images hold and not for the disk's size.  A page gets
 * entries of its own only where some image has a block that is not
 * FREE, or where a parent ends inside it; every other page reads the
 * same for all its units (ENTRY_ZERO past the end of some layer, else
 * ENTRY_BELOW) and points at one of two read-only pages that every
 * chain shares.  Resolving marks those pages first (from the images'
 * entries that are not FREE, which their maps find without a walk
 * over every block), then resolves only them, unit by unit, top image
 * first.  A 16 TiB chain in 1 MiB blocks takes a 256 KiB directory
 * and a page per place that holds blocks; a lookup stays two loads.
 * Reads and extents skip a shared page at once.
 *
 * Writes (vdi-write.c) change only the top image and then the table
 * entries of the block they changed, with atomic stores, so reads
 * need no lock.  A shared page is first copied into one of the
 * chain's own (vdi_chain_own_units), which is then published with an
 * atomic store of its pointer, so that a read sees the old entry or
 * the new one.  The write engine also owns closing a chain
 * (vdi_chain_free flushes first), so this file never calls into it.
 *
 * vdi_chain_hide_top serves a chain as VirtualBox shows a disk whose
 * differencing image it empties at power-on: the top image's map is
 * emptied in memory and the table resolved again, so every read falls
 * through to the parent, and nothing is written.  The write engine
 * refuses writes until vdi_chain_reset_top has emptied the file too,
 * after which the table, which already ignored the top image, is
 * exact.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>

#include "bits.h"
#include "cleanup.h"
#include "ispowerof2.h"
#include "minmax.h"
#include "rounding.h"
#include "static-assert.h"

#include "vdi-internal.h"

/* Used only while resolving: no layer so far has had the unit. */
#define ENTRY_UNRESOLVED  UINT64_MAX

/* The table pages of units where no image has a block: read-only,
 * shared by every chain.
 */
static const uint64_t zero_page[TABLE_PAGE_ENTRIES]; /* ENTRY_ZERO is 0 */
static const uint64_t below_page[TABLE_PAGE_ENTRIES] = {
  [0 ... TABLE_PAGE_ENTRIES - 1] = ENTRY_BELOW
};

static bool
is_shared_page (const uint64_t *page)
{
  return page == zero_page || page == below_page;
}

/* Free the table pages that are the chain's own, and the directory. */
static void
free_table (uint64_t **table, uint64_t pages)
{
  uint64_t page;

  if (table == NULL)
    return;
  for (page = 0; page < pages; ++page)
    if (!is_shared_page (table[page]))
      free (table[page]);
  free (table);
}

/* The first unit of the chain past layer i's end: from there on, the
 * layer reads zeros.
 */
static uint64_t
layer_end_unit (const struct vdi_chain *chain, size_t i)
{
  return DIV_ROUND_UP (chain->sizes[i], UINT64_C (1) << chain->unit_bits);
}

/* Fill the still unresolved entries of a table page, whose first unit
 * is first, from one layer.  Returns how many are left unresolved.
 */
static unsigned
resolve_layer (const struct vdi_chain *chain, size_t layer, uint64_t first,
               uint64_t *entries)
{
  const struct vdi_image *img = chain->images[layer];
  const struct vdi_header *h = vdi_image_header (img);
  const uint64_t layer_size = chain->sizes[layer];
  const unsigned block_bits = log_2_bits (h->block_size);
  unsigned i, left = 0;

  for (i = 0; i < TABLE_PAGE_ENTRIES; ++i) {
    uint64_t offset = (first + i) << chain->unit_bits;
    uint32_t entry;

    if (entries[i] != ENTRY_UNRESOLVED)
      continue;
    /* Past a parent's end the chain reads zeros. */
    if (offset >= layer_size) {
      entries[i] = ENTRY_ZERO;
      continue;
    }
    entry = vdi_image_map_entry (img, offset >> block_bits);
    if (entry == VDI_BLOCK_FREE)
      left++;
    else if (entry == VDI_BLOCK_ZERO)
      entries[i] = ENTRY_ZERO;
    else
      entries[i] = (uint64_t) layer << ENTRY_IMAGE_SHIFT |
        (vdi_header_slot_offset (h, entry) + (offset & (h->block_size - 1)));
  }
  return left;
}

/* Resolve every unit of table page number page, top image first. */
static void
resolve_page (const struct vdi_chain *chain, uint64_t page, uint64_t *entries)
{
  const uint64_t first = page << TABLE_PAGE_BITS;
  unsigned i, left = TABLE_PAGE_ENTRIES;
  size_t layer;

  for (i = 0; i < TABLE_PAGE_ENTRIES; ++i)
    entries[i] = ENTRY_UNRESOLVED;
  for (layer = 0; layer < chain->depth && left > 0; ++layer)
    left = resolve_layer (chain, layer, first, entries);
  for (i = 0; i < TABLE_PAGE_ENTRIES; ++i)
    if (entries[i] == ENTRY_UNRESOLVED)
      entries[i] = ENTRY_BELOW;
}

/* The one check of depth and cycles, for chains built here and for
 * parents found by vdi_chain_open before it opens them.
 */
int
vdi_chain_check_parent (struct vdi_image *const *images, size_t n,
                        const struct vdi_uuid *uuid)
{
  char a[VDI_UUID_STRLEN];
  size_t i;

  if (n >= VDI_MAX_CHAIN_DEPTH) {
    vdi_error ("%s: the chain is more than %d images deep",
               vdi_image_filename (images[0]), VDI_MAX_CHAIN_DEPTH);
    return -1;
  }
  for (i = 0; i < n; ++i) {
    if (vdi_uuid_equal (uuid, &vdi_image_header (images[i])->uuid_create)) {
      vdi_error ("%s: the chain has a cycle: %s names %s (%s) as its "
                 "parent, which is already in the chain",
                 vdi_image_filename (images[0]),
                 vdi_image_filename (images[n - 1]),
                 vdi_uuid_format (uuid, a), vdi_image_filename (images[i]));
      return -1;
    }
  }
  return 0;
}

/* Check the chain as VirtualBox does when it opens one: each child
 * links to its parent's create UUID, only the base may be a fixed or
 * non-differencing image, and no image appears twice.  A stale
 * parent-modify UUID is only a warning: current VirtualBox does not
 * check it and VDMerge leaves it stale.
 */
static int
check_links (struct vdi_image **images, size_t n, bool over_below)
{
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];
  const struct vdi_header *h;
  const char *name;
  size_t i;

  for (i = 0; i + 1 < n; ++i) {
    const struct vdi_header *ph = vdi_image_header (images[i + 1]);
    const char *parent_name = vdi_image_filename (images[i + 1]);

    h = vdi_image_header (images[i]);
    name = vdi_image_filename (images[i]);
    if (vdi_uuid_is_null (&h->uuid_linkage)) {
      vdi_error ("%s: not a differencing image, so it cannot have "
                 "%s as its parent", name, parent_name);
      return -1;
    }
    if (h->type == VDI_TYPE_FIXED) {
      vdi_error ("%s: a fixed image can only be the base of a chain",
                 name);
      return -1;
    }
    if (!vdi_uuid_equal (&h->uuid_linkage, &ph->uuid_create)) {
      vdi_error ("%s: parent UUID %s does not match the UUID %s of %s",
                 name, vdi_uuid_format (&h->uuid_linkage, a),
                 vdi_uuid_format (&ph->uuid_create, b), parent_name);
      return -1;
    }
    if (vdi_chain_check_parent (images, i + 1, &ph->uuid_create) == -1)
      return -1;
    if (!vdi_uuid_is_null (&h->uuid_parent_modify) &&
        !vdi_uuid_equal (&h->uuid_parent_modify, &ph->uuid_modify))
      vdi_warning ("%s: parent modification UUID %s differs from the "
                   "modification UUID %s of %s: the parent has changed "
                   "since this image was created (VirtualBox ignores this)",
                   name, vdi_uuid_format (&h->uuid_parent_modify, a),
                   vdi_uuid_format (&ph->uuid_modify, b), parent_name);
  }

  /* The base. */
  h = vdi_image_header (images[n - 1]);
  name = vdi_image_filename (images[n - 1]);
  if (h->type == VDI_TYPE_DIFF && !over_below) {
    vdi_error ("%s: differencing image without its parent %s",
               name, vdi_uuid_format (&h->uuid_linkage, a));
    return -1;
  }
  /* VirtualBox 3.0-3.1 left a linkage in some base images; VirtualBox
   * ignores it, and so do we.
   */
  if (!vdi_uuid_is_null (&h->uuid_linkage))
    vdi_debug ("%s: base image has a parent UUID %s, ignored",
               name, vdi_uuid_format (&h->uuid_linkage, a));
  return 0;
}

/* Mark the table pages that units [first, last] are in, counting in
 * *n those not marked yet.
 */
static void
mark_units (uint8_t *touched, uint64_t first, uint64_t last, uint64_t *n)
{
  uint64_t page;

  for (page = first >> TABLE_PAGE_BITS; page <= last >> TABLE_PAGE_BITS;
       ++page)
    if (!bit_is_set (touched, page)) {
      bit_set (touched, page);
      (*n)++;
    }
}

/* Mark the table pages that need entries of their own, counting them
 * in *n: those where a layer has a block that is not FREE and no layer
 * above it has ended, and those where a layer ends inside.  Returns
 * the first unit past the end of the shortest layer: an unmarked page
 * from there on reads ENTRY_ZERO, one before it ENTRY_BELOW.
 */
static uint64_t
mark_pages (const struct vdi_chain *chain, uint8_t *touched, uint64_t *n)
{
  uint64_t zero_from = chain->units;
  size_t i;

  for (i = 0; i < chain->depth; ++i) {
    const struct vdi_image *img = chain->images[i];
    const struct vdi_header *h = vdi_image_header (img);
    const unsigned units_bits = log_2_bits (h->block_size) - chain->unit_bits;
    const uint64_t end = MIN (layer_end_unit (chain, i), zero_from);
    uint32_t b;

    if (end < zero_from && end % TABLE_PAGE_ENTRIES != 0)
      mark_units (touched, end, end, n);
    for (b = vdi_image_next_not_free (img, 0); b < h->blocks;
         b = vdi_image_next_not_free (img, b + 1)) {
      const uint64_t first = (uint64_t) b << units_bits;

      if (first >= end)
        break;
      mark_units (touched, first,
                  MIN (first + (UINT64_C (1) << units_bits), end) - 1, n);
    }
    zero_from = end;
  }
  return zero_from;
}

/* The table takes memory where the images have blocks, and the block
 * maps take memory there too, each a page of ENTRIES_PER_PAGE entries
 * at a time.  But a top image with large blocks over a parent with
 * small ones makes the table outgrow the maps by the ratio of the
 * block sizes: 128 MiB over 128 KiB in a few MB of files asks for
 * gigabytes.  So the table (its directory of page pointers and its
 * own pages) may have at most TABLE_PER_MAP_ENTRY entries a map entry
 * that the chain's images keep in memory (16: the ratio of the largest
 * block size VirtualBox creates to the smallest, 8 MiB to 512 KiB, for
 * a top image grown past its parents), plus TABLE_ALLOWANCE entries
 * (16 MiB) whatever the maps.  The maps' entries are counted by whole
 * pages, as they are kept: blocks scattered one to a page of the map
 * cost a page of the table each, and are allowed.  Chains of equal
 * block sizes never come near the limit.  It is checked on the
 * directory alone before anything is counted, then on the pages
 * counted, before any of them is allocated.
 */
#define TABLE_PER_MAP_ENTRY 16
#define TABLE_ALLOWANCE (UINT64_C (1) << 21)

static int
check_table_size (const struct vdi_chain *chain, uint64_t own_pages)
{
  const uint64_t need = chain->table_pages + own_pages * TABLE_PAGE_ENTRIES;
  const struct vdi_header *h;
  uint64_t map_entries = 0, limit;
  size_t i, small = 0, large = 0;
  char need_s[32], disk[32], unit[32], max[32], small_bs[32], large_bs[32];

  for (i = 0; i < chain->depth; ++i) {
    h = vdi_image_header (chain->images[i]);
    map_entries += vdi_image_map_entries_held (chain->images[i]);
    if (h->block_size < vdi_image_header (chain->images[small])->block_size)
      small = i;
    if (h->block_size > vdi_image_header (chain->images[large])->block_size)
      large = i;
  }
  limit = TABLE_PER_MAP_ENTRY * map_entries + TABLE_ALLOWANCE;
  if (need <= limit)
    return 0;
  vdi_error ("%s: the chain's lookup table would need %s (a %s disk in "
             "units of %s: block sizes %s in %s over %s in %s), more than "
             "the %s its images' block maps allow",
             vdi_image_filename (chain->images[0]),
             vdi_human_size (need * sizeof (uint64_t),
                             need_s, sizeof need_s),
             vdi_human_size (chain->size, disk, sizeof disk),
             vdi_human_size (UINT64_C (1) << chain->unit_bits,
                             unit, sizeof unit),
             vdi_human_size (vdi_image_header (chain->images[large])
                             ->block_size, large_bs, sizeof large_bs),
             vdi_image_filename (chain->images[large]),
             vdi_human_size (vdi_image_header (chain->images[small])
                             ->block_size, small_bs, sizeof small_bs),
             vdi_image_filename (chain->images[small]),
             vdi_human_size (limit * sizeof (uint64_t), max, sizeof max));
  return -1;
}

/* Build the lookup table from the images' maps as they are now, and
 * put it in place of the chain's table, if any.
 */
static int
build_table (struct vdi_chain *chain)
{
  CLEANUP_FREE uint8_t *touched = NULL;
  uint64_t **table, own_pages = 0, zero_from, page;

  if (check_table_size (chain, 0) == -1)
    return -1;
  touched = calloc (bits_bytes (chain->table_pages), 1);
  table = calloc (chain->table_pages, sizeof *table);
  if (touched == NULL || table == NULL) {
    free (table);
    goto nomem;
  }
  zero_from = mark_pages (chain, touched, &own_pages);
  if (check_table_size (chain, own_pages) == -1) {
    free (table);
    return -1;
  }
  for (page = 0; page < chain->table_pages; ++page) {
    if (!bit_is_set (touched, page)) {
      table[page] = (uint64_t *) ((page << TABLE_PAGE_BITS) >= zero_from
                                  ? zero_page : below_page);
      continue;
    }
    table[page] = malloc (TABLE_PAGE_ENTRIES * sizeof **table);
    if (table[page] == NULL) {
      free_table (table, page);
      goto nomem;
    }
    resolve_page (chain, page, table[page]);
  }
  free_table (chain->table, chain->table_pages);
  chain->table = table;
  return 0;

 nomem:
  vdi_error ("%s: cannot allocate the lookup table (%" PRIu64
             " entries): %m", vdi_image_filename (chain->images[0]),
             chain->units);
  return -1;
}

/* Size the lookup table by the smallest block size of the chain and
 * build it.
 */
static int
resolve_table (struct vdi_chain *chain)
{
  uint32_t unit = UINT32_MAX;
  size_t i;

  for (i = 0; i < chain->depth; ++i)
    unit = MIN (unit, vdi_image_header (chain->images[i])->block_size);
  chain->unit_bits = log_2_bits (unit);
  chain->size = chain->sizes[0];
  chain->units = DIV_ROUND_UP (chain->size, (uint64_t) unit);
  chain->table_pages = MAX (DIV_ROUND_UP (chain->units, TABLE_PAGE_ENTRIES),
                            UINT64_C (1));
  return build_table (chain);
}

int
vdi_chain_own_units (struct vdi_chain *chain, uint64_t first, uint64_t last)
{
  uint64_t page;

  for (page = first >> TABLE_PAGE_BITS; page <= last >> TABLE_PAGE_BITS;
       ++page) {
    const uint64_t *shared = chain->table[page];
    uint64_t *own;

    if (!is_shared_page (shared))
      continue;
    own = malloc (TABLE_PAGE_ENTRIES * sizeof *own);
    if (own == NULL) {
      vdi_error ("%s: cannot allocate the lookup table: %m",
                 vdi_image_filename (chain->images[0]));
      return -1;
    }
    memcpy (own, shared, TABLE_PAGE_ENTRIES * sizeof *own);
    __atomic_store_n (&chain->table[page], own, __ATOMIC_RELEASE);
  }
  return 0;
}

static struct vdi_chain *
chain_build (struct vdi_image **images, size_t n, bool over_below)
{
  struct vdi_chain *chain;
  size_t i;

  chain = calloc (1, sizeof *chain);
  if (chain == NULL) {
    vdi_error ("calloc: %m");
    for (i = 0; i < n; ++i)
      vdi_image_close (images[i]);
    return NULL;
  }
  chain->depth = n;
  pthread_mutex_init (&chain->lock, NULL);
  pthread_mutex_init (&chain->flush_lock, NULL);
  pthread_cond_init (&chain->allocated, NULL);
  chain->images = calloc (n, sizeof *chain->images);
  chain->fds = calloc (n, sizeof *chain->fds);
  chain->sizes = calloc (n, sizeof *chain->sizes);
  if (chain->images == NULL || chain->fds == NULL || chain->sizes == NULL) {
    vdi_error ("calloc: %m");
    for (i = 0; i < n; ++i)
      vdi_image_close (images[i]);
    goto err;
  }
  for (i = 0; i < n; ++i) {
    chain->images[i] = images[i];
    chain->fds[i] = vdi_image_fd (images[i]);
    chain->sizes[i] = vdi_header_virtual_size (vdi_image_header (images[i]));
  }

  STATIC_ASSERT (VDI_MAX_CHAIN_DEPTH <= 1 << (64 - ENTRY_IMAGE_SHIFT),
                 table_entry_holds_image_index);
  if (n == 0) {
    vdi_error ("a chain needs at least one image");
    goto err;
  }
  if (check_links (images, n, over_below) == -1)
    goto err;

  for (i = 0; i < n; ++i) {
    if (!vdi_image_has_map (images[i])) {
      vdi_error ("%s: opened without its block map",
                 vdi_image_filename (images[i]));
      goto err;
    }
  }
  if (resolve_table (chain) == -1)
    goto err;
  return chain;

 err:
  vdi_chain_destroy (chain);
  return NULL;
}

struct vdi_chain *
vdi_chain_new (struct vdi_image **images, size_t n)
{
  return chain_build (images, n, false);
}

struct vdi_chain *
vdi_layer_new (struct vdi_image *img)
{
  return chain_build (&img, 1, true);
}

int
vdi_chain_hide_top (struct vdi_chain *chain)
{
  struct vdi_image *top = chain->images[0];

  if (chain->depth < 2) {
    vdi_error ("%s: the image has no parent in the chain, so it cannot "
               "be served as if it were empty", vdi_image_filename (top));
    errno = EINVAL;
    return -1;
  }
  if (vdi_image_is_writable (top)) {
    vdi_error ("%s: the image is open for writing, so it cannot be "
               "served as if it were empty", vdi_image_filename (top));
    errno = EINVAL;
    return -1;
  }
  vdi_image_forget_blocks (top);
  chain->top_hidden = true;
  return build_table (chain);
}

void
vdi_chain_destroy (struct vdi_chain *chain)
{
  size_t i;

  if (chain->images)
    for (i = 0; i < chain->depth; ++i)
      vdi_image_close (chain->images[i]);
  free (chain->images);
  free (chain->fds);
  free (chain->sizes);
  free_table (chain->table, chain->table_pages);
  pthread_mutex_destroy (&chain->lock);
  pthread_mutex_destroy (&chain->flush_lock);
  pthread_cond_destroy (&chain->allocated);
  free (chain->allocating);
  free (chain->released);
  free (chain);
}

struct vdi_image **
vdi_chain_release (struct vdi_chain *chain, size_t *n)
{
  struct vdi_image **images = chain->images;

  *n = chain->depth;
  chain->images = NULL;
  vdi_chain_destroy (chain);
  return images;
}

uint64_t
vdi_chain_size (const struct vdi_chain *chain)
{
  return chain->size;
}

size_t
vdi_chain_depth (const struct vdi_chain *chain)
{
  return chain->depth;
}

struct vdi_image *
vdi_chain_image (const struct vdi_chain *chain, size_t i)
{
  return chain->images[i];
}

uint32_t
vdi_chain_granularity (const struct vdi_chain *chain)
{
  return UINT32_C (1) << chain->unit_bits;
}

/* The entry of unit u, and in *end the first unit past u that may
 * have another entry: the end of u's page if it is a shared one (all
 * its entries are the same), else u + 1.
 */
static inline uint64_t
entry_run (const struct vdi_chain *chain, uint64_t u, uint64_t *end)
{
  const uint64_t *page = __atomic_load_n (&chain->table[u >> TABLE_PAGE_BITS],
                                          __ATOMIC_ACQUIRE);

  *end = is_shared_page (page) ? (u | (TABLE_PAGE_ENTRIES - 1)) + 1 : u + 1;
  return __atomic_load_n (&page[u & (TABLE_PAGE_ENTRIES - 1)],
                          __ATOMIC_ACQUIRE);
}

/* True if the unit whose entry is next continues the run whose
 * previous unit had entry prev: both zero, both below, or the next
 * bytes of the same file.
 */
static inline bool
continues_run (const struct vdi_chain *chain, uint64_t prev, uint64_t next)
{
  if (prev == ENTRY_ZERO || prev == ENTRY_BELOW)
    return next == prev;
  return next == prev + (UINT64_C (1) << chain->unit_bits);
}

int
vdi_chain_pread (const struct vdi_chain *chain, void *buf,
                 uint32_t count, uint64_t offset,
                 const struct vdi_below *below)
{
  const uint64_t unit_size = UINT64_C (1) << chain->unit_bits;
  char *p = buf;

  while (count > 0) {
    uint64_t u = offset >> chain->unit_bits, next_u, next_end;
    uint64_t first = entry_run (chain, u, &next_u), last = first, next;
    uint64_t run = MIN ((uint64_t) count,
                        (next_u << chain->unit_bits) - offset);

    /* Extend the run over the following units (a shared page at once)
     * while they continue it.
     */
    while (run < count &&
           continues_run (chain, last,
                          next = entry_run (chain, next_u, &next_end))) {
      last = next;
      next_u = next_end;
      run = MIN ((uint64_t) count, (next_u << chain->unit_bits) - offset);
    }

    if (first == ENTRY_ZERO || (first == ENTRY_BELOW && below == NULL))
      memset (p, 0, run);
    else if (first == ENTRY_BELOW) {
      if (below->pread (below->opaque, p, run, offset) == -1)
        return -1;
    }
    else {
      size_t i = first >> ENTRY_IMAGE_SHIFT;
      uint64_t where = (first & ENTRY_OFFSET_MASK) + (offset & (unit_size - 1));

      if (vdi_full_pread (chain->fds[i], p, run, where) == -1) {
        vdi_error ("%s: pread at %" PRIu64 ": %m",
                   vdi_image_filename (chain->images[i]), where);
        return -1;
      }
      /* A parent may end inside a unit: past its end it reads zeros. */
      if (offset + run > chain->sizes[i]) {
        uint64_t keep = offset < chain->sizes[i] ? chain->sizes[i] - offset : 0;

        memset (p + keep, 0, run - keep);
      }
    }
    p += run;
    count -= run;
    offset += run;
  }
  return 0;
}

static enum vdi_extent_type
extent_type (uint64_t entry)
{
  switch (entry) {
  case ENTRY_ZERO:  return VDI_EXTENT_ZERO;
  case ENTRY_BELOW: return VDI_EXTENT_BELOW;
  default:          return VDI_EXTENT_DATA;
  }
}

int
vdi_chain_extents (const struct vdi_chain *chain,
                   uint64_t offset, uint64_t count, bool only_first,
                   vdi_extent_function fn, void *opaque)
{
  const uint64_t end = MIN (offset + count, chain->size);

  while (offset < end) {
    uint64_t next_u, next_end, run_end;
    enum vdi_extent_type type =
      extent_type (entry_run (chain, offset >> chain->unit_bits, &next_u));

    /* Extend the run over the following units (a shared page at once)
     * while they have the same type.
     */
    while ((next_u << chain->unit_bits) < end &&
           extent_type (entry_run (chain, next_u, &next_end)) == type)
      next_u = next_end;
    run_end = MIN (next_u << chain->unit_bits, end);

    if (fn (opaque, offset, run_end - offset, type) == -1)
      return -1;
    if (only_first)
      break;
    offset = run_end;
  }
  return 0;
}

/* A hidden top image shows nothing: the chain shows its parent's
 * content, and a differencing image made over it (the vdidiff filter)
 * must link to that parent.
 */
char *
vdi_chain_description (const struct vdi_chain *chain)
{
  const size_t shown = chain->top_hidden ? 1 : 0;
  const struct vdi_header *h = vdi_image_header (chain->images[shown]);
  char create[VDI_UUID_STRLEN], modify[VDI_UUID_STRLEN];
  char *s;

  if (asprintf (&s, "VirtualBox %s image {%s}, modification {%s}, "
                "chain depth %zu", vdi_type_name (h->type),
                vdi_uuid_format (&h->uuid_create, create),
                vdi_uuid_format (&h->uuid_modify, modify),
                chain->depth - shown) == -1) {
    vdi_error ("asprintf: %m");
    return NULL;
  }
  return s;
}

/* Parse the braced UUID that follows the first occurrence of key. */
static int
parse_uuid_after (const char *s, const char *key, struct vdi_uuid *uuid)
{
  char text[VDI_UUID_STRLEN + 2];

  s = strstr (s, key);
  if (s == NULL || strlen (s += strlen (key)) < sizeof text - 1)
    return -1;
  memcpy (text, s, sizeof text - 1);
  text[sizeof text - 1] = '\0';
  return vdi_uuid_parse (text, uuid);
}

int
vdi_description_parse (const char *description,
                       struct vdi_uuid *create, struct vdi_uuid *modify)
{
  if (strncmp (description, "VirtualBox ", 11) != 0)
    return -1;
  if (parse_uuid_after (description, " image ", create) == -1 ||
      parse_uuid_after (description, ", modification ", modify) == -1)
    return -1;
  return 0;
}
