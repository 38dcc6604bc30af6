/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Whole-range file I/O, for libvdi and its unit tests, opening only
 * regular files, and making a change to a folder durable.
 */

#include <config.h>

#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cleanup.h"

#include "vdi-internal.h"

int
vdi_full_pread (int fd, void *buf, size_t count, uint64_t offset)
{
  char *p = buf;

  while (count > 0) {
    ssize_t r = pread (fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    if (r == 0) {
      errno = EIO;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

bool
vdi_is_zero (const void *buf, size_t len)
{
  const char *p = buf;

  return len == 0 || (p[0] == 0 && memcmp (p, p + 1, len - 1) == 0);
}

int
vdi_full_pwrite (int fd, const void *buf, size_t count, uint64_t offset)
{
  const char *p = buf;

  while (count > 0) {
    ssize_t r = pwrite (fd, p, count, offset);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      return -1;
    }
    p += r;
    count -= r;
    offset += r;
  }
  return 0;
}

static const char *
file_type_name (mode_t mode)
{
  return S_ISFIFO (mode) ? "a FIFO"
    : S_ISBLK (mode) ? "a block device"
    : S_ISCHR (mode) ? "a character device"
    : S_ISSOCK (mode) ? "a socket"
    : S_ISDIR (mode) ? "a folder" : "not a file";
}

static void
refuse_not_regular (const char *path, mode_t mode, const char *what)
{
  vdi_error ("%s: not a regular file (%s): only files are %s",
             path, file_type_name (mode), what);
}

/* Anything but a regular file is refused: a FIFO would block the
 * open, or every read, forever, and a device is not a file of ours.
 * O_NONBLOCK makes the open itself return at once whatever path is,
 * and is cleared once the file is known to be regular.  Some kinds
 * fail the open itself (a socket, a folder opened for writing): they
 * are named too, rather than left to a puzzling errno.
 */
int
vdi_open_regular (const char *path, int mode, const char *what)
{
  struct stat st;
  int fd;

  fd = open (path, mode | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd == -1) {
    if ((errno == ENXIO || errno == EISDIR) &&
        stat (path, &st) == 0 && !S_ISREG (st.st_mode))
      refuse_not_regular (path, st.st_mode, what);
    else
      vdi_error ("%s: open: %m", path);
    return -1;
  }
  if (fstat (fd, &st) == -1) {
    vdi_error ("%s: fstat: %m", path);
    goto err;
  }
  if (!S_ISREG (st.st_mode)) {
    refuse_not_regular (path, st.st_mode, what);
    goto err;
  }
  if (fcntl (fd, F_SETFL, fcntl (fd, F_GETFL) & ~O_NONBLOCK) == -1) {
    vdi_error ("%s: fcntl: %m", path);
    goto err;
  }
  return fd;

 err:
  close (fd);
  return -1;
}

int
vdi_sync_folder (const char *path)
{
  CLEANUP_FREE char *copy = strdup (path);
  int fd;

  if (copy == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  fd = open (dirname (copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd == -1 || fsync (fd) == -1) {
    vdi_error ("%s: syncing its folder: %m", path);
    if (fd >= 0)
      close (fd);
    return -1;
  }
  close (fd);
  return 0;
}
