/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The VirtualBox VDI on-disk format.  The layout follows VirtualBox's
 * VDICore.h; see docs/vdi-format.md in the project's shared notes.
 * Every integer on disk is little-endian.  These structs mirror the
 * disk byte for byte and are only ever converted as a whole by
 * vdi_header_decode / vdi_header_encode.
 */

#ifndef VDI_FORMAT_H
#define VDI_FORMAT_H

#include <stdint.h>

#include "static-assert.h"

#define VDI_SIGNATURE          0xbeda107f
#define VDI_VERSION_1_1        0x00010001
#define VDI_VERSION_0          0x00000002 /* legacy major-0 layout */
#define VDI_VERSION_MAJOR(v)   ((v) >> 16)

/* Header sizes (the cbHeader field; v0 has no such field). */
#define VDI_HEADER_1_1_SIZE       384     /* plain 1.1, as QEMU writes */
#define VDI_HEADER_1_1_PLUS_SIZE  400     /* 1.1 + LCHS, as VirtualBox writes */
#define VDI_HEADER_V0_SIZE        348

/* The block map of a 1.1 image may not start before the end of the
 * largest header: pre-header (72) + 400 - 16 bytes of LCHS = 0x1c8.
 */
#define VDI_MIN_BLOCKS_OFFSET     0x1c8
/* A v0 image has its map right after the header. */
#define VDI_V0_BLOCKS_OFFSET      (72 + VDI_HEADER_V0_SIZE)

/* How many bytes at the start of a file hold every header variant. */
#define VDI_HEADER_READ_SIZE      512

/* The text VirtualBox writes at the start of the images it creates. */
#define VDI_FILE_INFO "<<< Oracle VirtualBox Disk Image >>>\n"

/* Image types. */
#define VDI_TYPE_NORMAL  1      /* dynamic */
#define VDI_TYPE_FIXED   2      /* preallocated */
#define VDI_TYPE_UNDO    3      /* obsolete; read as dynamic */
#define VDI_TYPE_DIFF    4      /* differencing */

/* Block map entries at or above VDI_BLOCK_ZERO are not slots. */
#define VDI_BLOCK_FREE   UINT32_C(0xffffffff) /* ask the parent */
#define VDI_BLOCK_ZERO   UINT32_C(0xfffffffe) /* zeros, stop */
#define VDI_BLOCK_IS_ALLOCATED(e) ((e) < VDI_BLOCK_ZERO)

/* Block sizes VirtualBox opens. */
#define VDI_MIN_BLOCK_SIZE  (128 * 1024)
#define VDI_MAX_BLOCK_SIZE  (128 * 1024 * 1024)

#define VDI_SECTOR_SIZE     512

/* Images VirtualBox creates align the map and the data area to 1 MiB. */
#define VDI_DATA_ALIGN      (1024 * 1024)

struct vdi_disk_geometry {
  uint32_t cylinders;
  uint32_t heads;
  uint32_t sectors;
  uint32_t sector_size;
} __attribute__ ((__packed__));

/* Pre-header, 72 bytes at offset 0. */
struct vdi_disk_preheader {
  char file_info[64];
  uint32_t signature;
  uint32_t version;
} __attribute__ ((__packed__));
STATIC_ASSERT (sizeof (struct vdi_disk_preheader) == 72, preheader_size);

/* Header 1.1 at offset 72 (cbHeader 384 or 400). */
struct vdi_disk_header_1 {
  uint32_t header_size;         /* cbHeader */
  uint32_t type;
  uint32_t flags;
  char comment[256];
  uint32_t blocks_offset;       /* offBlocks */
  uint32_t data_offset;         /* offData */
  struct vdi_disk_geometry legacy_geometry;
  uint32_t dummy;
  uint64_t disk_size;           /* cbDisk */
  uint32_t block_size;          /* cbBlock */
  uint32_t block_extra;         /* cbBlockExtra */
  uint32_t blocks;              /* cBlocks */
  uint32_t blocks_allocated;    /* cBlocksAllocated */
  uint8_t uuid_create[16];
  uint8_t uuid_modify[16];
  uint8_t uuid_linkage[16];
  uint8_t uuid_parent_modify[16];
  struct vdi_disk_geometry lchs_geometry; /* only when cbHeader >= 400 */
} __attribute__ ((__packed__));
STATIC_ASSERT (sizeof (struct vdi_disk_header_1) == VDI_HEADER_1_1_PLUS_SIZE,
               header_1_size);

/* Legacy header at offset 72 (version 0x00000002). */
struct vdi_disk_header_0 {
  uint32_t type;
  uint32_t flags;
  char comment[256];
  struct vdi_disk_geometry legacy_geometry;
  uint64_t disk_size;
  uint32_t block_size;
  uint32_t blocks;
  uint32_t blocks_allocated;
  uint8_t uuid_create[16];
  uint8_t uuid_modify[16];
  uint8_t uuid_linkage[16];
} __attribute__ ((__packed__));
STATIC_ASSERT (sizeof (struct vdi_disk_header_0) == VDI_HEADER_V0_SIZE,
               header_0_size);

#endif /* VDI_FORMAT_H */
