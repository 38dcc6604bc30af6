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
 *   0                       zeros (ZERO, or FREE all the way down)
 *   image << 54 | offset    the unit is at this file offset of
 *                           chain->images[image]
 *
 * Offset 0 is the pre-header, never data, so 0 is free to mean zero.
 * A read then costs one table lookup per unit and one pread per run
 * of units that are contiguous in one file, whatever the depth.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>

#include "ispowerof2.h"
#include "minmax.h"
#include "rounding.h"

#include "vdi-internal.h"

#define ENTRY_IMAGE_SHIFT 54
#define ENTRY_OFFSET_MASK ((UINT64_C (1) << ENTRY_IMAGE_SHIFT) - 1)
#define ENTRY_ZERO        UINT64_C (0)
/* Used only while resolving: no layer so far has had the unit. */
#define ENTRY_UNRESOLVED  UINT64_MAX

struct vdi_chain {
  struct vdi_image **images;    /* [0] is the top */
  int *fds;                     /* fds[i] of images[i], for the read path */
  size_t depth;
  uint64_t size;                /* virtual size of the top image */
  unsigned unit_bits;           /* log2 of the table's unit */
  uint64_t units;
  uint64_t *table;
};

/* Fill the still unresolved entries from one layer. */
static void
resolve_layer (struct vdi_chain *chain, size_t layer)
{
  const struct vdi_image *img = chain->images[layer];
  const struct vdi_header *h = vdi_image_header (img);
  const uint64_t layer_size = vdi_header_virtual_size (h);
  const unsigned block_bits = log_2_bits (h->block_size);
  uint64_t u;

  for (u = 0; u < chain->units; ++u) {
    uint64_t offset = u << chain->unit_bits;
    uint32_t entry;

    if (chain->table[u] != ENTRY_UNRESOLVED)
      continue;
    /* Past a parent's end the chain reads zeros. */
    if (offset >= layer_size) {
      chain->table[u] = ENTRY_ZERO;
      continue;
    }
    entry = vdi_image_map_entry (img, offset >> block_bits);
    if (entry == VDI_BLOCK_FREE)
      continue;
    if (entry == VDI_BLOCK_ZERO)
      chain->table[u] = ENTRY_ZERO;
    else
      chain->table[u] = (uint64_t) layer << ENTRY_IMAGE_SHIFT |
        (vdi_header_slot_offset (h, entry) + (offset & (h->block_size - 1)));
  }
}

struct vdi_chain *
vdi_chain_new (struct vdi_image **images, size_t n)
{
  struct vdi_chain *chain;
  uint32_t unit = UINT32_MAX;
  size_t i;
  uint64_t u;

  chain = calloc (1, sizeof *chain);
  if (chain == NULL) {
    vdi_error ("calloc: %m");
    for (i = 0; i < n; ++i)
      vdi_image_close (images[i]);
    return NULL;
  }
  chain->depth = n;
  chain->images = calloc (n, sizeof *chain->images);
  chain->fds = calloc (n, sizeof *chain->fds);
  if (chain->images == NULL || chain->fds == NULL) {
    vdi_error ("calloc: %m");
    for (i = 0; i < n; ++i)
      vdi_image_close (images[i]);
    goto err;
  }
  for (i = 0; i < n; ++i) {
    chain->images[i] = images[i];
    chain->fds[i] = vdi_image_fd (images[i]);
  }

  if (n == 0 || n > (size_t) 1 << (64 - ENTRY_IMAGE_SHIFT)) {
    vdi_error ("a chain must have between 1 and %d images, not %zu",
               1 << (64 - ENTRY_IMAGE_SHIFT), n);
    goto err;
  }

  for (i = 0; i < n; ++i)
    unit = MIN (unit, vdi_image_header (images[i])->block_size);
  chain->unit_bits = log_2_bits (unit);
  chain->size = vdi_header_virtual_size (vdi_image_header (images[0]));
  chain->units = DIV_ROUND_UP (chain->size, (uint64_t) unit);

  chain->table = malloc (MAX (chain->units, UINT64_C (1)) * sizeof *chain->table);
  if (chain->table == NULL) {
    vdi_error ("%s: cannot allocate the lookup table (%" PRIu64
               " entries): %m", vdi_image_filename (images[0]), chain->units);
    goto err;
  }
  for (u = 0; u < chain->units; ++u)
    chain->table[u] = ENTRY_UNRESOLVED;
  for (i = 0; i < n; ++i)
    resolve_layer (chain, i);
  for (u = 0; u < chain->units; ++u)
    if (chain->table[u] == ENTRY_UNRESOLVED)
      chain->table[u] = ENTRY_ZERO;

  return chain;

 err:
  vdi_chain_free (chain);
  return NULL;
}

void
vdi_chain_free (struct vdi_chain *chain)
{
  size_t i;

  if (chain == NULL)
    return;
  if (chain->images)
    for (i = 0; i < chain->depth; ++i)
      vdi_image_close (chain->images[i]);
  free (chain->images);
  free (chain->fds);
  free (chain->table);
  free (chain);
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

/* True if unit u continues the run whose previous unit had entry
 * prev: both zero, or the next bytes of the same file.
 */
static inline bool
continues_run (const struct vdi_chain *chain, uint64_t prev, uint64_t next)
{
  if (prev == ENTRY_ZERO)
    return next == ENTRY_ZERO;
  return next == prev + (UINT64_C (1) << chain->unit_bits);
}

int
vdi_chain_pread (const struct vdi_chain *chain, void *buf,
                 uint32_t count, uint64_t offset)
{
  const uint64_t unit_mask = (UINT64_C (1) << chain->unit_bits) - 1;
  char *p = buf;

  while (count > 0) {
    uint64_t u = offset >> chain->unit_bits;
    uint64_t first = chain->table[u], last = first;
    uint64_t run = MIN ((uint64_t) count, (unit_mask + 1) - (offset & unit_mask));

    /* Extend the run over the following units while they continue it. */
    while (run < count && continues_run (chain, last, chain->table[u + 1])) {
      last = chain->table[++u];
      run = MIN ((uint64_t) count, run + unit_mask + 1);
    }

    if (first == ENTRY_ZERO)
      memset (p, 0, run);
    else {
      int fd = chain->fds[first >> ENTRY_IMAGE_SHIFT];
      uint64_t where = (first & ENTRY_OFFSET_MASK) + (offset & unit_mask);

      if (vdi_full_pread (fd, p, run, where) == -1) {
        vdi_error ("%s: pread at %" PRIu64 ": %m",
                   vdi_image_filename
                   (chain->images[first >> ENTRY_IMAGE_SHIFT]), where);
        return -1;
      }
    }
    p += run;
    count -= run;
    offset += run;
  }
  return 0;
}

int
vdi_chain_extents (const struct vdi_chain *chain,
                   uint64_t offset, uint64_t count, bool only_first,
                   vdi_extent_function fn, void *opaque)
{
  const uint64_t unit_size = UINT64_C (1) << chain->unit_bits;
  const uint64_t end = MIN (offset + count, chain->size);

  while (offset < end) {
    uint64_t u = offset >> chain->unit_bits;
    bool is_zero = chain->table[u] == ENTRY_ZERO;
    uint64_t run_end = ROUND_DOWN (offset, unit_size) + unit_size;

    while (run_end < end &&
           (chain->table[run_end >> chain->unit_bits] == ENTRY_ZERO) == is_zero)
      run_end += unit_size;
    run_end = MIN (run_end, end);

    if (fn (opaque, offset, run_end - offset, is_zero) == -1)
      return -1;
    if (only_first)
      break;
    offset = run_end;
  }
  return 0;
}
