/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* sanitizer-preload: preloaded into nbdkit after the sanitizer's
 * runtime by the tests of a sanitized build (functions.sh), so that
 * nbdkit can exit.
 *
 * Preloaded, the runtime starts late, at the first malloc: in nbdkit
 * that comes from p11-kit's constructor (gnutls needs p11-kit), inside
 * newlocale, which holds glibc's locale lock.  Starting, the runtime
 * looks up swift_demangle; when that fails, dlerror translates the
 * message, and gettext releases the lock that newlocale holds, which
 * newlocale then releases again.  From then on the lock is broken: after
 * the next strerror (any message with %m), nbdkit hangs at exit, in
 * p11-kit's destructor.  With swift_demangle defined the lookup
 * succeeds and nothing is translated.  The runtime calls it only to
 * demangle Swift names, which never occur here.
 */

#include <stddef.h>

extern char *swift_demangle (const char *mangled, size_t mangled_len,
                             char *out, size_t *out_len, unsigned flags);

char *
swift_demangle (const char *mangled, size_t mangled_len,
                char *out, size_t *out_len, unsigned flags)
{
  return NULL;                  /* not demangled */
}
