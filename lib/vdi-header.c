/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Decoding, validating and encoding VDI headers.
 *
 * vdi_header_decode only works out the layout (signature, version,
 * header size) and converts every field to host order.
 * vdi_header_validate then applies VirtualBox's open-time checks
 * (VDI.cpp vdiValidateHeader) and bounds everything that later feeds
 * a file offset or a memory allocation by the size of the file, so
 * that nothing after it can overflow or read past the end.
 */

#include <config.h>

#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include <inttypes.h>
#include <endian.h>

#include "checked-overflow.h"
#include "ispowerof2.h"
#include "rounding.h"

#include "vdi-internal.h"

static void
geometry_to_cpu (struct vdi_disk_geometry *dst,
                 const struct vdi_disk_geometry *src)
{
  dst->cylinders = le32toh (src->cylinders);
  dst->heads = le32toh (src->heads);
  dst->sectors = le32toh (src->sectors);
  dst->sector_size = le32toh (src->sector_size);
}

static void
geometry_to_le (struct vdi_disk_geometry *dst,
                const struct vdi_disk_geometry *src)
{
  dst->cylinders = htole32 (src->cylinders);
  dst->heads = htole32 (src->heads);
  dst->sectors = htole32 (src->sectors);
  dst->sector_size = htole32 (src->sector_size);
}

/* Copy a fixed-size on-disk string, which may lack its NUL. */
static void
copy_string (char *dst, const char *src, size_t src_size)
{
  memcpy (dst, src, src_size);
  dst[src_size] = '\0';
}

static void
header_1_to_cpu (struct vdi_header *h, const struct vdi_disk_header_1 *d)
{
  h->header_size = le32toh (d->header_size);
  h->type = le32toh (d->type);
  h->flags = le32toh (d->flags);
  copy_string (h->comment, d->comment, sizeof d->comment);
  h->blocks_offset = le32toh (d->blocks_offset);
  h->data_offset = le32toh (d->data_offset);
  geometry_to_cpu (&h->legacy_geometry, &d->legacy_geometry);
  h->disk_size = le64toh (d->disk_size);
  h->block_size = le32toh (d->block_size);
  h->block_extra = le32toh (d->block_extra);
  h->blocks = le32toh (d->blocks);
  h->blocks_allocated = le32toh (d->blocks_allocated);
  vdi_uuid_from_disk (&h->uuid_create, d->uuid_create);
  vdi_uuid_from_disk (&h->uuid_modify, d->uuid_modify);
  vdi_uuid_from_disk (&h->uuid_linkage, d->uuid_linkage);
  vdi_uuid_from_disk (&h->uuid_parent_modify, d->uuid_parent_modify);
  if (h->header_size >= VDI_HEADER_1_1_PLUS_SIZE)
    geometry_to_cpu (&h->lchs_geometry, &d->lchs_geometry);
}

static void
header_0_to_cpu (struct vdi_header *h, const struct vdi_disk_header_0 *d)
{
  h->header_size = VDI_HEADER_V0_SIZE;
  h->type = le32toh (d->type);
  h->flags = le32toh (d->flags);
  copy_string (h->comment, d->comment, sizeof d->comment);
  geometry_to_cpu (&h->legacy_geometry, &d->legacy_geometry);
  h->disk_size = le64toh (d->disk_size);
  h->block_size = le32toh (d->block_size);
  h->blocks = le32toh (d->blocks);
  h->blocks_allocated = le32toh (d->blocks_allocated);
  vdi_uuid_from_disk (&h->uuid_create, d->uuid_create);
  vdi_uuid_from_disk (&h->uuid_modify, d->uuid_modify);
  vdi_uuid_from_disk (&h->uuid_linkage, d->uuid_linkage);

  /* v0 has no offset fields: the map follows the header and the data
   * follows the map, unaligned.  The data offset is computed in
   * 64 bits and checked in vdi_header_validate.
   */
  h->blocks_offset = VDI_V0_BLOCKS_OFFSET;
  if ((uint64_t) VDI_V0_BLOCKS_OFFSET + 4 * (uint64_t) h->blocks > UINT32_MAX)
    h->data_offset = UINT32_MAX;
  else
    h->data_offset = VDI_V0_BLOCKS_OFFSET + 4 * h->blocks;
}

/* Does the file start like an XML document or a VirtualBox settings
 * file (a .vbox or VirtualBox.xml given where a disk was wanted)?
 */
static bool
looks_like_settings (const void *buf, size_t len)
{
  const char *p = buf, *end = p + len;

  if (len >= 3 && memcmp (p, "\xef\xbb\xbf", 3) == 0) /* UTF-8 BOM */
    p += 3;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n'))
    p++;
  return (size_t) (end - p) >= 5 &&
    (memcmp (p, "<?xml", 5) == 0 || memcmp (p, "<Virt", 5) == 0);
}

int
vdi_header_decode (const char *filename, const void *buf, size_t len,
                   struct vdi_header *h)
{
  const struct vdi_disk_preheader *pre = buf;
  const void *rest = (const char *) buf + sizeof *pre;
  uint32_t signature;
  size_t needed;

  memset (h, 0, sizeof *h);

  if (looks_like_settings (buf, len)) {
    vdi_error ("%s: not a VDI image but a VirtualBox settings file, which "
               "names the disks: give it as the registry", filename);
    return -1;
  }
  if (len < sizeof *pre) {
    vdi_error ("%s: not a VDI image: the file is only %zu bytes long",
               filename, len);
    return -1;
  }
  /* What the file holds instead is not repeated: it may be anything
   * the user can read, and the message may reach others.
   */
  signature = le32toh (pre->signature);
  if (signature != VDI_SIGNATURE) {
    vdi_error ("%s: not a VDI image: no VDI signature at offset %zu",
               filename, offsetof (struct vdi_disk_preheader, signature));
    return -1;
  }
  copy_string (h->file_info, pre->file_info, sizeof pre->file_info);
  h->version = le32toh (pre->version);

  if (VDI_VERSION_MAJOR (h->version) == 1) {
    struct vdi_disk_header_1 d;

    if (len < sizeof *pre + 4) {
      vdi_error ("%s: truncated VDI header: the file is %zu bytes long, "
                 "the header needs %zu", filename, len, sizeof *pre + 4);
      return -1;
    }
    memset (&d, 0, sizeof d);
    memcpy (&d.header_size, rest, 4);
    h->header_size = le32toh (d.header_size);
    if (h->header_size < VDI_HEADER_1_1_SIZE) {
      vdi_error ("%s: bad VDI header: header size %" PRIu32
                 " is smaller than %d", filename, h->header_size,
                 VDI_HEADER_1_1_SIZE);
      return -1;
    }
    needed = h->header_size >= VDI_HEADER_1_1_PLUS_SIZE
      ? VDI_HEADER_1_1_PLUS_SIZE : VDI_HEADER_1_1_SIZE;
    if (len < sizeof *pre + needed) {
      vdi_error ("%s: truncated VDI header: the file is %zu bytes long, "
                 "the header needs %zu", filename, len, sizeof *pre + needed);
      return -1;
    }
    memcpy (&d, rest, needed);
    header_1_to_cpu (h, &d);
  }
  else if (h->version == VDI_VERSION_0) {
    struct vdi_disk_header_0 d;

    if (len < sizeof *pre + sizeof d) {
      vdi_error ("%s: truncated VDI header: the file is %zu bytes long, "
                 "the header needs %zu", filename, len, sizeof *pre + sizeof d);
      return -1;
    }
    memcpy (&d, rest, sizeof d);
    header_0_to_cpu (h, &d);
  }
  else {
    vdi_error ("%s: unsupported VDI version %" PRIu32 ".%" PRIu32
               " (0x%08" PRIx32 ")", filename,
               VDI_VERSION_MAJOR (h->version), h->version & 0xffff,
               h->version);
    return -1;
  }

  return 0;
}

int
vdi_header_validate (const char *filename, const struct vdi_header *h,
                     uint64_t file_size)
{
  char uuid[VDI_UUID_STRLEN];
  uint64_t map_end, covered, slot_size;

  if (h->type < VDI_TYPE_NORMAL || h->type > VDI_TYPE_DIFF) {
    vdi_error ("%s: bad VDI header: unknown image type %" PRIu32,
               filename, h->type);
    return -1;
  }
  /* VirtualBox shifts the flags left by 8 before comparing them
   * with its mask of known image flags, so it ignores bits 24-31;
   * so do we.
   */
  if ((uint32_t) (h->flags << 8) & ~UINT32_C (0x30100)) {
    vdi_error ("%s: bad VDI header: unknown image flags 0x%" PRIx32,
               filename, h->flags);
    return -1;
  }
  if (h->disk_size == 0) {
    vdi_error ("%s: bad VDI header: the disk size is zero", filename);
    return -1;
  }
  if (vdi_header_virtual_size (h) == 0) {
    vdi_error ("%s: bad VDI header: disk size %" PRIu64 " is less than "
               "one sector", filename, h->disk_size);
    return -1;
  }
  if (h->block_size == 0) {
    vdi_error ("%s: bad VDI header: the block size is zero", filename);
    return -1;
  }
  if (!is_power_of_2 (h->block_size)) {
    vdi_error ("%s: bad VDI header: block size %" PRIu32
               " is not a power of two", filename, h->block_size);
    return -1;
  }
  if (h->block_size < VDI_MIN_BLOCK_SIZE ||
      h->block_size > VDI_MAX_BLOCK_SIZE) {
    vdi_error ("%s: bad VDI header: block size %" PRIu32 " is outside "
               "the range VirtualBox opens (128 KiB to 128 MiB)",
               filename, h->block_size);
    return -1;
  }
  if (h->block_extra != 0 && !is_power_of_2 (h->block_extra)) {
    vdi_error ("%s: bad VDI header: extra block data size %" PRIu32
               " is neither 0 nor a power of two", filename, h->block_extra);
    return -1;
  }
  /* VirtualBox requires only that (vdiValidateHeader), and keeps
   * cbBlockExtra + cbBlock in 32 bits (cbTotalBlockData), so it opens
   * up to 2 GiB of extra bytes before each block; it never makes an
   * image with any, nor writes them.  Allocating a slot writes its
   * extra bytes, so more than a block of them would make a write of
   * one sector write gigabytes: at most one block is allowed.
   */
  if (h->block_extra > h->block_size) {
    vdi_error ("%s: unsupported VDI header: extra block data size %" PRIu32
               " is larger than the block size %" PRIu32
               " (VirtualBox never makes such images)",
               filename, h->block_extra, h->block_size);
    return -1;
  }
  if (h->blocks == 0) {
    vdi_error ("%s: bad VDI header: the block count is zero", filename);
    return -1;
  }
  /* At most 2^32 blocks of 2^27 bytes: this cannot overflow. */
  covered = (uint64_t) h->blocks * h->block_size;
  if (covered < h->disk_size) {
    vdi_error ("%s: bad VDI header: %" PRIu32 " blocks of %" PRIu32
               " bytes do not cover the disk size %" PRIu64,
               filename, h->blocks, h->block_size, h->disk_size);
    return -1;
  }
  if (h->blocks_allocated > h->blocks) {
    vdi_error ("%s: bad VDI header: %" PRIu32 " blocks allocated "
               "but the image has only %" PRIu32,
               filename, h->blocks_allocated, h->blocks);
    return -1;
  }
  if (vdi_uuid_is_null (&h->uuid_create)) {
    vdi_error ("%s: bad VDI header: the image UUID is null", filename);
    return -1;
  }
  if (vdi_uuid_is_null (&h->uuid_modify)) {
    vdi_error ("%s: bad VDI header: the modification UUID is null",
               filename);
    return -1;
  }
  if (h->type == VDI_TYPE_DIFF && vdi_uuid_is_null (&h->uuid_linkage)) {
    vdi_error ("%s: bad VDI header: differencing image %s has no "
               "parent UUID", filename,
               vdi_uuid_format (&h->uuid_create, uuid));
    return -1;
  }
  if (h->blocks_offset < VDI_MIN_BLOCKS_OFFSET &&
      h->version != VDI_VERSION_0) {
    vdi_error ("%s: bad VDI header: block map offset %" PRIu32
               " is inside the header", filename, h->blocks_offset);
    return -1;
  }
  if (h->header_size >= VDI_HEADER_1_1_PLUS_SIZE &&
      h->lchs_geometry.sector_size != VDI_SECTOR_SIZE) {
    vdi_error ("%s: bad VDI header: LCHS geometry sector size %" PRIu32
               " is not %d", filename, h->lchs_geometry.sector_size,
               VDI_SECTOR_SIZE);
    return -1;
  }
  map_end = h->blocks_offset + 4 * (uint64_t) h->blocks;
  if (h->data_offset < map_end) {
    vdi_error ("%s: bad VDI header: data offset %" PRIu32
               " is %s the block map (offset %" PRIu32
               ", %" PRIu32 " entries)",
               filename, h->data_offset,
               h->data_offset < h->blocks_offset ? "before" : "inside",
               h->blocks_offset, h->blocks);
    return -1;
  }
  if (map_end > file_size) {
    vdi_error ("%s: truncated VDI image: the block map ends at %" PRIu64
               " but the file is %" PRIu64 " bytes long",
               filename, map_end, file_size);
    return -1;
  }
  /* The data of the last possible slot must be addressable in 64
   * bits; map entries are bounded by the file size when loaded.
   */
  slot_size = (uint64_t) h->block_extra + h->block_size;
  if (MUL_OVERFLOW (slot_size, (uint64_t) h->blocks, &covered) ||
      ADD_OVERFLOW (covered, (uint64_t) h->data_offset, &covered)) {
    vdi_error ("%s: bad VDI header: the data area size overflows",
               filename);
    return -1;
  }
  return 0;
}

void
vdi_header_encode (const struct vdi_header *h, void *buf)
{
  struct vdi_disk_preheader *pre = buf;
  struct vdi_disk_header_1 d;

  memset (buf, 0, VDI_HEADER_READ_SIZE);
  memset (&d, 0, sizeof d);

  memcpy (pre->file_info, h->file_info,
          strnlen (h->file_info, sizeof pre->file_info));
  pre->signature = htole32 (VDI_SIGNATURE);
  pre->version = htole32 (h->version);

  d.header_size = htole32 (h->header_size);
  d.type = htole32 (h->type);
  d.flags = htole32 (h->flags);
  memcpy (d.comment, h->comment, strnlen (h->comment, sizeof d.comment));
  d.blocks_offset = htole32 (h->blocks_offset);
  d.data_offset = htole32 (h->data_offset);
  geometry_to_le (&d.legacy_geometry, &h->legacy_geometry);
  d.disk_size = htole64 (h->disk_size);
  d.block_size = htole32 (h->block_size);
  d.block_extra = htole32 (h->block_extra);
  d.blocks = htole32 (h->blocks);
  d.blocks_allocated = htole32 (h->blocks_allocated);
  vdi_uuid_to_disk (&h->uuid_create, d.uuid_create);
  vdi_uuid_to_disk (&h->uuid_modify, d.uuid_modify);
  vdi_uuid_to_disk (&h->uuid_linkage, d.uuid_linkage);
  vdi_uuid_to_disk (&h->uuid_parent_modify, d.uuid_parent_modify);
  geometry_to_le (&d.lchs_geometry, &h->lchs_geometry);

  memcpy (pre + 1, &d,
          h->header_size >= VDI_HEADER_1_1_PLUS_SIZE
          ? VDI_HEADER_1_1_PLUS_SIZE : VDI_HEADER_1_1_SIZE);
}

uint64_t
vdi_header_virtual_size (const struct vdi_header *h)
{
  return ROUND_DOWN (h->disk_size, (uint64_t) VDI_SECTOR_SIZE);
}

uint64_t
vdi_header_slots_end (const struct vdi_header *h, uint64_t n)
{
  return h->data_offset + n * ((uint64_t) h->block_extra + h->block_size);
}

uint64_t
vdi_header_slot_offset (const struct vdi_header *h, uint32_t slot)
{
  return vdi_header_slots_end (h, slot) + h->block_extra;
}

const char *
vdi_human_size (uint64_t n, char *buf, size_t len)
{
  static const char *const units[] = {
    "B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"
  };
  uint64_t unit = 1, whole, fraction;
  size_t u = 0;
  int decimals;

  while (u < 6 && n / unit >= 1024) {
    unit *= 1024;
    u++;
  }
  whole = n / unit;
  if (n % unit == 0) {
    snprintf (buf, len, "%" PRIu64 " %s", whole, units[u]);
    return buf;
  }
  /* Three digits or so, truncated in integers: a size is never shown
   * larger than it is (a limit of 1023.5 TiB is not 1024 TiB).
   */
  decimals = whole < 10 ? 2 : whole < 100 || whole >= 1000 ? 1 : 0;
  fraction = n % unit / (unit / 1024) * (decimals == 2 ? 100 : 10) / 1024;
  if (decimals == 0)
    snprintf (buf, len, "%" PRIu64 " %s", whole, units[u]);
  else
    snprintf (buf, len, "%" PRIu64 ".%0*" PRIu64 " %s",
              whole, decimals, fraction, units[u]);
  return buf;
}

const char *
vdi_type_name (uint32_t type)
{
  switch (type) {
  case VDI_TYPE_NORMAL: return "dynamic";
  case VDI_TYPE_FIXED:  return "fixed";
  case VDI_TYPE_UNDO:   return "undo";
  case VDI_TYPE_DIFF:   return "differencing";
  default:              return "unknown";
  }
}

/* The map of a new image starts 1 MiB into the file and the data
 * follows it 1 MiB-aligned, at a 32-bit offset: at most 4 GiB - 1 MiB.
 * That bounds the block count (to less than 2^30, so the 32-bit
 * cBlocks never wraps) and so the disk size.
 */
uint64_t
vdi_header_max_disk_size (uint32_t block_size)
{
  const uint64_t data_offset_max = ROUND_DOWN ((uint64_t) UINT32_MAX,
                                               (uint64_t) VDI_DATA_ALIGN);

  return (data_offset_max - VDI_DATA_ALIGN) / 4 * block_size;
}

/* A disk larger than vdi_header_max_disk_size would wrap blocks and
 * data_offset: vdi_image_create refuses such a header.
 */
void
vdi_header_init_dynamic (struct vdi_header *h, uint32_t type,
                         uint64_t disk_size, uint32_t block_size)
{
  uint64_t blocks_end;

  memset (h, 0, sizeof *h);
  strcpy (h->file_info, VDI_FILE_INFO);
  h->version = VDI_VERSION_1_1;
  h->header_size = VDI_HEADER_1_1_PLUS_SIZE;
  h->type = type;
  h->legacy_geometry.sector_size = VDI_SECTOR_SIZE;
  h->lchs_geometry.sector_size = VDI_SECTOR_SIZE;
  h->disk_size = disk_size;
  h->block_size = block_size;
  h->blocks = DIV_ROUND_UP (disk_size, (uint64_t) block_size);
  h->blocks_offset = VDI_DATA_ALIGN;
  blocks_end = h->blocks_offset + 4 * (uint64_t) h->blocks;
  h->data_offset = ROUND_UP (blocks_end, (uint64_t) VDI_DATA_ALIGN);
}
