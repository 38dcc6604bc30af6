/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_MINMAX_H
#define VDI_MINMAX_H

/* Type-safe MIN and MAX which evaluate each argument once. */
#define MIN(x, y) ({                            \
      __auto_type _x = (x);                     \
      __auto_type _y = (y);                     \
      _x < _y ? _x : _y;                        \
    })
#define MAX(x, y) ({                            \
      __auto_type _x = (x);                     \
      __auto_type _y = (y);                     \
      _x > _y ? _x : _y;                        \
    })

#endif /* VDI_MINMAX_H */
