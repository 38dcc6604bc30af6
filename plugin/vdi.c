/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit plugin serving VirtualBox VDI images.  The plugin is glue:
 * configuration keys become libvdi calls, and the chain that libvdi
 * resolves at start-up answers every read and extents request.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "vdi.h"

/* -D vdi.header=1: print the header and a block map summary of every
 * image opened.
 */
NBDKIT_DLL_PUBLIC int vdi_debug_header;

static char *filename;          /* file=, made absolute */

/* The disk being served, resolved in .get_ready. */
static struct vdi_chain *chain;
static char *description;

static void
log_to_nbdkit (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    nbdkit_error ("%s", msg);
    break;
  case VDI_LOG_WARNING:
    nbdkit_debug ("warning: %s", msg);
    break;
  case VDI_LOG_DEBUG:
    nbdkit_debug ("%s", msg);
    break;
  }
}

static void
vdi_load (void)
{
  vdi_set_log_function (log_to_nbdkit);
}

static void
vdi_unload (void)
{
  vdi_chain_free (chain);
  free (description);
  free (filename);
}

static int
vdi_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (filename);
    filename = nbdkit_realpath (value);
    if (filename == NULL)
      return -1;
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

static int
vdi_config_complete (void)
{
  if (filename == NULL) {
    nbdkit_error ("you must supply the [file=]<DISK.vdi> parameter "
                  "after the plugin name on the command line");
    return -1;
  }
  return 0;
}

#define vdi_config_help \
  "[file=]<DISK.vdi>   (required) The VirtualBox disk image to serve."

static void
vdi_dump_plugin (void)
{
  printf ("vdi_header_versions=0,1.1\n");
  printf ("vdi_image_types=dynamic,fixed,undo\n");
  printf ("vdi_block_size_min=%d\n", VDI_MIN_BLOCK_SIZE);
  printf ("vdi_block_size_max=%d\n", VDI_MAX_BLOCK_SIZE);
  printf ("vdi_extents=yes\n");
  printf ("vdi_write=no\n");
}

/* Print what -D vdi.header=1 asks for. */
static void
debug_image (const struct vdi_image *img)
{
  const struct vdi_header *h = vdi_image_header (img);
  char create[VDI_UUID_STRLEN], modify[VDI_UUID_STRLEN];
  char linkage[VDI_UUID_STRLEN], parent_modify[VDI_UUID_STRLEN];
  uint32_t i, data = 0, zero = 0, free_ = 0;

  for (i = 0; i < h->blocks; ++i) {
    uint32_t entry = vdi_image_map_entry (img, i);

    if (entry == VDI_BLOCK_FREE)
      free_++;
    else if (entry == VDI_BLOCK_ZERO)
      zero++;
    else
      data++;
  }

  nbdkit_debug ("%s: VDI %" PRIu32 ".%" PRIu32 ", header %" PRIu32
                " bytes, %s, flags 0x%" PRIx32 ", \"%s\"",
                vdi_image_filename (img),
                VDI_VERSION_MAJOR (h->version), h->version & 0xffff,
                h->header_size, vdi_type_name (h->type), h->flags,
                h->comment);
  nbdkit_debug ("%s: disk size %" PRIu64 ", block size %" PRIu32
                " + %" PRIu32 " extra, %" PRIu32 " blocks, %" PRIu32
                " allocated, map at %" PRIu32 ", data at %" PRIu32,
                vdi_image_filename (img), h->disk_size, h->block_size,
                h->block_extra, h->blocks, h->blocks_allocated,
                h->blocks_offset, h->data_offset);
  nbdkit_debug ("%s: uuid create %s modify %s linkage %s parent-modify %s",
                vdi_image_filename (img),
                vdi_uuid_format (&h->uuid_create, create),
                vdi_uuid_format (&h->uuid_modify, modify),
                vdi_uuid_format (&h->uuid_linkage, linkage),
                vdi_uuid_format (&h->uuid_parent_modify, parent_modify));
  nbdkit_debug ("%s: block map: %" PRIu32 " data, %" PRIu32 " zero, %"
                PRIu32 " free", vdi_image_filename (img), data, zero, free_);
}

static int
vdi_get_ready (void)
{
  struct vdi_image *img;
  const struct vdi_header *h;
  char uuid[VDI_UUID_STRLEN];

  img = vdi_image_open (filename, 0);
  if (img == NULL)
    return -1;
  if (vdi_debug_header)
    debug_image (img);

  h = vdi_image_header (img);
  if (h->type == VDI_TYPE_DIFF) {
    nbdkit_error ("%s: differencing images are not supported yet "
                  "(parent %s)", filename,
                  vdi_uuid_format (&h->uuid_linkage, uuid));
    vdi_image_close (img);
    return -1;
  }

  if (asprintf (&description, "VirtualBox %s image %s",
                vdi_type_name (h->type),
                vdi_uuid_format (&h->uuid_create, uuid)) == -1) {
    nbdkit_error ("asprintf: %m");
    vdi_image_close (img);
    return -1;
  }

  chain = vdi_chain_new (&img, 1);
  if (chain == NULL)
    return -1;
  return 0;
}

static void *
vdi_open (int readonly)
{
  return NBDKIT_HANDLE_NOT_NEEDED;
}

/* Reads go to pread on file descriptors shared by every connection
 * and to a lookup table that does not change while serving, so
 * requests can run in parallel.
 */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static const char *
vdi_export_description (void *handle)
{
  return description;
}

static int64_t
vdi_get_size (void *handle)
{
  return vdi_chain_size (chain);
}

/* Writes come with a later version: the plugin is read-only. */
static int
vdi_can_write (void *handle)
{
  return 0;
}

/* Every connection reads the same files through the same table. */
static int
vdi_can_multi_conn (void *handle)
{
  return 1;
}

static int
vdi_can_extents (void *handle)
{
  return 1;
}

static int
vdi_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  return vdi_chain_pread (chain, buf, count, offset);
}

static int
add_extent (void *extents, uint64_t offset, uint64_t length, bool is_zero)
{
  return nbdkit_add_extent (extents, offset, length,
                            is_zero ? NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO
                            : 0);
}

static int
vdi_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
             struct nbdkit_extents *extents)
{
  return vdi_chain_extents (chain, offset, count,
                            flags & NBDKIT_FLAG_REQ_ONE,
                            add_extent, extents);
}

static struct nbdkit_plugin plugin = {
  .name               = "vdi",
  .longname           = "nbdkit VirtualBox VDI plugin",
  .version            = PACKAGE_VERSION,
  .load               = vdi_load,
  .unload             = vdi_unload,
  .config             = vdi_config,
  .config_complete    = vdi_config_complete,
  .config_help        = vdi_config_help,
  .magic_config_key   = "file",
  .dump_plugin        = vdi_dump_plugin,
  .get_ready          = vdi_get_ready,
  .open               = vdi_open,
  .export_description = vdi_export_description,
  .get_size           = vdi_get_size,
  .can_write          = vdi_can_write,
  .can_multi_conn     = vdi_can_multi_conn,
  .can_extents        = vdi_can_extents,
  .pread              = vdi_pread,
  .extents            = vdi_extents,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
