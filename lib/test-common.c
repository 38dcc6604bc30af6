/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <assert.h>
#include <errno.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "vdi-io.h"
#include "test-common.h"

/* Log capture. */

struct test_log test_log;

static void
copy_message (char *dst, const char *msg)
{
  snprintf (dst, TEST_LOG_MSG_MAX, "%s", msg);
}

static void
capture_log (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    test_log.errors++;
    copy_message (test_log.last_error, msg);
    break;
  case VDI_LOG_WARNING:
    test_log.warnings++;
    copy_message (test_log.last_warning, msg);
    break;
  case VDI_LOG_DEBUG:
    test_log.debugs++;
    copy_message (test_log.last_debug, msg);
    break;
  }
}

void
test_log_install (void)
{
  vdi_set_log_function (capture_log);
}

void
test_log_reset (void)
{
  memset (&test_log, 0, sizeof test_log);
}

void
test_check_one_error (const char *filename, const char *phrase,
                      const char *file, unsigned line)
{
  char cond[3 * TEST_LOG_MSG_MAX];
  bool ok;

  ok = test_log.errors == 1 &&
    strstr (test_log.last_error, filename) != NULL &&
    strstr (test_log.last_error, phrase) != NULL;
  snprintf (cond, sizeof cond,
            "exactly one error naming \"%s\" and containing \"%s\" "
            "(got %u, the last one: \"%s\")",
            filename, phrase, test_log.errors, test_log.last_error);
  CU_assertImplementation (ok, line, cond, file, "", CU_FALSE);
}

void
test_check_no_error (const char *file, unsigned line)
{
  char cond[2 * TEST_LOG_MSG_MAX];

  snprintf (cond, sizeof cond, "no error (got %u, the last one: \"%s\")",
            test_log.errors, test_log.last_error);
  CU_assertImplementation (test_log.errors == 0, line, cond, file, "",
                           CU_FALSE);
}

/* Headers. */

void
test_uuid_make (struct vdi_uuid *uuid, unsigned seed)
{
  unsigned i;

  /* 16 consecutive values modulo 256 are never all zero. */
  for (i = 0; i < 16; ++i)
    uuid->bytes[i] = (uint8_t) (seed + i);
}

void
test_header_relayout (struct vdi_header *h)
{
  uint64_t blocks, data;

  blocks = (h->disk_size + h->block_size - 1) / h->block_size;
  assert (blocks <= UINT32_MAX);
  h->blocks = blocks;
  data = h->blocks_offset + 4 * blocks;
  data = (data + 511) & ~UINT64_C (511);
  h->data_offset = data > UINT32_MAX ? UINT32_MAX : data;
}

void
test_header_init (struct vdi_header *h, uint64_t disk_size,
                  uint32_t block_size, unsigned seed)
{
  memset (h, 0, sizeof *h);
  strcpy (h->file_info, "<<< nbdkit-vdi test image >>>\n");
  h->version = VDI_VERSION_1_1;
  h->header_size = VDI_HEADER_1_1_PLUS_SIZE;
  h->type = VDI_TYPE_NORMAL;
  h->flags = 0;
  strcpy (h->comment, "made by test-common.c");
  h->blocks_offset = 0x200;
  h->legacy_geometry.sector_size = 512;
  h->disk_size = disk_size;
  h->block_size = block_size;
  h->block_extra = 0;
  h->blocks_allocated = 0;
  test_uuid_make (&h->uuid_create, seed);
  test_uuid_make (&h->uuid_modify, seed + 16);
  h->lchs_geometry.sector_size = 512;
  test_header_relayout (h);
}

/* Temporary files. */

static char **tmp_files;
static size_t nr_tmp_files;

/* Make an empty temporary file, remember it, return its fd. */
static int
tmp_create (char **path_ret)
{
  const char *dir = getenv ("TMPDIR");
  char *path, **p;
  int fd;

  if (dir == NULL || *dir == '\0')
    dir = "/tmp";
  if (asprintf (&path, "%s/test-vdi-XXXXXX", dir) == -1) {
    perror ("asprintf");
    exit (EXIT_FAILURE);
  }
  fd = mkstemp (path);
  if (fd == -1) {
    fprintf (stderr, "mkstemp: %s: %m\n", path);
    exit (EXIT_FAILURE);
  }
  p = realloc (tmp_files, (nr_tmp_files + 1) * sizeof *p);
  if (p == NULL) {
    perror ("realloc");
    exit (EXIT_FAILURE);
  }
  tmp_files = p;
  tmp_files[nr_tmp_files++] = path;
  *path_ret = path;
  return fd;
}

char *
test_tmp_write (const void *buf, size_t len)
{
  char *path;
  int fd = tmp_create (&path);

  if (vdi_full_pwrite (fd, buf, len, 0) == -1) {
    fprintf (stderr, "pwrite: %s: %m\n", path);
    exit (EXIT_FAILURE);
  }
  if (close (fd) == -1) {
    fprintf (stderr, "close: %s: %m\n", path);
    exit (EXIT_FAILURE);
  }
  return path;
}

void
test_tmp_cleanup (void)
{
  size_t i;

  for (i = 0; i < nr_tmp_files; ++i) {
    unlink (tmp_files[i]);
    free (tmp_files[i]);
  }
  free (tmp_files);
  tmp_files = NULL;
  nr_tmp_files = 0;
}

uint64_t
test_image_natural_size (const struct vdi_header *h, uint32_t nslots)
{
  const uint64_t slot_size = (uint64_t) h->block_extra + h->block_size;
  const uint64_t map_end = h->blocks_offset + 4 * (uint64_t) h->blocks;
  const uint64_t data_end = h->data_offset + nslots * slot_size;

  return map_end > data_end ? map_end : data_end;
}

char *
test_write_image (const struct vdi_header *h, const uint32_t *map,
                  const uint8_t *slot_data, uint32_t nslots,
                  uint64_t file_size)
{
  const uint64_t slot_size = (uint64_t) h->block_extra + h->block_size;
  uint8_t hbuf[VDI_HEADER_READ_SIZE];
  size_t hlen;
  uint8_t *le_map = NULL, *slot = NULL;
  char *path;
  uint32_t i;
  int fd;

  fd = tmp_create (&path);

  vdi_header_encode (h, hbuf);
  hlen = 72 + (h->header_size >= VDI_HEADER_1_1_PLUS_SIZE
               ? VDI_HEADER_1_1_PLUS_SIZE : VDI_HEADER_1_1_SIZE);
  if (vdi_full_pwrite (fd, hbuf, hlen, 0) == -1)
    goto err;

  le_map = malloc (4 * (size_t) h->blocks + 1);
  if (le_map == NULL)
    goto err;
  for (i = 0; i < h->blocks; ++i)
    test_put_le32 (le_map, 4 * (size_t) i, map[i]);
  if (vdi_full_pwrite (fd, le_map, 4 * (size_t) h->blocks, h->blocks_offset) == -1)
    goto err;

  slot = malloc (slot_size);
  if (slot == NULL)
    goto err;
  memset (slot, TEST_EXTRA_BYTE, h->block_extra);
  for (i = 0; i < nslots; ++i) {
    if (slot_data)
      memcpy (slot + h->block_extra,
              slot_data + (uint64_t) i * h->block_size, h->block_size);
    else
      memset (slot + h->block_extra, (uint8_t) (i + 1), h->block_size);
    if (vdi_full_pwrite (fd, slot, slot_size, h->data_offset + i * slot_size) == -1)
      goto err;
  }

  if (file_size == 0)
    file_size = test_image_natural_size (h, nslots);
  if (ftruncate (fd, file_size) == -1)
    goto err;
  if (close (fd) == -1) {
    fd = -1;
    goto err;
  }
  free (le_map);
  free (slot);
  return path;

 err:
  fprintf (stderr, "writing %s: %m\n", path);
  CU_FAIL ("test_write_image failed");
  if (fd >= 0)
    close (fd);
  free (le_map);
  free (slot);
  return NULL;
}

void
test_put_le32 (uint8_t *buf, size_t offset, uint32_t v)
{
  unsigned i;

  for (i = 0; i < 4; ++i)
    buf[offset + i] = (uint8_t) (v >> (8 * i));
}

void
test_put_le64 (uint8_t *buf, size_t offset, uint64_t v)
{
  unsigned i;

  for (i = 0; i < 8; ++i)
    buf[offset + i] = (uint8_t) (v >> (8 * i));
}

/* Random numbers. */

uint64_t test_seed = UINT64_C (0x5eed0fdeadbeef01);
static uint64_t random_state;

uint64_t
test_random (void)
{
  uint64_t x = random_state;

  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  random_state = x;
  return x * UINT64_C (0x2545f4914f6cdd1d);
}

uint64_t
test_random_below (uint64_t n)
{
  assert (n > 0);
  return test_random () % n;
}

void
test_random_fill (void *buf, size_t len)
{
  uint8_t *p = buf;
  size_t i;

  for (i = 0; i + 8 <= len; i += 8) {
    uint64_t r = test_random ();
    memcpy (p + i, &r, 8);
  }
  for (; i < len; ++i)
    p[i] = (uint8_t) test_random ();
}

/* CUnit boilerplate. */

/* Before each test: a clean log and the same random sequence, so
 * that each test can be reproduced alone.
 */
static void
test_setup (void)
{
  test_log_reset ();
  random_state = test_seed ? test_seed : 1;
}

static void
test_teardown (void)
{
  test_tmp_cleanup ();
}

CU_pSuite
test_init (const char *suite_name)
{
  const char *s = getenv ("TEST_SEED");
  CU_pSuite suite;

  if (s && *s) {
    errno = 0;
    test_seed = strtoull (s, NULL, 0);
    if (errno != 0) {
      fprintf (stderr, "TEST_SEED: %s: %m\n", s);
      exit (EXIT_FAILURE);
    }
  }
  printf ("%s: random seed 0x%" PRIx64 " (set TEST_SEED to change it)\n",
          suite_name, test_seed);

  test_log_install ();
  atexit (test_tmp_cleanup);

  if (CU_initialize_registry () != CUE_SUCCESS) {
    fprintf (stderr, "CU_initialize_registry: %s\n", CU_get_error_msg ());
    exit (EXIT_FAILURE);
  }
  suite = CU_add_suite_with_setup_and_teardown (suite_name, NULL, NULL,
                                                test_setup, test_teardown);
  if (suite == NULL) {
    fprintf (stderr, "CU_add_suite: %s\n", CU_get_error_msg ());
    CU_cleanup_registry ();
    exit (EXIT_FAILURE);
  }
  return suite;
}

int
test_run (void)
{
  unsigned failures;
  CU_ErrorCode err;

  CU_basic_set_mode (CU_BRM_VERBOSE);
  CU_basic_run_tests ();
  failures = CU_get_number_of_failures ();
  err = CU_get_error ();
  if (err != CUE_SUCCESS)
    fprintf (stderr, "CUnit error: %s\n", CU_get_error_msg ());
  CU_cleanup_registry ();
  test_tmp_cleanup ();
  return failures > 0 || err != CUE_SUCCESS ? EXIT_FAILURE : EXIT_SUCCESS;
}

uint64_t
test_vm_size (void)
{
  FILE *fp = fopen ("/proc/self/status", "r");
  char line[256];
  uint64_t kib = 0;

  assert (fp != NULL);
  while (fgets (line, sizeof line, fp))
    if (sscanf (line, "VmSize: %" SCNu64, &kib) == 1)
      break;
  fclose (fp);
  assert (kib > 0);
  return kib * 1024;
}
