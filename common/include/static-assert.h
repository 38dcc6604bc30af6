/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_STATIC_ASSERT_H
#define VDI_STATIC_ASSERT_H

#define STATIC_ASSERT(expr, msg) _Static_assert ((expr), #msg)

#endif /* VDI_STATIC_ASSERT_H */
