/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of VDI header decoding, validation and encoding
 * (vdi-header.c).
 *
 * The headers decoded here are built byte by byte at the absolute
 * offsets of vdi-format.md tables 1.1 to 1.3, independently of
 * vdi_header_encode and of the packed structs of vdi-format.h.  Each
 * bad input has its own test, which checks that decode or validate
 * fails with exactly one error naming the file.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <assert.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "test-common.h"

/* The name passed to decode and validate, which every error must carry. */
#define NAME "header-test.vdi"

/* vdi-format.md table 1.1: pre-header. */
#define OFF_FILE_INFO               0x000
#define OFF_SIGNATURE               0x040
#define OFF_VERSION                 0x044

/* Table 1.2: header 1.1 and 1.1+ (absolute offsets). */
#define OFF1_HEADER_SIZE            0x048
#define OFF1_TYPE                   0x04c
#define OFF1_FLAGS                  0x050
#define OFF1_COMMENT                0x054
#define OFF1_BLOCKS_OFFSET          0x154
#define OFF1_DATA_OFFSET            0x158
#define OFF1_LEGACY_GEOMETRY        0x15c
#define OFF1_DUMMY                  0x16c
#define OFF1_DISK_SIZE              0x170
#define OFF1_BLOCK_SIZE             0x178
#define OFF1_BLOCK_EXTRA            0x17c
#define OFF1_BLOCKS                 0x180
#define OFF1_BLOCKS_ALLOCATED       0x184
#define OFF1_UUID_CREATE            0x188
#define OFF1_UUID_MODIFY            0x198
#define OFF1_UUID_LINKAGE           0x1a8
#define OFF1_UUID_PARENT_MODIFY     0x1b8
#define OFF1_LCHS_GEOMETRY          0x1c8
#define END1_384                    0x1c8 /* 72 + 384 */
#define END1_400                    0x1d8 /* 72 + 400 */

/* Table 1.3: legacy v0 header. */
#define OFF0_TYPE                   0x048
#define OFF0_FLAGS                  0x04c
#define OFF0_COMMENT                0x050
#define OFF0_LEGACY_GEOMETRY        0x150
#define OFF0_DISK_SIZE              0x160
#define OFF0_BLOCK_SIZE             0x168
#define OFF0_BLOCKS                 0x16c
#define OFF0_BLOCKS_ALLOCATED       0x170
#define OFF0_UUID_CREATE            0x174
#define OFF0_UUID_MODIFY            0x184
#define OFF0_UUID_LINKAGE           0x194
#define END0                        0x1a4 /* 72 + 348 */

#define KiB 1024
#define MiB (1024 * 1024)

/* Text byte i of a UUID is disk byte guid_swap[i] (Microsoft GUID
 * layout: the first three fields little-endian).
 */
static const unsigned guid_swap[16] = {
  3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
};

static void
put_uuid (uint8_t *buf, size_t offset, const struct vdi_uuid *u)
{
  unsigned i;

  for (i = 0; i < 16; ++i)
    buf[offset + guid_swap[i]] = u->bytes[i];
}

static void
put_geometry (uint8_t *buf, size_t offset, const struct vdi_disk_geometry *g)
{
  test_put_le32 (buf, offset, g->cylinders);
  test_put_le32 (buf, offset + 4, g->heads);
  test_put_le32 (buf, offset + 8, g->sectors);
  test_put_le32 (buf, offset + 12, g->sector_size);
}

static void
put_string (uint8_t *buf, size_t offset, const char *s, size_t field_size)
{
  memcpy (buf + offset, s, strnlen (s, field_size));
}

/* Build the first 512 bytes of a 1.1 image from h, byte by byte. */
static void
build_v1 (uint8_t buf[VDI_HEADER_READ_SIZE], const struct vdi_header *h,
          uint32_t dummy)
{
  memset (buf, 0, VDI_HEADER_READ_SIZE);
  put_string (buf, OFF_FILE_INFO, h->file_info, 64);
  test_put_le32 (buf, OFF_SIGNATURE, 0xbeda107f);
  test_put_le32 (buf, OFF_VERSION, h->version);
  test_put_le32 (buf, OFF1_HEADER_SIZE, h->header_size);
  test_put_le32 (buf, OFF1_TYPE, h->type);
  test_put_le32 (buf, OFF1_FLAGS, h->flags);
  put_string (buf, OFF1_COMMENT, h->comment, 256);
  test_put_le32 (buf, OFF1_BLOCKS_OFFSET, h->blocks_offset);
  test_put_le32 (buf, OFF1_DATA_OFFSET, h->data_offset);
  put_geometry (buf, OFF1_LEGACY_GEOMETRY, &h->legacy_geometry);
  test_put_le32 (buf, OFF1_DUMMY, dummy);
  test_put_le64 (buf, OFF1_DISK_SIZE, h->disk_size);
  test_put_le32 (buf, OFF1_BLOCK_SIZE, h->block_size);
  test_put_le32 (buf, OFF1_BLOCK_EXTRA, h->block_extra);
  test_put_le32 (buf, OFF1_BLOCKS, h->blocks);
  test_put_le32 (buf, OFF1_BLOCKS_ALLOCATED, h->blocks_allocated);
  put_uuid (buf, OFF1_UUID_CREATE, &h->uuid_create);
  put_uuid (buf, OFF1_UUID_MODIFY, &h->uuid_modify);
  put_uuid (buf, OFF1_UUID_LINKAGE, &h->uuid_linkage);
  put_uuid (buf, OFF1_UUID_PARENT_MODIFY, &h->uuid_parent_modify);
  if (h->header_size >= 400)
    put_geometry (buf, OFF1_LCHS_GEOMETRY, &h->lchs_geometry);
}

/* Build the first bytes of a v0 image from h (version, blocks_offset,
 * data_offset, block_extra, uuid_parent_modify and the LCHS geometry
 * have no place in it).
 */
static void
build_v0 (uint8_t buf[VDI_HEADER_READ_SIZE], const struct vdi_header *h)
{
  memset (buf, 0, VDI_HEADER_READ_SIZE);
  put_string (buf, OFF_FILE_INFO, h->file_info, 64);
  test_put_le32 (buf, OFF_SIGNATURE, 0xbeda107f);
  test_put_le32 (buf, OFF_VERSION, 0x00000002);
  test_put_le32 (buf, OFF0_TYPE, h->type);
  test_put_le32 (buf, OFF0_FLAGS, h->flags);
  put_string (buf, OFF0_COMMENT, h->comment, 256);
  put_geometry (buf, OFF0_LEGACY_GEOMETRY, &h->legacy_geometry);
  test_put_le64 (buf, OFF0_DISK_SIZE, h->disk_size);
  test_put_le32 (buf, OFF0_BLOCK_SIZE, h->block_size);
  test_put_le32 (buf, OFF0_BLOCKS, h->blocks);
  test_put_le32 (buf, OFF0_BLOCKS_ALLOCATED, h->blocks_allocated);
  put_uuid (buf, OFF0_UUID_CREATE, &h->uuid_create);
  put_uuid (buf, OFF0_UUID_MODIFY, &h->uuid_modify);
  put_uuid (buf, OFF0_UUID_LINKAGE, &h->uuid_linkage);
}

static void
set_geometry (struct vdi_disk_geometry *g, uint32_t c, uint32_t h,
              uint32_t s, uint32_t sector_size)
{
  g->cylinders = c;
  g->heads = h;
  g->sectors = s;
  g->sector_size = sector_size;
}

static void
set_uuid (struct vdi_uuid *u, const char *text)
{
  int r = vdi_uuid_parse (text, u);

  assert (r == 0);
}

/* A 1.1+ header in which every field has a value of its own, so that
 * reading any field from the wrong offset shows.  It is also valid:
 * a differencing image of 0x123456000 bytes (more than 4 GiB, so the
 * high half of cbDisk matters) in 1 MiB blocks.
 */
static void
distinct_header_v1 (struct vdi_header *h, uint32_t header_size)
{
  memset (h, 0, sizeof *h);
  strcpy (h->file_info, "<<< byte-built VDI header >>>\n");
  h->version = 0x00010001;
  h->header_size = header_size;
  h->type = 4;
  h->flags = 1;
  strcpy (h->comment, "a comment of the test image");
  h->blocks_offset = 0x200;
  h->data_offset = 0x200 + 18944;       /* 4 * 4661 rounded up to 512 */
  set_geometry (&h->legacy_geometry, 1023, 16, 63, 512);
  h->disk_size = UINT64_C (0x123456000);
  h->block_size = 1 * MiB;
  h->block_extra = 512;
  h->blocks = 4661;                     /* 0x1235 */
  h->blocks_allocated = 7;
  set_uuid (&h->uuid_create, "aabbccdd-eeff-1122-3344-556677889900");
  set_uuid (&h->uuid_modify, "04030201-0605-0807-090a-0b0c0d0e0f10");
  set_uuid (&h->uuid_linkage, "40302010-6050-8070-90a0-b0c0d0e0f0ff");
  set_uuid (&h->uuid_parent_modify, "f4f3f2f1-f6f5-f8f7-f9fa-fbfcfdfeff00");
  if (header_size >= 400)
    set_geometry (&h->lchs_geometry, 1024, 255, 62, 512);
}

/* A valid v0 header with distinct fields. */
static void
distinct_header_v0 (struct vdi_header *h)
{
  memset (h, 0, sizeof *h);
  strcpy (h->file_info, "<<< innotek VirtualBox Disk Image >>>\n");
  h->version = 0x00000002;
  h->header_size = 348;
  h->type = 2;
  h->flags = 0;
  strcpy (h->comment, "legacy v0 image");
  set_geometry (&h->legacy_geometry, 100, 2, 3, 512);
  h->disk_size = 3 * MiB;
  h->block_size = 1 * MiB;
  h->blocks = 3;
  h->blocks_allocated = 2;
  set_uuid (&h->uuid_create, "11223344-5566-7788-99aa-bbccddeeff01");
  set_uuid (&h->uuid_modify, "21223344-5566-7788-99aa-bbccddeeff02");
  set_uuid (&h->uuid_linkage, "31223344-5566-7788-99aa-bbccddeeff03");
  /* What decode computes: the map after the header, the data after
   * the map, unaligned.
   */
  h->blocks_offset = 0x1a4;
  h->data_offset = 0x1a4 + 4 * 3;
}

/* Compare every field of two headers. */
static void
check_geometry_equal (const struct vdi_disk_geometry *a,
                      const struct vdi_disk_geometry *b)
{
  CU_ASSERT_EQUAL (a->cylinders, b->cylinders);
  CU_ASSERT_EQUAL (a->heads, b->heads);
  CU_ASSERT_EQUAL (a->sectors, b->sectors);
  CU_ASSERT_EQUAL (a->sector_size, b->sector_size);
}

static void
check_header_equal (const struct vdi_header *a, const struct vdi_header *b)
{
  CU_ASSERT_STRING_EQUAL (a->file_info, b->file_info);
  CU_ASSERT_EQUAL (a->version, b->version);
  CU_ASSERT_EQUAL (a->header_size, b->header_size);
  CU_ASSERT_EQUAL (a->type, b->type);
  CU_ASSERT_EQUAL (a->flags, b->flags);
  CU_ASSERT_STRING_EQUAL (a->comment, b->comment);
  CU_ASSERT_EQUAL (a->blocks_offset, b->blocks_offset);
  CU_ASSERT_EQUAL (a->data_offset, b->data_offset);
  check_geometry_equal (&a->legacy_geometry, &b->legacy_geometry);
  CU_ASSERT_EQUAL (a->disk_size, b->disk_size);
  CU_ASSERT_EQUAL (a->block_size, b->block_size);
  CU_ASSERT_EQUAL (a->block_extra, b->block_extra);
  CU_ASSERT_EQUAL (a->blocks, b->blocks);
  CU_ASSERT_EQUAL (a->blocks_allocated, b->blocks_allocated);
  CU_ASSERT_TRUE (vdi_uuid_equal (&a->uuid_create, &b->uuid_create));
  CU_ASSERT_TRUE (vdi_uuid_equal (&a->uuid_modify, &b->uuid_modify));
  CU_ASSERT_TRUE (vdi_uuid_equal (&a->uuid_linkage, &b->uuid_linkage));
  CU_ASSERT_TRUE (vdi_uuid_equal (&a->uuid_parent_modify,
                                  &b->uuid_parent_modify));
  check_geometry_equal (&a->lchs_geometry, &b->lchs_geometry);
}

static void
check_uuid_text (const struct vdi_uuid *u, const char *text)
{
  char buf[VDI_UUID_STRLEN];

  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (u, buf), text);
}

/* Decoding. */

/* A 1.1+ header (cbHeader 400) checked field by field against the
 * literal values, not only against the struct it was built from.
 */
static void
test_decode_v1_400 (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&want, 400);
  build_v1 (buf, &want, 0xdeadbeef);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  ASSERT_NO_ERROR ();

  CU_ASSERT_STRING_EQUAL (got.file_info, "<<< byte-built VDI header >>>\n");
  CU_ASSERT_EQUAL (got.version, 0x00010001);
  CU_ASSERT_EQUAL (got.header_size, 400);
  CU_ASSERT_EQUAL (got.type, 4);
  CU_ASSERT_EQUAL (got.flags, 1);
  CU_ASSERT_STRING_EQUAL (got.comment, "a comment of the test image");
  CU_ASSERT_EQUAL (got.blocks_offset, 0x200);
  CU_ASSERT_EQUAL (got.data_offset, 0x200 + 18944);
  CU_ASSERT_EQUAL (got.legacy_geometry.cylinders, 1023);
  CU_ASSERT_EQUAL (got.legacy_geometry.heads, 16);
  CU_ASSERT_EQUAL (got.legacy_geometry.sectors, 63);
  CU_ASSERT_EQUAL (got.legacy_geometry.sector_size, 512);
  CU_ASSERT_EQUAL (got.disk_size, UINT64_C (0x123456000));
  CU_ASSERT_EQUAL (got.block_size, 1 * MiB);
  CU_ASSERT_EQUAL (got.block_extra, 512);
  CU_ASSERT_EQUAL (got.blocks, 4661);
  CU_ASSERT_EQUAL (got.blocks_allocated, 7);
  check_uuid_text (&got.uuid_create, "aabbccdd-eeff-1122-3344-556677889900");
  check_uuid_text (&got.uuid_modify, "04030201-0605-0807-090a-0b0c0d0e0f10");
  check_uuid_text (&got.uuid_linkage, "40302010-6050-8070-90a0-b0c0d0e0f0ff");
  check_uuid_text (&got.uuid_parent_modify,
                   "f4f3f2f1-f6f5-f8f7-f9fa-fbfcfdfeff00");
  CU_ASSERT_EQUAL (got.lchs_geometry.cylinders, 1024);
  CU_ASSERT_EQUAL (got.lchs_geometry.heads, 255);
  CU_ASSERT_EQUAL (got.lchs_geometry.sectors, 62);
  CU_ASSERT_EQUAL (got.lchs_geometry.sector_size, 512);
  check_header_equal (&got, &want);

  /* The UUIDs sit at 0x188 ... in GUID order on disk. */
  CU_ASSERT_EQUAL (buf[0x188], 0xdd);
  CU_ASSERT_EQUAL (buf[0x18b], 0xaa);
  CU_ASSERT_EQUAL (buf[0x18c], 0xff);
  CU_ASSERT_EQUAL (buf[0x18f], 0x11);
  CU_ASSERT_EQUAL (buf[0x190], 0x33);

  /* And the header is valid. */
  CU_ASSERT_EQUAL (vdi_header_validate (NAME, &got, 1 * MiB), 0);
  ASSERT_NO_ERROR ();
}

/* A plain 1.1 header (cbHeader 384): the 16 bytes where 1.1+ keeps
 * the LCHS geometry belong to the block map area and are ignored.
 */
static void
test_decode_v1_384 (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&want, 384);
  build_v1 (buf, &want, 0);
  memset (buf + OFF1_LCHS_GEOMETRY, 0x77, 16);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (got.header_size, 384);
  CU_ASSERT_EQUAL (got.lchs_geometry.cylinders, 0);
  CU_ASSERT_EQUAL (got.lchs_geometry.heads, 0);
  CU_ASSERT_EQUAL (got.lchs_geometry.sectors, 0);
  CU_ASSERT_EQUAL (got.lchs_geometry.sector_size, 0);
  CU_ASSERT_EQUAL (got.disk_size, UINT64_C (0x123456000));
  check_uuid_text (&got.uuid_parent_modify,
                   "f4f3f2f1-f6f5-f8f7-f9fa-fbfcfdfeff00");
  check_header_equal (&got, &want);
}

/* The shortest buffers that hold each 1.1 layout decode. */
static void
test_decode_v1_minimal_length (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&want, 384);
  build_v1 (buf, &want, 0);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, END1_384, &got), 0);
  check_header_equal (&got, &want);

  distinct_header_v1 (&want, 400);
  build_v1 (buf, &want, 0);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, END1_400, &got), 0);
  check_header_equal (&got, &want);
  ASSERT_NO_ERROR ();
}

/* A header larger than 400 (a future 1.x) is read as 1.1+. */
static void
test_decode_v1_larger_header (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&want, 400);
  want.header_size = 432;
  build_v1 (buf, &want, 0);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (got.header_size, 432);
  CU_ASSERT_EQUAL (got.lchs_geometry.cylinders, 1024);
  check_header_equal (&got, &want);
}

/* Any 1.x minor version has the 1.1 layout. */
static void
test_decode_v1_other_minor (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&want, 400);
  want.version = 0x00010000;
  build_v1 (buf, &want, 0);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (got.version, 0x00010000);
  check_header_equal (&got, &want);
}

static void
test_decode_v0 (void)
{
  struct vdi_header want, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v0 (&want);
  build_v0 (buf, &want);
  /* Bytes past the v0 header must not be read as fields. */
  memset (buf + END0, 0x55, sizeof buf - END0);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  ASSERT_NO_ERROR ();

  CU_ASSERT_STRING_EQUAL (got.file_info,
                          "<<< innotek VirtualBox Disk Image >>>\n");
  CU_ASSERT_EQUAL (got.version, 2);
  CU_ASSERT_EQUAL (got.header_size, 348);
  CU_ASSERT_EQUAL (got.type, 2);
  CU_ASSERT_EQUAL (got.flags, 0);
  CU_ASSERT_STRING_EQUAL (got.comment, "legacy v0 image");
  CU_ASSERT_EQUAL (got.legacy_geometry.cylinders, 100);
  CU_ASSERT_EQUAL (got.legacy_geometry.heads, 2);
  CU_ASSERT_EQUAL (got.legacy_geometry.sectors, 3);
  CU_ASSERT_EQUAL (got.legacy_geometry.sector_size, 512);
  CU_ASSERT_EQUAL (got.disk_size, 3 * MiB);
  CU_ASSERT_EQUAL (got.block_size, 1 * MiB);
  CU_ASSERT_EQUAL (got.block_extra, 0);
  CU_ASSERT_EQUAL (got.blocks, 3);
  CU_ASSERT_EQUAL (got.blocks_allocated, 2);
  check_uuid_text (&got.uuid_create, "11223344-5566-7788-99aa-bbccddeeff01");
  check_uuid_text (&got.uuid_modify, "21223344-5566-7788-99aa-bbccddeeff02");
  check_uuid_text (&got.uuid_linkage, "31223344-5566-7788-99aa-bbccddeeff03");
  CU_ASSERT_TRUE (vdi_uuid_is_null (&got.uuid_parent_modify));
  CU_ASSERT_EQUAL (got.lchs_geometry.sector_size, 0);
  /* The computed offsets: map at 72 + 348, data right after it. */
  CU_ASSERT_EQUAL (got.blocks_offset, 420);
  CU_ASSERT_EQUAL (got.data_offset, 432);
  check_header_equal (&got, &want);

  /* The shortest buffer that holds it. */
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, END0, &got), 0);
  CU_ASSERT_EQUAL (got.blocks, 3);
  ASSERT_NO_ERROR ();
}

/* Fixed-size strings filled to the last byte still come back
 * NUL-terminated.
 */
static void
test_decode_unterminated_strings (void)
{
  struct vdi_header h, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  build_v1 (buf, &h, 0);
  memset (buf + OFF_FILE_INFO, 'F', 64);
  memset (buf + OFF1_COMMENT, 'c', 256);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  CU_ASSERT_EQUAL (strlen (got.file_info), 64);
  CU_ASSERT_EQUAL (strlen (got.comment), 256);
  CU_ASSERT_EQUAL (got.file_info[63], 'F');
  CU_ASSERT_EQUAL (got.comment[255], 'c');
  /* The fields next to them are intact. */
  CU_ASSERT_EQUAL (got.version, 0x00010001);
  CU_ASSERT_EQUAL (got.blocks_offset, 0x200);

  build_v0 (buf, &h);
  memset (buf + OFF0_COMMENT, 'd', 256);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  CU_ASSERT_EQUAL (strlen (got.comment), 256);
  CU_ASSERT_EQUAL (got.legacy_geometry.cylinders, 1023);
  ASSERT_NO_ERROR ();
}

/* Encoding. */

/* vdi_header_encode writes the same bytes as the independent builder. */
static void
test_encode_layout (void)
{
  static const uint32_t sizes[] = { 384, 400 };
  size_t i;

  for (i = 0; i < 2; ++i) {
    struct vdi_header h;
    uint8_t want[VDI_HEADER_READ_SIZE], got[VDI_HEADER_READ_SIZE];
    size_t j, diffs = 0;

    distinct_header_v1 (&h, sizes[i]);
    /* Encode must not write the LCHS geometry of a 384-byte header. */
    set_geometry (&h.lchs_geometry, 9, 9, 9, 512);
    build_v1 (want, &h, 0);
    memset (got, 0xaa, sizeof got);
    vdi_header_encode (&h, got);
    for (j = 0; j < sizeof got; ++j) {
      if (got[j] != want[j]) {
        if (diffs++ < 8)
          fprintf (stderr, "cbHeader %" PRIu32 ": byte 0x%zx: "
                   "encoded 0x%02x, expected 0x%02x\n",
                   sizes[i], j, got[j], want[j]);
      }
    }
    CU_ASSERT_EQUAL (diffs, 0);
  }
}

/* Everything past the header is zeroed. */
static void
test_encode_zeroes_tail (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];
  size_t i, nonzero;

  test_header_init (&h, 8 * MiB, 1 * MiB, 3);
  memset (buf, 0xaa, sizeof buf);
  vdi_header_encode (&h, buf);
  for (i = END1_400, nonzero = 0; i < sizeof buf; ++i)
    nonzero += buf[i] != 0;
  CU_ASSERT_EQUAL (nonzero, 0);

  h.header_size = 384;
  memset (buf, 0xaa, sizeof buf);
  vdi_header_encode (&h, buf);
  for (i = END1_384, nonzero = 0; i < sizeof buf; ++i)
    nonzero += buf[i] != 0;
  CU_ASSERT_EQUAL (nonzero, 0);
}

static void
test_encode_decode_round_trip (void)
{
  static const uint32_t sizes[] = { 384, 400 };
  size_t i;
  unsigned n;

  for (i = 0; i < 2; ++i) {
    struct vdi_header h, got;
    uint8_t buf[VDI_HEADER_READ_SIZE];

    distinct_header_v1 (&h, sizes[i]);
    vdi_header_encode (&h, buf);
    CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
    check_header_equal (&got, &h);
  }

  /* Random field values (decode does not validate). */
  for (n = 0; n < 50; ++n) {
    struct vdi_header h, got;
    uint8_t buf[VDI_HEADER_READ_SIZE];

    memset (&h, 0, sizeof h);
    snprintf (h.file_info, sizeof h.file_info, "info %" PRIx64,
              test_random ());
    h.version = 0x00010000 | (uint32_t) test_random_below (0x10000);
    h.header_size = n & 1 ? 400 : 384;
    h.type = test_random ();
    h.flags = test_random ();
    snprintf (h.comment, sizeof h.comment, "comment %" PRIx64,
              test_random ());
    h.blocks_offset = test_random ();
    h.data_offset = test_random ();
    test_random_fill (&h.legacy_geometry, sizeof h.legacy_geometry);
    h.disk_size = test_random ();
    h.block_size = test_random ();
    h.block_extra = test_random ();
    h.blocks = test_random ();
    h.blocks_allocated = test_random ();
    test_random_fill (&h.uuid_create, 16);
    test_random_fill (&h.uuid_modify, 16);
    test_random_fill (&h.uuid_linkage, 16);
    test_random_fill (&h.uuid_parent_modify, 16);
    if (h.header_size == 400)
      test_random_fill (&h.lchs_geometry, sizeof h.lchs_geometry);
    vdi_header_encode (&h, buf);
    CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
    check_header_equal (&got, &h);
  }
  ASSERT_NO_ERROR ();
}

/* The header test-common.c makes is valid and survives a round trip. */
static void
test_common_header_is_valid (void)
{
  struct vdi_header h, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  test_header_init (&h, 64 * MiB, 1 * MiB, 1);
  CU_ASSERT_EQUAL (h.blocks, 64);
  CU_ASSERT_EQUAL (h.data_offset, 0x400);   /* 0x200 + 256 rounded up */
  vdi_header_encode (&h, buf);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  check_header_equal (&got, &h);
  CU_ASSERT_EQUAL (vdi_header_validate (NAME, &got, h.data_offset), 0);
  ASSERT_NO_ERROR ();
}

/* Derived values. */

static void
test_virtual_size_rounds_down (void)
{
  static const struct { uint64_t stored, virtual; } cases[] = {
    { 1 * MiB, 1 * MiB },
    { 1 * MiB + 1, 1 * MiB },
    { 1 * MiB + 511, 1 * MiB },
    { 1 * MiB + 512, 1 * MiB + 512 },
    { 1 * MiB - 1, 1 * MiB - 512 },
    { 1474560, 1474560 },
    { 512, 512 },
    { 511, 0 },
    { 1, 0 },
    { UINT64_C (0x123456789), UINT64_C (0x123456600) },
    { UINT64_MAX, UINT64_MAX - 511 },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    struct vdi_header h;

    test_header_init (&h, 4 * MiB, 1 * MiB, 1);
    h.disk_size = cases[i].stored;
    CU_ASSERT_EQUAL (vdi_header_virtual_size (&h), cases[i].virtual);
    /* The stored value is left alone. */
    CU_ASSERT_EQUAL (h.disk_size, cases[i].stored);
  }
}

static void
test_slot_offset (void)
{
  struct vdi_header h;

  test_header_init (&h, 16 * MiB, 1 * MiB, 1);
  h.data_offset = 0x400;
  h.block_extra = 0;
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 0), 0x400);
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 1), 0x400 + 1 * MiB);
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 3), 0x400 + 3 * MiB);

  /* The extra bytes come first in each slot. */
  h.block_extra = 512;
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 0), 0x400 + 512);
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 1),
                   0x400 + (1 * MiB + 512) + 512);
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 3),
                   0x400 + 3 * (1 * MiB + 512) + 512);

  h.block_size = 128 * KiB;
  h.block_extra = 4096;
  h.data_offset = 0x100000;
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, 10),
                   0x100000 + 10 * (128 * KiB + 4096) + 4096);

  /* Large slots need 64 bits. */
  h.block_size = 128 * MiB;
  h.block_extra = UINT32_C (0x80000000);
  h.data_offset = UINT32_C (0xfffffe00);
  CU_ASSERT_EQUAL (vdi_header_slot_offset (&h, UINT32_C (0x3ffffff0)),
                   UINT64_C (0xfffffe00) +
                   UINT64_C (0x3ffffff0) * (UINT64_C (0x80000000) +
                                            128 * MiB) +
                   UINT64_C (0x80000000));
}

static void
test_human_size (void)
{
  static const struct {
    uint64_t n;
    const char *text;
  } cases[] = {
    { 0, "0 B" },
    { 512, "512 B" },
    { 1536, "1.50 KiB" },
    { 4 * MiB, "4 MiB" },
    { 2 * MiB - 50 * KiB, "1.95 MiB" },
    { 2 * MiB - 1, "1.99 MiB" },        /* truncated, never 2.00 */
    { 150 * MiB + 1, "150 MiB" },
    { 1024 * UINT64_C (1048576) * 1048576 - 512 * UINT64_C (1048576) * 1024,
      "1023.5 TiB" },
    { 1024 * UINT64_C (1048576) * 1048576 - 1, "1023.9 TiB" },
    { UINT64_MAX, "15.9 EiB" },
  };
  char buf[32];
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    CU_ASSERT_PTR_EQUAL (vdi_human_size (cases[i].n, buf, sizeof buf), buf);
    if (strcmp (buf, cases[i].text) != 0) {
      fprintf (stderr, "%" PRIu64 ": \"%s\", expected \"%s\"\n",
               cases[i].n, buf, cases[i].text);
      CU_FAIL ("vdi_human_size");
    }
  }
}

static void
test_type_names (void)
{
  CU_ASSERT_STRING_EQUAL (vdi_type_name (1), "dynamic");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (2), "fixed");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (3), "undo");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (4), "differencing");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (0), "unknown");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (5), "unknown");
  CU_ASSERT_STRING_EQUAL (vdi_type_name (UINT32_MAX), "unknown");
}

/* Bad input to decode: one test each. */

static void
expect_decode_error (const uint8_t *buf, size_t len, const char *phrase,
                     const char *file, unsigned line)
{
  struct vdi_header h;
  int r;

  test_log_reset ();
  r = vdi_header_decode (NAME, buf, len, &h);
  CU_assertImplementation (r == -1, line, "vdi_header_decode failed", file,
                           "", CU_FALSE);
  test_check_one_error (NAME, phrase, file, line);
}
#define EXPECT_DECODE_ERROR(buf, len, phrase) \
  expect_decode_error ((buf), (len), (phrase), __FILE__, __LINE__)

static void
test_bad_short_file (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  build_v1 (buf, &h, 0);
  /* 71 bytes: the version is cut. */
  EXPECT_DECODE_ERROR (buf, 71, "not a VDI image");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "71"));
}

static void
test_bad_empty_file (void)
{
  uint8_t buf[1] = { 0 };

  EXPECT_DECODE_ERROR (buf, 0, "not a VDI image");
}

static void
test_bad_signature (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  build_v1 (buf, &h, 0);
  /* Big-endian signature. */
  buf[OFF_SIGNATURE] = 0xbe;
  buf[OFF_SIGNATURE + 1] = 0xda;
  buf[OFF_SIGNATURE + 2] = 0x10;
  buf[OFF_SIGNATURE + 3] = 0x7f;
  EXPECT_DECODE_ERROR (buf, sizeof buf, "not a VDI image");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "signature"));
  /* What the file holds instead is not repeated in the message. */
  CU_ASSERT_PTR_NULL (strstr (test_log.last_error, "be"));
  CU_ASSERT_PTR_NULL (strstr (test_log.last_error, "7f"));
}

/* A settings file given as the disk: said so, with what to do. */
static void
test_settings_file_as_disk (void)
{
  static const char *const starts[] = {
    "<?xml version=\"1.0\"?>\n<VirtualBox xmlns=\"...\">",
    "\xef\xbb\xbf<?xml version=\"1.0\"?>",
    "  \n<VirtualBox xmlns=\"http://www.virtualbox.org/\" version=\"1.19\">",
  };
  uint8_t buf[VDI_HEADER_READ_SIZE];
  size_t i;

  for (i = 0; i < sizeof starts / sizeof starts[0]; ++i) {
    memset (buf, ' ', sizeof buf);
    memcpy (buf, starts[i], strlen (starts[i]));
    test_log_reset ();
    EXPECT_DECODE_ERROR (buf, sizeof buf, "VirtualBox settings file");
    EXPECT_DECODE_ERROR (buf, strlen (starts[i]), "give it as the registry");
  }
}

static void
test_bad_truncated_v1_size_field (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  build_v1 (buf, &h, 0);
  /* The signature and version are there, cbHeader is cut. */
  EXPECT_DECODE_ERROR (buf, 75, "truncated VDI header");
}

static void
test_bad_truncated_v1_384 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 384);
  build_v1 (buf, &h, 0);
  EXPECT_DECODE_ERROR (buf, END1_384 - 1, "truncated VDI header");
}

static void
test_bad_truncated_v1_400 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  build_v1 (buf, &h, 0);
  /* Long enough for a 384-byte header but not for this one. */
  EXPECT_DECODE_ERROR (buf, END1_400 - 1, "truncated VDI header");
}

static void
test_bad_truncated_v0 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v0 (&h);
  build_v0 (buf, &h);
  EXPECT_DECODE_ERROR (buf, END0 - 1, "truncated VDI header");
}

static void
test_bad_version_2_0 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  h.version = 0x00020000;
  build_v1 (buf, &h, 0);
  EXPECT_DECODE_ERROR (buf, sizeof buf, "unsupported VDI version 2.0");
}

static void
test_bad_version_0_1 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 400);
  h.version = 0x00000001;
  build_v1 (buf, &h, 0);
  EXPECT_DECODE_ERROR (buf, sizeof buf, "unsupported VDI version 0.1");
}

/* Of the major-0 versions only exactly 0x00000002 is v0. */
static void
test_bad_version_0_3 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v0 (&h);
  build_v0 (buf, &h);
  test_put_le32 (buf, OFF_VERSION, 0x00000003);
  EXPECT_DECODE_ERROR (buf, sizeof buf, "unsupported VDI version 0.3");
}

static void
test_bad_header_size_383 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 384);
  h.header_size = 383;
  build_v1 (buf, &h, 0);
  EXPECT_DECODE_ERROR (buf, sizeof buf, "header size 383");
}

static void
test_bad_header_size_0 (void)
{
  struct vdi_header h;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v1 (&h, 384);
  h.header_size = 0;
  build_v1 (buf, &h, 0);
  EXPECT_DECODE_ERROR (buf, sizeof buf, "header size 0");
}

/* Bad input to validate: one test each, starting from a valid
 * header of a 4 MiB dynamic image in 1 MiB blocks.
 */

static void
valid_header (struct vdi_header *h)
{
  test_header_init (h, 4 * MiB, 1 * MiB, 1);
  h->blocks_allocated = 2;
}

/* A file long enough for everything but not absurdly so. */
#define FILE_SIZE (UINT64_C (64) * MiB)

static void
expect_validate_error (const struct vdi_header *h, uint64_t file_size,
                       const char *phrase, const char *file, unsigned line)
{
  int r;

  test_log_reset ();
  r = vdi_header_validate (NAME, h, file_size);
  CU_assertImplementation (r == -1, line, "vdi_header_validate failed", file,
                           "", CU_FALSE);
  test_check_one_error (NAME, phrase, file, line);
}
#define EXPECT_VALIDATE_ERROR(h, file_size, phrase) \
  expect_validate_error ((h), (file_size), (phrase), __FILE__, __LINE__)

static void
expect_valid (const struct vdi_header *h, uint64_t file_size,
              const char *file, unsigned line)
{
  int r;

  test_log_reset ();
  r = vdi_header_validate (NAME, h, file_size);
  CU_assertImplementation (r == 0, line, "vdi_header_validate succeeded",
                           file, "", CU_FALSE);
  test_check_no_error (file, line);
}
#define EXPECT_VALID(h, file_size) \
  expect_valid ((h), (file_size), __FILE__, __LINE__)

static void
test_valid_baseline (void)
{
  struct vdi_header h;

  valid_header (&h);
  EXPECT_VALID (&h, FILE_SIZE);
}

static void
test_bad_type_0 (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.type = 0;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "unknown image type 0");
}

static void
test_bad_type_5 (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.type = 5;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "unknown image type 5");
}

static void
test_bad_flags (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.flags = 0x2;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "unknown image flags 0x2");
}

static void
test_bad_flags_high (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.flags = 0x400;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "unknown image flags 0x400");
}

static void
test_bad_disk_size_zero (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.disk_size = 0;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "disk size is zero");
}

static void
test_bad_disk_size_below_sector (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.disk_size = 511;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "disk size 511 is less than one sector");
}

static void
test_bad_lchs_sector_size (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.lchs_geometry.sector_size = 4096;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "LCHS geometry sector size 4096");
  /* A 384-byte header has no LCHS geometry to check. */
  h.header_size = VDI_HEADER_1_1_SIZE;
  CU_ASSERT_EQUAL (vdi_header_validate ("h", &h, FILE_SIZE), 0);
}

static void
test_bad_block_size_zero (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.block_size = 0;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "block size is zero");
}

static void
test_bad_block_size_not_power_of_2 (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.block_size = 3 * 512 * KiB;         /* 1.5 MiB: covers the disk */
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "not a power of two");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "1572864"));
}

static void
test_bad_block_size_too_small (void)
{
  struct vdi_header h;

  test_header_init (&h, 4 * MiB, 64 * KiB, 1);
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "block size 65536 is outside");
}

static void
test_bad_block_size_too_large (void)
{
  struct vdi_header h;

  test_header_init (&h, 256 * MiB, 256 * MiB, 1);
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "block size 268435456 is outside");
}

static void
test_bad_block_extra (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.block_extra = 3 * 512;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "extra block data size 1536");
}

/* VirtualBox opens up to 2 GiB of extra bytes before each block, but
 * allocating a block writes them: more than a block is refused.
 */
static void
test_bad_block_extra_too_large (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.block_extra = 2 * MiB;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE,
                         "extra block data size 2097152 is larger than "
                         "the block size 1048576");
  h.block_extra = UINT32_C (0x80000000);
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "is larger than the block size");
}

static void
test_bad_block_count_zero (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.blocks = 0;
  h.blocks_allocated = 0;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "block count is zero");
}

static void
test_bad_blocks_do_not_cover (void)
{
  struct vdi_header h;

  valid_header (&h);
  /* One byte more than 4 blocks hold. */
  h.disk_size = 4 * MiB + 1;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "do not cover the disk size 4194305");
}

static void
test_bad_blocks_allocated (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.blocks_allocated = h.blocks + 1;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "5 blocks allocated");
}

static void
test_bad_null_create_uuid (void)
{
  struct vdi_header h;

  valid_header (&h);
  memset (&h.uuid_create, 0, sizeof h.uuid_create);
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "image UUID is null");
}

static void
test_bad_null_modify_uuid (void)
{
  struct vdi_header h;

  valid_header (&h);
  memset (&h.uuid_modify, 0, sizeof h.uuid_modify);
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "modification UUID is null");
}

static void
test_bad_diff_without_parent (void)
{
  struct vdi_header h;
  char uuid[VDI_UUID_STRLEN];

  valid_header (&h);
  h.type = 4;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "has no parent UUID");
  /* The message names the image by its UUID too. */
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                  vdi_uuid_format (&h.uuid_create, uuid)));
}

static void
test_bad_map_inside_header (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.blocks_offset = 0x1c7;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "block map offset 455 is inside "
                         "the header");
}

static void
test_bad_data_inside_map (void)
{
  struct vdi_header h;

  valid_header (&h);
  /* The map is 0x200 + 4 * 4: one byte short. */
  h.data_offset = 0x200 + 4 * 4 - 1;
  EXPECT_VALIDATE_ERROR (&h, FILE_SIZE, "data offset 527 is inside the "
                         "block map");
}

static void
test_bad_map_past_eof (void)
{
  struct vdi_header h;

  valid_header (&h);
  /* The file ends inside the last entry of the map. */
  EXPECT_VALIDATE_ERROR (&h, 0x200 + 4 * 4 - 1, "truncated VDI image");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "528"));
}

/* The data area is at most 2^30 slots (the map must fit below the
 * 32-bit data offset) of at most 2^27 + 2^27 bytes (the extra bytes
 * are at most a block), starting below 2^32, so it ends below 2^59:
 * the overflow check of vdi_header_validate cannot fire.  The largest
 * header that gets that far is accepted, and its last slot offset is
 * right.
 */
static void
test_data_area_overflow_unreachable (void)
{
  struct vdi_header h;
  const uint32_t blocks = (UINT32_MAX - 0x1c8) / 4;
  unsigned __int128 last;

  test_header_init (&h, 128 * MiB, 128 * MiB, 1);
  h.block_extra = 128 * MiB;
  h.blocks_offset = 0x1c8;
  h.blocks = blocks;
  h.blocks_allocated = blocks;
  h.disk_size = (uint64_t) blocks * 128 * MiB;
  h.data_offset = 0x1c8 + 4 * blocks;
  EXPECT_VALID (&h, h.data_offset);

  last = (unsigned __int128) h.data_offset +
    (unsigned __int128) (blocks - 1) * (128 * MiB + 128 * MiB) + 128 * MiB;
  CU_ASSERT_TRUE (last < ((unsigned __int128) 1 << 59));
  CU_ASSERT_TRUE (vdi_header_slot_offset (&h, blocks - 1) == (uint64_t) last);
}

/* One more block than the largest map above: the map no longer fits
 * below a 32-bit data offset, which the map check reports first.
 */
static void
test_bad_data_area_caught_by_map_check (void)
{
  struct vdi_header h;
  const uint32_t blocks = UINT32_C (0x40000000);

  test_header_init (&h, 128 * MiB, 128 * MiB, 1);
  h.block_extra = 128 * MiB;
  h.blocks_offset = 0x1c8;
  h.blocks = blocks;
  h.blocks_allocated = 0;
  h.disk_size = (uint64_t) blocks * 128 * MiB;
  h.data_offset = UINT32_MAX;
  EXPECT_VALIDATE_ERROR (&h, UINT64_MAX, "is inside the block map");
}

/* The same for v0, whose data offset decode computes. */
static void
test_bad_v0_map_too_large (void)
{
  struct vdi_header h, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v0 (&h);
  h.blocks = UINT32_C (0x40000000);
  h.disk_size = (uint64_t) h.blocks * h.block_size;
  build_v0 (buf, &h);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  CU_ASSERT_EQUAL (got.blocks, UINT32_C (0x40000000));
  EXPECT_VALIDATE_ERROR (&got, UINT64_MAX, "is inside the block map");
}

/* Accepted edge cases. */

static void
test_valid_block_size_128k (void)
{
  struct vdi_header h;

  test_header_init (&h, 4 * MiB, 128 * KiB, 1);
  CU_ASSERT_EQUAL (h.blocks, 32);
  EXPECT_VALID (&h, h.data_offset);
}

static void
test_valid_block_size_128m (void)
{
  struct vdi_header h;

  test_header_init (&h, 200 * MiB, 128 * MiB, 1);
  CU_ASSERT_EQUAL (h.blocks, 2);
  EXPECT_VALID (&h, h.data_offset);
}

static void
test_valid_block_extra (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.block_extra = 0;
  EXPECT_VALID (&h, FILE_SIZE);
  h.block_extra = 512;
  EXPECT_VALID (&h, FILE_SIZE);
  h.block_extra = 1;
  EXPECT_VALID (&h, FILE_SIZE);
  h.block_extra = h.block_size;
  EXPECT_VALID (&h, FILE_SIZE);
}

static void
test_valid_types_and_flags (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.type = 2;
  EXPECT_VALID (&h, FILE_SIZE);
  h.type = 3;
  EXPECT_VALID (&h, FILE_SIZE);
  h.type = 4;
  test_uuid_make (&h.uuid_linkage, 100);
  EXPECT_VALID (&h, FILE_SIZE);

  /* Zero-expand (bit 0), and the bits that VirtualBox's mask allows
   * after its shift by 8 (FIXED 0x10000, DIFF 0x20000).
   */
  valid_header (&h);
  h.flags = 0x1;
  EXPECT_VALID (&h, FILE_SIZE);
  h.flags = 0x100;
  EXPECT_VALID (&h, FILE_SIZE);
  h.flags = 0x200;
  EXPECT_VALID (&h, FILE_SIZE);
  h.flags = 0x301;
  EXPECT_VALID (&h, FILE_SIZE);
}

/* Each bound is inclusive. */
static void
test_valid_boundaries (void)
{
  struct vdi_header h;

  valid_header (&h);
  h.blocks_offset = 0x1c8;
  h.data_offset = 0x1c8 + 4 * 4;
  EXPECT_VALID (&h, h.data_offset);     /* the file ends with the map */

  valid_header (&h);
  h.blocks_allocated = h.blocks;
  EXPECT_VALID (&h, FILE_SIZE);

  /* More blocks than the disk needs is fine. */
  valid_header (&h);
  h.disk_size = 2 * MiB + 512;
  EXPECT_VALID (&h, FILE_SIZE);
}

static void
test_valid_v0 (void)
{
  struct vdi_header h, got;
  uint8_t buf[VDI_HEADER_READ_SIZE];

  distinct_header_v0 (&h);
  build_v0 (buf, &h);
  CU_ASSERT_EQUAL (vdi_header_decode (NAME, buf, sizeof buf, &got), 0);
  /* The computed map offset (420) is below the 1.1 minimum. */
  CU_ASSERT_EQUAL (got.blocks_offset, 420);
  EXPECT_VALID (&got, got.data_offset);
  EXPECT_VALIDATE_ERROR (&got, got.data_offset - 1, "truncated VDI image");
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-header");

  ADD_TEST (s, test_decode_v1_400);
  ADD_TEST (s, test_decode_v1_384);
  ADD_TEST (s, test_decode_v1_minimal_length);
  ADD_TEST (s, test_decode_v1_larger_header);
  ADD_TEST (s, test_decode_v1_other_minor);
  ADD_TEST (s, test_decode_v0);
  ADD_TEST (s, test_decode_unterminated_strings);
  ADD_TEST (s, test_encode_layout);
  ADD_TEST (s, test_encode_zeroes_tail);
  ADD_TEST (s, test_encode_decode_round_trip);
  ADD_TEST (s, test_common_header_is_valid);
  ADD_TEST (s, test_virtual_size_rounds_down);
  ADD_TEST (s, test_slot_offset);
  ADD_TEST (s, test_type_names);
  ADD_TEST (s, test_human_size);

  ADD_TEST (s, test_bad_short_file);
  ADD_TEST (s, test_bad_empty_file);
  ADD_TEST (s, test_bad_signature);
  ADD_TEST (s, test_settings_file_as_disk);
  ADD_TEST (s, test_bad_truncated_v1_size_field);
  ADD_TEST (s, test_bad_truncated_v1_384);
  ADD_TEST (s, test_bad_truncated_v1_400);
  ADD_TEST (s, test_bad_truncated_v0);
  ADD_TEST (s, test_bad_version_2_0);
  ADD_TEST (s, test_bad_version_0_1);
  ADD_TEST (s, test_bad_version_0_3);
  ADD_TEST (s, test_bad_header_size_383);
  ADD_TEST (s, test_bad_header_size_0);

  ADD_TEST (s, test_valid_baseline);
  ADD_TEST (s, test_bad_type_0);
  ADD_TEST (s, test_bad_type_5);
  ADD_TEST (s, test_bad_flags);
  ADD_TEST (s, test_bad_flags_high);
  ADD_TEST (s, test_bad_disk_size_zero);
  ADD_TEST (s, test_bad_disk_size_below_sector);
  ADD_TEST (s, test_bad_lchs_sector_size);
  ADD_TEST (s, test_bad_block_size_zero);
  ADD_TEST (s, test_bad_block_size_not_power_of_2);
  ADD_TEST (s, test_bad_block_size_too_small);
  ADD_TEST (s, test_bad_block_size_too_large);
  ADD_TEST (s, test_bad_block_extra);
  ADD_TEST (s, test_bad_block_extra_too_large);
  ADD_TEST (s, test_bad_block_count_zero);
  ADD_TEST (s, test_bad_blocks_do_not_cover);
  ADD_TEST (s, test_bad_blocks_allocated);
  ADD_TEST (s, test_bad_null_create_uuid);
  ADD_TEST (s, test_bad_null_modify_uuid);
  ADD_TEST (s, test_bad_diff_without_parent);
  ADD_TEST (s, test_bad_map_inside_header);
  ADD_TEST (s, test_bad_data_inside_map);
  ADD_TEST (s, test_bad_map_past_eof);
  ADD_TEST (s, test_data_area_overflow_unreachable);
  ADD_TEST (s, test_bad_data_area_caught_by_map_check);
  ADD_TEST (s, test_bad_v0_map_too_large);

  ADD_TEST (s, test_valid_block_size_128k);
  ADD_TEST (s, test_valid_block_size_128m);
  ADD_TEST (s, test_valid_block_extra);
  ADD_TEST (s, test_valid_types_and_flags);
  ADD_TEST (s, test_valid_boundaries);
  ADD_TEST (s, test_valid_v0);
  return test_run ();
}
