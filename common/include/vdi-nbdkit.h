/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the vdi plugin and the vdidiff filter both need to put libvdi
 * into nbdkit.  Include after <nbdkit-plugin.h> or <nbdkit-filter.h>.
 */

#ifndef VDI_NBDKIT_H
#define VDI_NBDKIT_H

#include <stdio.h>
#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif

#include "minmax.h"
#include "static-assert.h"
#include "libvdi.h"

/* libvdi's messages: errors and debug go to nbdkit; warnings, which
 * nbdkit has no call for and debug would hide, go to stderr.
 */
static inline void
vdi_nbdkit_log (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    nbdkit_error ("%s", msg);
    break;
  case VDI_LOG_WARNING:
    fprintf (stderr, "nbdkit: warning: %s\n", msg);
    break;
  case VDI_LOG_DEBUG:
    nbdkit_debug ("%s", msg);
    break;
  }
}

/* For .load.  nbdkit allocates a buffer for each request.  glibc
 * gives large ones their own mmap, starting 16 bytes into a page,
 * until its threshold has grown past them.  The kernel then copies
 * page-aligned file data (VDI data areas are aligned) to 16 bytes past
 * the same page offset, and on x86 that copy runs about three times
 * slower (4K aliasing in rep movsb): the first pass over a chain whose
 * layers we made read at a third of the speed of later passes.  So
 * requests up to NBD's 32 MiB come from the heap from the start.
 */
static inline void
vdi_nbdkit_load (void)
{
  vdi_set_log_function (vdi_nbdkit_log);
#ifdef HAVE_MALLOPT
  mallopt (M_MMAP_THRESHOLD, 32 * 1024 * 1024);
#endif
}

/* nbdkit's request flags as libvdi's write flags. */
static inline unsigned
vdi_nbdkit_write_flags (uint32_t flags)
{
  return (flags & NBDKIT_FLAG_FUA ? VDI_WRITE_FUA : 0) |
    (flags & NBDKIT_FLAG_FAST_ZERO ? VDI_ZERO_FAST : 0);
}

/* The block size NBD clients should prefer: a write of whole blocks of
 * the top image never copies data up, and large reads are served in
 * one pread where the blocks lie together.  NBD wants a power of two
 * between 512 bytes and 32 MiB; VDI block sizes are powers of two of
 * at least 128 KiB, but may be larger than 32 MiB.
 */
static inline uint32_t
vdi_nbdkit_preferred_block_size (const struct vdi_chain *chain)
{
  STATIC_ASSERT (VDI_MIN_BLOCK_SIZE >= 512, vdi_blocks_fit_nbd_minimum);
  return MIN (vdi_image_header (vdi_chain_image (chain, 0))->block_size,
              UINT32_C (32 * 1024 * 1024));
}

#endif /* VDI_NBDKIT_H */
