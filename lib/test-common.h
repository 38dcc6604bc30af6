/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Helpers shared by the libvdi unit tests: a log function that
 * captures what the library says, headers and whole images built in
 * memory or in temporary files, a reproducible random generator and
 * the CUnit boilerplate of main.
 */

#ifndef VDI_TEST_COMMON_H
#define VDI_TEST_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <CUnit/Basic.h>

#include "libvdi.h"

/* Log capture: room for messages that name a few paths of up to
 * PATH_MAX bytes.
 */
#define TEST_LOG_MSG_MAX 16384

struct test_log {
  unsigned errors;
  unsigned warnings;
  unsigned debugs;
  char last_error[TEST_LOG_MSG_MAX];
  char last_warning[TEST_LOG_MSG_MAX];
  char last_debug[TEST_LOG_MSG_MAX];
};
extern struct test_log test_log;

/* Install the capturing log function (test_init does it). */
extern void test_log_install (void);
/* Forget every message captured so far (done before each test). */
extern void test_log_reset (void);

/* Record a CUnit assertion that exactly one error was logged since
 * the last reset and that it contains filename and phrase.  On
 * failure the message itself appears in the CUnit report.
 */
extern void test_check_one_error (const char *filename, const char *phrase,
                                  const char *file, unsigned line)
  __attribute__ ((__nonnull__ (1, 2, 3)));
#define ASSERT_ONE_ERROR(filename, phrase) \
  test_check_one_error ((filename), (phrase), __FILE__, __LINE__)

/* Record a CUnit assertion that no error was logged. */
extern void test_check_no_error (const char *file, unsigned line)
  __attribute__ ((__nonnull__ (1)));
#define ASSERT_NO_ERROR() test_check_no_error (__FILE__, __LINE__)

/* Fill h with a valid 1.1+ header of a dynamic image (cbHeader 400,
 * type 1, no flags, the block map at 0x200, the data area right
 * after it aligned to 512, non-null create and modify UUIDs derived
 * from seed, null linkage, sector sizes 512, no block allocated).
 */
extern void test_header_init (struct vdi_header *h, uint64_t disk_size,
                              uint32_t block_size, unsigned seed)
  __attribute__ ((__nonnull__ (1)));

/* Recompute blocks, data_offset (from blocks_offset) after changing
 * disk_size or block_size.
 */
extern void test_header_relayout (struct vdi_header *h)
  __attribute__ ((__nonnull__ (1)));

/* A UUID whose 16 bytes are seed, seed + 1, ... (never null for a
 * seed below 240).
 */
extern void test_uuid_make (struct vdi_uuid *uuid, unsigned seed)
  __attribute__ ((__nonnull__ (1)));

/* Temporary files, made with mkstemp under $TMPDIR or /tmp.  Every
 * file made by these functions is removed by test_tmp_cleanup, which
 * runs after each test (and at exit).
 */
extern char *test_tmp_write (const void *buf, size_t len);
extern void test_tmp_cleanup (void);

/* Write a whole 1.1 image: the header encoded by vdi_header_encode,
 * the block map (entries in host order, h->blocks of them) at
 * h->blocks_offset, then nslots data slots at h->data_offset, each
 * made of h->block_extra bytes of TEST_EXTRA_BYTE followed by
 * h->block_size bytes taken from slot_data (nslots * block_size
 * bytes, or NULL for a pattern).  If file_size is not 0 the file is
 * then cut or extended to that size.  Returns the file name (owned
 * by the temporary file list), or NULL after a CUnit failure.
 */
#define TEST_EXTRA_BYTE 0xee
extern char *test_write_image (const struct vdi_header *h,
                               const uint32_t *map,
                               const uint8_t *slot_data, uint32_t nslots,
                               uint64_t file_size)
  __attribute__ ((__nonnull__ (1, 2)));

/* The size of the file test_write_image writes with file_size 0. */
extern uint64_t test_image_natural_size (const struct vdi_header *h,
                                         uint32_t nslots)
  __attribute__ ((__nonnull__ (1)));

/* Little-endian stores at byte offsets of a buffer, for building
 * headers byte by byte independently of the library.
 */
extern void test_put_le32 (uint8_t *buf, size_t offset, uint32_t v)
  __attribute__ ((__nonnull__ (1)));
extern void test_put_le64 (uint8_t *buf, size_t offset, uint64_t v)
  __attribute__ ((__nonnull__ (1)));

/* The virtual memory of this process, from /proc/self/status: to
 * set an address space limit a little above it.
 */
extern uint64_t test_vm_size (void);

/* A small reproducible random generator (xorshift64*).  The seed
 * comes from $TEST_SEED when set, and is printed by test_init.
 */
extern uint64_t test_seed;
extern uint64_t test_random (void);
/* Uniform in [0, n), n > 0. */
extern uint64_t test_random_below (uint64_t n);
extern void test_random_fill (void *buf, size_t len);

/* CUnit boilerplate.  test_init sets up the registry, the log
 * capture and the seed and returns a suite whose tests start with a
 * clean log and end with the temporary files removed.  test_run runs
 * everything and returns the exit status for main: non-zero if any
 * test failed or CUnit itself reported an error.
 */
extern CU_pSuite test_init (const char *suite_name);
extern int test_run (void);

/* Add a test named after its function. */
#define ADD_TEST(suite, fn)                                             \
  do {                                                                  \
    if (CU_add_test ((suite), #fn, (fn)) == NULL) {                     \
      fprintf (stderr, "CU_add_test %s: %s\n", #fn, CU_get_error_msg ()); \
      exit (EXIT_FAILURE);                                              \
    }                                                                   \
  } while (0)

#endif /* VDI_TEST_COMMON_H */
