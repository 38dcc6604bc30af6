/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_BITS_H
#define VDI_BITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Arrays of bits, eight to a byte, bit i in byte i / 8. */

/* Bytes holding n bits. */
static inline size_t
bits_bytes (size_t n)
{
  return (n + 7) / 8;
}

static inline bool
bit_is_set (const uint8_t *bits, size_t i)
{
  return bits[i / 8] & (1 << (i % 8));
}

static inline void
bit_set (uint8_t *bits, size_t i)
{
  bits[i / 8] |= 1 << (i % 8);
}

static inline void
bit_clear (uint8_t *bits, size_t i)
{
  bits[i / 8] &= ~(1 << (i % 8));
}

#endif /* VDI_BITS_H */
