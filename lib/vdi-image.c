/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* One open VDI file: its header and its block map in host order. */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <endian.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "rounding.h"

#include "vdi-internal.h"

/* The chain's lookup table keeps file offsets in 54 bits. */
#define VDI_MAX_FILE_SIZE (UINT64_C (1) << 54)

struct vdi_image {
  char *filename;
  int fd;
  uint64_t file_size;
  struct vdi_header header;
  uint32_t *map;                /* cBlocks entries, host order, or NULL */
};

int
vdi_full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

/* Load the block map and check every entry: it must name a slot of
 * this image whose data lies inside the file, and no two entries may
 * share a slot.
 */
static int
load_map (struct vdi_image *img)
{
  const struct vdi_header *h = &img->header;
  const size_t map_size = 4 * (size_t) h->blocks;
  const uint64_t slot_size = (uint64_t) h->block_extra + h->block_size;
  CLEANUP_FREE uint8_t *used = NULL;
  uint32_t i;

  img->map = malloc (map_size);
  used = calloc (DIV_ROUND_UP ((size_t) h->blocks, 8), 1);
  if (img->map == NULL || used == NULL) {
    vdi_error ("%s: cannot allocate the block map (%" PRIu32 " entries): %m",
               img->filename, h->blocks);
    return -1;
  }
  if (vdi_full_pread (img->fd, img->map, map_size, h->blocks_offset) == -1) {
    vdi_error ("%s: reading the block map: %m", img->filename);
    return -1;
  }

  for (i = 0; i < h->blocks; ++i) {
    uint32_t slot = le32toh (img->map[i]);

    img->map[i] = slot;
    if (!VDI_BLOCK_IS_ALLOCATED (slot))
      continue;
    /* Slots are handed out in order, so a slot at or past the counter
     * would be handed out again: VirtualBox calls that a bad header.
     */
    if (slot >= h->blocks_allocated) {
      vdi_error ("%s: corrupt block map: entry %" PRIu32
                 " points to slot %" PRIu32 " but only %" PRIu32
                 " blocks are allocated", img->filename, i, slot,
                 h->blocks_allocated);
      return -1;
    }
    if (h->data_offset + (slot + 1) * slot_size > img->file_size) {
      vdi_error ("%s: corrupt block map: entry %" PRIu32
                 " points to slot %" PRIu32 " at offset %" PRIu64
                 ", past the end of the file (%" PRIu64 " bytes)",
                 img->filename, i, slot, h->data_offset + slot * slot_size,
                 img->file_size);
      return -1;
    }
    if (used[slot / 8] & (1 << (slot % 8))) {
      uint32_t first = 0;

      while (img->map[first] != slot)
        first++;
      vdi_error ("%s: corrupt block map: entries %" PRIu32 " and %" PRIu32
                 " both point to slot %" PRIu32,
                 img->filename, first, i, slot);
      return -1;
    }
    used[slot / 8] |= 1 << (slot % 8);
  }
  return 0;
}

struct vdi_image *
vdi_image_open (const char *filename, unsigned flags)
{
  struct vdi_image *img;
  uint8_t buf[VDI_HEADER_READ_SIZE];
  struct stat st;
  off_t size;
  size_t len;

  img = calloc (1, sizeof *img);
  if (img == NULL) {
    vdi_error ("%s: calloc: %m", filename);
    return NULL;
  }
  img->fd = -1;
  img->filename = strdup (filename);
  if (img->filename == NULL) {
    vdi_error ("%s: strdup: %m", filename);
    goto err;
  }

  img->fd = open (filename, O_RDONLY | O_CLOEXEC);
  if (img->fd == -1) {
    vdi_error ("%s: open: %m", filename);
    goto err;
  }
  if (fstat (img->fd, &st) == -1) {
    vdi_error ("%s: fstat: %m", filename);
    goto err;
  }
  if (!S_ISREG (st.st_mode) && !S_ISBLK (st.st_mode)) {
    vdi_error ("%s: not a regular file or block device", filename);
    goto err;
  }
  size = lseek (img->fd, 0, SEEK_END);
  if (size == -1) {
    vdi_error ("%s: lseek: %m", filename);
    goto err;
  }
  img->file_size = size;
  if (img->file_size >= VDI_MAX_FILE_SIZE) {
    vdi_error ("%s: the file is too large (%" PRIu64 " bytes)",
               filename, img->file_size);
    goto err;
  }

  len = img->file_size < sizeof buf ? img->file_size : sizeof buf;
  if (vdi_full_pread (img->fd, buf, len, 0) == -1) {
    vdi_error ("%s: reading the header: %m", filename);
    goto err;
  }
  if (vdi_header_decode (filename, buf, len, &img->header) == -1 ||
      vdi_header_validate (filename, &img->header, img->file_size) == -1)
    goto err;

  if (!(flags & VDI_OPEN_HEADER_ONLY) && load_map (img) == -1)
    goto err;

  return img;

 err:
  vdi_image_close (img);
  return NULL;
}

void
vdi_image_close (struct vdi_image *img)
{
  if (img == NULL)
    return;
  if (img->fd >= 0)
    close (img->fd);
  free (img->map);
  free (img->filename);
  free (img);
}

const char *
vdi_image_filename (const struct vdi_image *img)
{
  return img->filename;
}

const struct vdi_header *
vdi_image_header (const struct vdi_image *img)
{
  return &img->header;
}

int
vdi_image_fd (const struct vdi_image *img)
{
  return img->fd;
}

uint32_t
vdi_image_map_entry (const struct vdi_image *img, uint32_t i)
{
  return img->map[i];
}

bool
vdi_image_has_map (const struct vdi_image *img)
{
  return img->map != NULL;
}
