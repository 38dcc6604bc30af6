/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_CHECKED_OVERFLOW_H
#define VDI_CHECKED_OVERFLOW_H

/* Store a + b (or a * b) in *r and evaluate to true if the result
 * does not fit.  Every computation of a file offset from header
 * fields goes through these.
 */
#define ADD_OVERFLOW(a, b, r) __builtin_add_overflow ((a), (b), (r))
#define MUL_OVERFLOW(a, b, r) __builtin_mul_overflow ((a), (b), (r))

#endif /* VDI_CHECKED_OVERFLOW_H */
