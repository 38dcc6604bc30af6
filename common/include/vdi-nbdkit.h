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

#include "vdi.h"

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
 * between 512 bytes and 32 MiB; VDI block sizes are powers of two.
 */
static inline uint32_t
vdi_nbdkit_preferred_block_size (const struct vdi_chain *chain)
{
  const uint32_t block_size =
    vdi_image_header (vdi_chain_image (chain, 0))->block_size;

  if (block_size < 512)
    return 512;
  if (block_size > 32 * 1024 * 1024)
    return 32 * 1024 * 1024;
  return block_size;
}

#endif /* VDI_NBDKIT_H */
