/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of the UUID functions of libvdi (vdi-uuid.c). */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "test-common.h"

/* The example of vdi-format.md section 1: text order and disk order. */
static const char example_text[] = "aabbccdd-eeff-1122-3344-556677889900";
static const uint8_t example_text_bytes[16] = {
  0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff, 0x11, 0x22,
  0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00
};
static const uint8_t example_disk_bytes[16] = {
  0xdd, 0xcc, 0xbb, 0xaa, 0xff, 0xee, 0x22, 0x11,
  0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0x00
};

/* A real image made by VirtualBox 7.1 (see the test data MANIFEST.md). */
#define REAL_IMAGE "JeremyAnsel_SharpSevenZip/vdi.vdi"
#define REAL_IMAGE_CREATE "df310496-00f7-480a-a369-4485227cf9a4"
#define REAL_IMAGE_MODIFY "734be702-4b45-47d1-9bbe-e0279ebf7362"

static void
test_from_disk_example (void)
{
  struct vdi_uuid u;

  memset (&u, 0x5a, sizeof u);
  vdi_uuid_from_disk (&u, example_disk_bytes);
  CU_ASSERT_EQUAL (memcmp (u.bytes, example_text_bytes, 16), 0);
}

static void
test_to_disk_example (void)
{
  struct vdi_uuid u;
  uint8_t disk[16];

  memcpy (u.bytes, example_text_bytes, 16);
  memset (disk, 0x5a, sizeof disk);
  vdi_uuid_to_disk (&u, disk);
  CU_ASSERT_EQUAL (memcmp (disk, example_disk_bytes, 16), 0);
}

/* The whole text <-> disk path of the example, both ways. */
static void
test_example_text_disk (void)
{
  struct vdi_uuid u;
  uint8_t disk[16];
  char buf[VDI_UUID_STRLEN];

  CU_ASSERT_EQUAL (vdi_uuid_parse ("{aabbccdd-eeff-1122-3344-556677889900}",
                                   &u), 0);
  vdi_uuid_to_disk (&u, disk);
  CU_ASSERT_EQUAL (memcmp (disk, example_disk_bytes, 16), 0);

  vdi_uuid_from_disk (&u, example_disk_bytes);
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf), example_text);
}

/* Each of the 16 disk bytes lands in its own text position. */
static void
test_from_disk_each_byte (void)
{
  static const unsigned text_pos_of_disk[16] = {
    3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15
  };
  unsigned i, j;

  for (i = 0; i < 16; ++i) {
    uint8_t disk[16] = { 0 };
    struct vdi_uuid u;

    disk[i] = 0x80 | i;
    vdi_uuid_from_disk (&u, disk);
    for (j = 0; j < 16; ++j)
      CU_ASSERT_EQUAL (u.bytes[j], j == text_pos_of_disk[i] ? (0x80 | i) : 0);
  }
}

static void
test_disk_round_trip (void)
{
  unsigned n;

  for (n = 0; n < 100; ++n) {
    struct vdi_uuid u, v;
    uint8_t disk[16], disk2[16];

    test_random_fill (u.bytes, 16);
    vdi_uuid_to_disk (&u, disk);
    vdi_uuid_from_disk (&v, disk);
    CU_ASSERT_TRUE (vdi_uuid_equal (&u, &v));

    test_random_fill (disk, 16);
    vdi_uuid_from_disk (&u, disk);
    vdi_uuid_to_disk (&u, disk2);
    CU_ASSERT_EQUAL (memcmp (disk, disk2, 16), 0);
  }
}

static void
test_text_round_trip (void)
{
  unsigned n;

  for (n = 0; n < 100; ++n) {
    struct vdi_uuid u, v;
    char buf[VDI_UUID_STRLEN], braced[VDI_UUID_STRLEN + 2];

    test_random_fill (u.bytes, 16);
    vdi_uuid_format (&u, buf);
    memset (&v, 0, sizeof v);
    CU_ASSERT_EQUAL (vdi_uuid_parse (buf, &v), 0);
    CU_ASSERT_TRUE (vdi_uuid_equal (&u, &v));

    snprintf (braced, sizeof braced, "{%s}", buf);
    memset (&v, 0, sizeof v);
    CU_ASSERT_EQUAL (vdi_uuid_parse (braced, &v), 0);
    CU_ASSERT_TRUE (vdi_uuid_equal (&u, &v));
  }
}

static void
test_parse_forms (void)
{
  static const char *const forms[] = {
    "aabbccdd-eeff-1122-3344-556677889900",
    "{aabbccdd-eeff-1122-3344-556677889900}",
    "AABBCCDD-EEFF-1122-3344-556677889900",
    "{AABBCCDD-EEFF-1122-3344-556677889900}",
    "AaBbCcDd-eEfF-1122-3344-556677889900",
  };
  size_t i;

  for (i = 0; i < sizeof forms / sizeof forms[0]; ++i) {
    struct vdi_uuid u;

    memset (&u, 0, sizeof u);
    CU_ASSERT_EQUAL (vdi_uuid_parse (forms[i], &u), 0);
    CU_ASSERT_EQUAL (memcmp (u.bytes, example_text_bytes, 16), 0);
  }
}

/* Every hex digit in every position, both cases. */
static void
test_parse_all_digits (void)
{
  static const char digits[] = "0123456789abcdefABCDEF";
  size_t d;

  for (d = 0; d < sizeof digits - 1; ++d) {
    char text[VDI_UUID_STRLEN];
    struct vdi_uuid u;
    unsigned value = d < 16 ? d : d - 6, i;

    snprintf (text, sizeof text, "%s", "00000000-0000-0000-0000-000000000000");
    for (i = 0; i < 36; ++i)
      if (text[i] == '0')
        text[i] = digits[d];
    CU_ASSERT_EQUAL (vdi_uuid_parse (text, &u), 0);
    for (i = 0; i < 16; ++i)
      CU_ASSERT_EQUAL (u.bytes[i], value << 4 | value);
  }
}

static void
test_parse_rejects (void)
{
  static const char *const bad[] = {
    "",
    "{",
    "{}",
    "}",
    "-",
    /* Wrong length. */
    "aabbccdd-eeff-1122-3344-55667788990",
    "aabbccdd-eeff-1122-3344-5566778899000",
    "aabbccddeeff112233445566778899",
    "aabbccddeeff11223344556677889900",
    "aabbccdd-eeff-1122-3344-556677889900 ",
    " aabbccdd-eeff-1122-3344-556677889900",
    "aabbccdd-eeff-1122-3344-556677889900\n",
    /* Bad hex digits. */
    "gabbccdd-eeff-1122-3344-556677889900",
    "aabbccdd-eeff-1122-3344-55667788990g",
    "aabbccdd-eeff-1122-3344-5566778899 0",
    "aabbccdd-eeff-1122-3344-5566778899x0",
    "aabbccdd-eeff-1122-33:4-556677889900",
    "aabbccdd-eeff-1122-3344-55667788990/",
    "+abbccdd-eeff-1122-3344-556677889900",
    "0xbbccdd-eeff-1122-3344-556677889900",
    /* Misplaced or missing dashes. */
    "aabbccd-deeff-1122-3344-556677889900",
    "aabbccdde-eff-1122-3344-556677889900",
    "aabbccdd-eeff1-122-3344-556677889900",
    "aabbccdd-eeff-11223-344-556677889900",
    "aabbccdd-eeff-1122-33445-56677889900",
    "aabbccdd_eeff_1122_3344_556677889900",
    "-aabbccddeeff-1122-3344-556677889900",
    "aabbccddeeff-1122-3344-556677889900-",
    /* Unbalanced or wrong braces. */
    "{aabbccdd-eeff-1122-3344-556677889900",
    "aabbccdd-eeff-1122-3344-556677889900}",
    "{aabbccdd-eeff-1122-3344-556677889900)",
    "(aabbccdd-eeff-1122-3344-556677889900}",
    "{{aabbccdd-eeff-1122-3344-556677889900}}",
    "{aabbccdd-eeff-1122-3344-55667788990}",
    "{aabbccdd-eeff-1122-3344-5566778899000}",
    "}aabbccdd-eeff-1122-3344-556677889900{",
  };
  size_t i;

  for (i = 0; i < sizeof bad / sizeof bad[0]; ++i) {
    struct vdi_uuid u;
    int r = vdi_uuid_parse (bad[i], &u);

    if (r != -1)
      fprintf (stderr, "vdi_uuid_parse accepted \"%s\"\n", bad[i]);
    CU_ASSERT_EQUAL (r, -1);
  }
  /* Parsing logs nothing. */
  CU_ASSERT_EQUAL (test_log.errors, 0);
}

static void
test_format (void)
{
  struct vdi_uuid u;
  char buf[VDI_UUID_STRLEN + 8];
  char *r;

  memset (buf, 'Z', sizeof buf);
  memcpy (u.bytes, example_text_bytes, 16);
  r = vdi_uuid_format (&u, buf);
  CU_ASSERT_PTR_EQUAL (r, buf);
  CU_ASSERT_STRING_EQUAL (buf, example_text);
  CU_ASSERT_EQUAL (strlen (buf), VDI_UUID_STRLEN - 1);
  /* Nothing written past the terminating NUL. */
  CU_ASSERT_EQUAL (buf[VDI_UUID_STRLEN], 'Z');

  memset (u.bytes, 0, 16);
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf),
                          "00000000-0000-0000-0000-000000000000");
  memset (u.bytes, 0xff, 16);
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf),
                          "ffffffff-ffff-ffff-ffff-ffffffffffff");
  u.bytes[0] = 0x0a;
  u.bytes[15] = 0xb0;
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf),
                          "0affffff-ffff-ffff-ffff-ffffffffffb0");
}

static void
test_format_is_lowercase (void)
{
  unsigned n;

  for (n = 0; n < 50; ++n) {
    struct vdi_uuid u;
    char buf[VDI_UUID_STRLEN];
    unsigned i;

    test_random_fill (u.bytes, 16);
    vdi_uuid_format (&u, buf);
    CU_ASSERT_EQUAL (strlen (buf), 36);
    for (i = 0; i < 36; ++i) {
      if (i == 8 || i == 13 || i == 18 || i == 23) {
        CU_ASSERT_EQUAL (buf[i], '-');
      }
      else {
        CU_ASSERT_PTR_NOT_NULL (strchr ("0123456789abcdef", buf[i]));
      }
    }
  }
}

static void
test_is_null (void)
{
  struct vdi_uuid u;
  unsigned i;

  memset (&u, 0, sizeof u);
  CU_ASSERT_TRUE (vdi_uuid_is_null (&u));
  CU_ASSERT_EQUAL (vdi_uuid_parse ("{00000000-0000-0000-0000-000000000000}",
                                   &u), 0);
  CU_ASSERT_TRUE (vdi_uuid_is_null (&u));
  for (i = 0; i < 16; ++i) {
    memset (&u, 0, sizeof u);
    u.bytes[i] = 1;
    CU_ASSERT_FALSE (vdi_uuid_is_null (&u));
    u.bytes[i] = 0x80;
    CU_ASSERT_FALSE (vdi_uuid_is_null (&u));
  }
}

static void
test_equal (void)
{
  struct vdi_uuid a, b;
  unsigned i;

  memcpy (a.bytes, example_text_bytes, 16);
  memcpy (b.bytes, example_text_bytes, 16);
  CU_ASSERT_TRUE (vdi_uuid_equal (&a, &b));
  CU_ASSERT_TRUE (vdi_uuid_equal (&a, &a));
  for (i = 0; i < 16; ++i) {
    b = a;
    b.bytes[i] ^= 0x01;
    CU_ASSERT_FALSE (vdi_uuid_equal (&a, &b));
    CU_ASSERT_FALSE (vdi_uuid_equal (&b, &a));
  }
  /* Text in different case and braces names the same UUID. */
  CU_ASSERT_EQUAL (vdi_uuid_parse ("{AABBCCDD-EEFF-1122-3344-556677889900}",
                                   &a), 0);
  CU_ASSERT_EQUAL (vdi_uuid_parse ("aabbccdd-eeff-1122-3344-556677889900",
                                   &b), 0);
  CU_ASSERT_TRUE (vdi_uuid_equal (&a, &b));
}

/* The path of the real test image, or NULL (with a message) if the
 * test data is not there.
 */
static char *
real_image_path (void)
{
  const char *dir = getenv ("VDI_TESTDATA_DIR");
  char *path;

  if (dir == NULL || *dir == '\0')
    dir = "/work/shared/testdata";
  if (asprintf (&path, "%s/%s", dir, REAL_IMAGE) == -1) {
    perror ("asprintf");
    exit (EXIT_FAILURE);
  }
  if (access (path, R_OK) == -1) {
    printf ("\n    SKIPPED: %s: %m (set VDI_TESTDATA_DIR)\n    ", path);
    free (path);
    return NULL;
  }
  return path;
}

/* Decode the UUIDs of the real image straight from its bytes. */
static void
test_real_image_bytes (void)
{
  char *path = real_image_path ();
  uint8_t disk[32];
  struct vdi_uuid u, expected;
  char buf[VDI_UUID_STRLEN];
  int fd;

  if (path == NULL)
    return;
  fd = open (path, O_RDONLY | O_CLOEXEC);
  CU_ASSERT_NOT_EQUAL (fd, -1);
  if (fd == -1) {
    free (path);
    return;
  }
  CU_ASSERT_EQUAL (pread (fd, disk, sizeof disk, 0x188), sizeof disk);
  close (fd);

  vdi_uuid_from_disk (&u, disk);
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf), REAL_IMAGE_CREATE);
  CU_ASSERT_EQUAL (vdi_uuid_parse ("{" REAL_IMAGE_CREATE "}", &expected), 0);
  CU_ASSERT_TRUE (vdi_uuid_equal (&u, &expected));
  /* The disk bytes start with time_low little-endian: 96 04 31 df. */
  CU_ASSERT_EQUAL (disk[0], 0x96);
  CU_ASSERT_EQUAL (disk[3], 0xdf);

  vdi_uuid_from_disk (&u, disk + 16);
  CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&u, buf), REAL_IMAGE_MODIFY);
  free (path);
}

/* The same UUIDs through vdi_image_open. */
static void
test_real_image_open (void)
{
  char *path = real_image_path ();
  struct vdi_image *img;
  const struct vdi_header *h;
  char buf[VDI_UUID_STRLEN];

  if (path == NULL)
    return;
  img = vdi_image_open (path, 0);
  CU_ASSERT_PTR_NOT_NULL (img);
  ASSERT_NO_ERROR ();
  if (img) {
    h = vdi_image_header (img);
    CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&h->uuid_create, buf),
                            REAL_IMAGE_CREATE);
    CU_ASSERT_STRING_EQUAL (vdi_uuid_format (&h->uuid_modify, buf),
                            REAL_IMAGE_MODIFY);
    CU_ASSERT_TRUE (vdi_uuid_is_null (&h->uuid_linkage));
    CU_ASSERT_TRUE (vdi_uuid_is_null (&h->uuid_parent_modify));
    vdi_image_close (img);
  }
  free (path);
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-uuid");

  ADD_TEST (s, test_from_disk_example);
  ADD_TEST (s, test_to_disk_example);
  ADD_TEST (s, test_example_text_disk);
  ADD_TEST (s, test_from_disk_each_byte);
  ADD_TEST (s, test_disk_round_trip);
  ADD_TEST (s, test_text_round_trip);
  ADD_TEST (s, test_parse_forms);
  ADD_TEST (s, test_parse_all_digits);
  ADD_TEST (s, test_parse_rejects);
  ADD_TEST (s, test_format);
  ADD_TEST (s, test_format_is_lowercase);
  ADD_TEST (s, test_is_null);
  ADD_TEST (s, test_equal);
  ADD_TEST (s, test_real_image_bytes);
  ADD_TEST (s, test_real_image_open);
  return test_run ();
}
