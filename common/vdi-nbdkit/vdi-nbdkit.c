/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the vdi plugin and the vdidiff filter both need to put libvdi
 * into nbdkit.  This is the only code outside plugin/ and filter/
 * that knows both nbdkit and libvdi.
 */

#include <config.h>

#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif

/* The plugin header declares the server's functions and flags that
 * filters share; nothing here is particular to plugins.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "minmax.h"
#include "static-assert.h"

#include "vdi-nbdkit.h"

/* The plugin's or filter's name, for messages on stderr. */
static const char *component = "vdi";

static void
tell (const char *kind, const char *msg)
{
  fprintf (stderr, "nbdkit: %s: %s: %s\n", component, kind, msg);
}

void
vdi_nbdkit_tell (const char *kind, const char *fs, ...)
{
  va_list args;
  char *msg;

  va_start (args, fs);
  if (vasprintf (&msg, fs, args) == -1)
    msg = NULL;
  va_end (args);
  tell (kind, msg ? msg : fs);
  free (msg);
}

/* libvdi's messages: errors and debug go to nbdkit, warnings to
 * stderr (debug would hide them).
 */
static void
log_to_nbdkit (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    nbdkit_error ("%s", msg);
    break;
  case VDI_LOG_WARNING:
    tell ("warning", msg);
    break;
  case VDI_LOG_DEBUG:
    nbdkit_debug ("%s", msg);
    break;
  }
}

/* nbdkit allocates a buffer for each request.  glibc gives large ones
 * their own mmap, starting 16 bytes into a page, until its threshold
 * has grown past them.  The kernel then copies page-aligned file data
 * (VDI data areas are aligned) to 16 bytes past the same page offset,
 * and on x86 that copy runs about three times slower (4K aliasing in
 * rep movsb): the first pass over a chain whose layers we made read at
 * a third of the speed of later passes.  So requests up to NBD's
 * 32 MiB come from the heap from the start.
 */
void
vdi_nbdkit_load (const char *name)
{
  component = name;
  vdi_set_log_function (log_to_nbdkit);
#ifdef HAVE_MALLOPT
  mallopt (M_MMAP_THRESHOLD, 32 * 1024 * 1024);
#endif
}

unsigned
vdi_nbdkit_write_flags (uint32_t flags)
{
  return (flags & NBDKIT_FLAG_FUA ? VDI_WRITE_FUA : 0) |
    (flags & NBDKIT_FLAG_FAST_ZERO ? VDI_ZERO_FAST : 0);
}

uint32_t
vdi_nbdkit_extent_type (enum vdi_extent_type type)
{
  return type == VDI_EXTENT_DATA ? 0
    : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
}

/* A write of whole blocks of the top image never copies data up, and
 * large reads are served in one pread where the blocks lie together.
 * NBD wants a power of two between 512 bytes and 32 MiB; VDI block
 * sizes are powers of two of at least 128 KiB, but may be larger than
 * 32 MiB.
 */
uint32_t
vdi_nbdkit_preferred_block_size (const struct vdi_chain *chain)
{
  STATIC_ASSERT (VDI_MIN_BLOCK_SIZE >= 512, vdi_blocks_fit_nbd_minimum);
  return MIN (vdi_image_header (vdi_chain_image (chain, 0))->block_size,
              UINT32_C (32 * 1024 * 1024));
}
