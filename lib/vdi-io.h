/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Whole-range file I/O, for libvdi and its unit tests. */

#ifndef VDI_IO_H
#define VDI_IO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* pread/pwrite the whole range, retrying short transfers and EINTR,
 * or fail with errno set (EIO for a read past the end of the file).
 * Nothing is logged.
 */
extern int vdi_full_pread (int fd, void *buf, size_t count, uint64_t offset)
  __attribute__ ((__nonnull__ (2)));
extern int vdi_full_pwrite (int fd, const void *buf, size_t count,
                            uint64_t offset)
  __attribute__ ((__nonnull__ (2)));

/* True if the len bytes at buf are all zero. */
extern bool vdi_is_zero (const void *buf, size_t len);

#endif /* VDI_IO_H */
