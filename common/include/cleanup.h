/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#ifndef VDI_CLEANUP_H
#define VDI_CLEANUP_H

#include <stdlib.h>
#include <pthread.h>

static inline void
cleanup_free (void *ptr)
{
  free (* (void **) ptr);
}
#define CLEANUP_FREE __attribute__ ((cleanup (cleanup_free)))

static inline void
cleanup_unlock (pthread_mutex_t **ptr)
{
  pthread_mutex_unlock (*ptr);
}
#define CLEANUP_UNLOCK __attribute__ ((cleanup (cleanup_unlock)))
#define ACQUIRE_LOCK_FOR_CURRENT_SCOPE(mutex)                           \
  CLEANUP_UNLOCK pthread_mutex_t *_lock = (mutex);                      \
  pthread_mutex_lock (_lock)

#endif /* VDI_CLEANUP_H */
