/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_ISPOWEROF2_H
#define VDI_ISPOWEROF2_H

#include <stdbool.h>
#include <stdint.h>

/* True if v is a power of 2.  Zero is not. */
static inline bool
is_power_of_2 (uint64_t v)
{
  return v && (v & (v - 1)) == 0;
}

/* log2 of a power of 2. */
static inline unsigned
log_2_bits (uint64_t v)
{
  return 63 - __builtin_clzll (v);
}

#endif /* VDI_ISPOWEROF2_H */
