/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the libFuzzer harnesses share: a private folder for the files
 * they write, quiet logging, and the checks that abort (a finding)
 * when the library breaks one of its promises.
 */

#ifndef VDI_FUZZ_COMMON_H
#define VDI_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

#include "libvdi.h"

/* The base image that fuzz_init writes into the folder as base.vdi,
 * for differencing images to link to.  make-seeds.sh writes seeds
 * that do, with this UUID as their parent UUID.
 */
#define FUZZ_BASE_UUID "b45eb45e-0000-4000-8000-0000b45eb45e"
#define FUZZ_BASE_SIZE (UINT64_C (1) << 20)
#define FUZZ_BLOCK_SIZE ((uint32_t) VDI_MIN_BLOCK_SIZE)

/* Make the folder (removed at exit) and make the library quiet: its
 * messages are still formatted, only not printed.  Call from
 * LLVMFuzzerInitialize.
 */
extern void fuzz_init (void);

/* The path of name in the folder (the same string at each call). */
extern const char *fuzz_path (const char *name)
  __attribute__ ((__nonnull__ (1)));

/* Write the file name: the bytes, then extend it (sparse) by extend
 * bytes.  Returns its path (fuzz_path).
 */
extern const char *fuzz_write_file (const char *name,
                                    const void *data, size_t size,
                                    uint64_t extend)
  __attribute__ ((__nonnull__ (1)));

/* Write the base image (see FUZZ_BASE_UUID), with data in some of its
 * blocks: block b holds fuzz_base_byte (b * FUZZ_BLOCK_SIZE + i) at
 * byte i when b is odd, and FREE blocks read as zeros.
 */
extern void fuzz_write_base (void);
extern uint8_t fuzz_base_byte (uint64_t offset);

/* A finding: print what broke and abort, so that libFuzzer saves the
 * input.
 */
extern void fuzz_fail (const char *fs, ...)
  __attribute__ ((__noreturn__, __format__ (__printf__, 1, 2)));
#define FUZZ_ASSERT(cond)                                               \
  do {                                                                  \
    if (!(cond))                                                        \
      fuzz_fail ("%s:%d: %s", __FILE__, __LINE__, #cond);               \
  } while (0)

#endif /* VDI_FUZZ_COMMON_H */
