/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The glue between libvdi and nbdkit that the vdi plugin and the
 * vdidiff filter share.  Include after <nbdkit-plugin.h> or
 * <nbdkit-filter.h>: only the API common to both is used.
 */

#ifndef VDI_NBDKIT_H
#define VDI_NBDKIT_H

#include <stdbool.h>
#include <stdint.h>

#include "libvdi.h"

/* For .load: route libvdi's messages to nbdkit, and tune malloc for
 * request buffers.  name ("vdi", "vdidiff") prefixes what goes to
 * stderr.
 */
extern void vdi_nbdkit_load (const char *name)
  __attribute__ ((__nonnull__ (1)));

/* A message for the user that is not an error, such as a warning or
 * a note saying why something was done: nbdkit has no call for these
 * and its debug messages need -v, so they go to stderr as
 * "nbdkit: NAME: KIND: message".
 */
extern void vdi_nbdkit_tell (const char *kind, const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 2, 3), __nonnull__ (1, 2)));

/* nbdkit's request flags as libvdi's write flags. */
extern unsigned vdi_nbdkit_write_flags (uint32_t flags);

/* libvdi's extent types as nbdkit's. */
extern uint32_t vdi_nbdkit_extent_type (enum vdi_extent_type type);

/* The block size NBD clients should prefer for this chain. */
extern uint32_t vdi_nbdkit_preferred_block_size (const struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));

/* Whether nbdkit was started read-only (-r), which nbdkit tells only
 * per connection: a server that will write locks its images at start,
 * and one that will not creates and changes nothing.
 */
extern bool vdi_nbdkit_server_read_only (void);

/* The argument of the server's option --long_name (or -short_name,
 * unless short_name is 0) as given on its command line, the last one
 * if repeated, or NULL: for example the pid file of -P.
 */
extern const char *vdi_nbdkit_server_option (const char *long_name,
                                             char short_name)
  __attribute__ ((__nonnull__ (1)));

/* Whether the filter name ("vdidiff") is stacked on this server. */
extern bool vdi_nbdkit_filter_stacked (const char *name)
  __attribute__ ((__nonnull__ (1)));

#endif /* VDI_NBDKIT_H */
