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

#endif /* VDI_NBDKIT_H */
