/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Declarations shared by the files of libvdi, not exported. */

#ifndef VDI_INTERNAL_H
#define VDI_INTERNAL_H

#include "vdi.h"

extern void vdi_error (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));
extern void vdi_warning (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));
extern void vdi_debug (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));

/* Demote errors of this thread to debug messages while on, for
 * probing files that may well not be VDI images.  Returns the
 * previous setting.
 */
extern bool vdi_quiet (bool on);

/* pread/pwrite the whole range, or fail with errno set (EIO for a
 * short read past the end of the file).
 */
extern int vdi_full_pread (int fd, void *buf, size_t count, uint64_t offset);

#endif /* VDI_INTERNAL_H */
