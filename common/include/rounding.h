/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_ROUNDING_H
#define VDI_ROUNDING_H

/* Round i up or down to a multiple of n, which must be a power of 2. */
#define ROUND_UP(i, n) (((i) + (n) - 1) & -((typeof (i)) (n)))
#define ROUND_DOWN(i, n) ((i) & -((typeof (i)) (n)))

/* Integer division rounding up; the divisor need not be a power of 2. */
#define DIV_ROUND_UP(n, d) (((n) + (d) - 1) / (d))

#define IS_ALIGNED(size, align) (((size) & ((align) - 1)) == 0)

#endif /* VDI_ROUNDING_H */
