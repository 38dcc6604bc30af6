/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <errno.h>

#include "vdi-internal.h"

static void
default_log (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    fprintf (stderr, "error: %s\n", msg);
    break;
  case VDI_LOG_WARNING:
    fprintf (stderr, "warning: %s\n", msg);
    break;
  case VDI_LOG_DEBUG:
    break;
  }
}

static vdi_log_function log_function = default_log;

/* While set, errors are demoted to debug messages (see vdi_quiet). */
static __thread bool quiet;

void
vdi_set_log_function (vdi_log_function fn)
{
  log_function = fn ? fn : default_log;
}

bool
vdi_quiet (bool on)
{
  bool was = quiet;

  quiet = on;
  return was;
}

/* Format and pass on one message.  errno is preserved so that callers
 * can log and then return it; %m works as in nbdkit_error.  The
 * message is allocated, never cut: paths may be as long as PATH_MAX,
 * and the reason comes after them.  Out of memory, the format itself
 * still says which message it was.
 */
static void
vlog (enum vdi_log_level level, const char *fs, va_list args)
{
  int saved_errno = errno;
  char *msg;

  if (vasprintf (&msg, fs, args) == -1)
    msg = NULL;
  if (quiet && level == VDI_LOG_ERROR)
    level = VDI_LOG_DEBUG;
  log_function (level, msg ? msg : fs);
  free (msg);
  errno = saved_errno;
}

#define DEFINE_LOG_FUNCTION(name, level)        \
  void                                          \
  name (const char *fs, ...)                    \
  {                                             \
    va_list args;                               \
    va_start (args, fs);                        \
    vlog (level, fs, args);                     \
    va_end (args);                              \
  }

DEFINE_LOG_FUNCTION (vdi_error, VDI_LOG_ERROR)
DEFINE_LOG_FUNCTION (vdi_warning, VDI_LOG_WARNING)
DEFINE_LOG_FUNCTION (vdi_debug, VDI_LOG_DEBUG)
