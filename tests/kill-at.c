/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* kill-at: an LD_PRELOAD library for the crash tests.  It counts the
 * calls by which a process changes files (pwrite, write, fsync,
 * fdatasync, ftruncate, fallocate, rename, unlink) and, with
 * KILL_AT=N, kills the process with SIGKILL just before the Nth of
 * them, as a power cut or kill -9 would stop it there (with
 * KILL_AT_SIGNAL=N, signal number N instead: SIGSTOP leaves the
 * process stopped there, holding its files and locks, until SIGCONT).
 * Without KILL_AT, it writes the number of such calls to the file
 * named by KILL_AT_COUNT when the process exits, so that a test can
 * choose its points among all of them.  Writes to stdout and stderr
 * count too: progress output is part of the run.
 */

/* Not config.h: with its _FILE_OFFSET_BITS the libc headers rename
 * pwrite and friends to their 64-bit names, and this file must define
 * both.
 */
#define _GNU_SOURCE

#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <unistd.h>

static unsigned long calls, kill_at;
static int kill_signal = SIGKILL;

static void __attribute__ ((constructor))
kill_at_init (void)
{
  const char *s = getenv ("KILL_AT");

  if (s)
    kill_at = strtoul (s, NULL, 10);
  s = getenv ("KILL_AT_SIGNAL");
  if (s)
    kill_signal = strtol (s, NULL, 10);
}

static void __attribute__ ((destructor))
kill_at_report (void)
{
  const char *path = getenv ("KILL_AT_COUNT");
  FILE *fp;

  if (path == NULL || kill_at > 0)
    return;
  fp = fopen (path, "w");
  if (fp) {
    fprintf (fp, "%lu\n", calls);
    fclose (fp);
  }
}

static void
count (void)
{
  if (++calls == kill_at)
    kill (getpid (), kill_signal);
}

/* Count, then call the real function. */
#define WRAP(ret, name, params, args)                   \
  ret                                                   \
  name params                                           \
  {                                                     \
    static ret (*real) params;                          \
                                                        \
    if (real == NULL)                                   \
      real = dlsym (RTLD_NEXT, #name);                  \
    count ();                                           \
    return real args;                                   \
  }

WRAP (ssize_t, pwrite, (int fd, const void *buf, size_t n, off_t offset),
      (fd, buf, n, offset))
WRAP (ssize_t, pwrite64, (int fd, const void *buf, size_t n, off64_t offset),
      (fd, buf, n, offset))
WRAP (ssize_t, write, (int fd, const void *buf, size_t n), (fd, buf, n))
WRAP (int, fsync, (int fd), (fd))
WRAP (int, fdatasync, (int fd), (fd))
WRAP (int, ftruncate, (int fd, off_t length), (fd, length))
WRAP (int, ftruncate64, (int fd, off64_t length), (fd, length))
WRAP (int, fallocate, (int fd, int mode, off_t offset, off_t len),
      (fd, mode, offset, len))
WRAP (int, fallocate64, (int fd, int mode, off64_t offset, off64_t len),
      (fd, mode, offset, len))
WRAP (int, rename, (const char *from, const char *to), (from, to))
WRAP (int, unlink, (const char *path), (path))
