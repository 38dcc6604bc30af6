/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <fcntl.h>
#include <ftw.h>
#include <unistd.h>

#include "libvdi.h"
#include "vdi-io.h"

#include "fuzz-common.h"

static char folder[64];

static void
quiet_log (enum vdi_log_level level, const char *msg)
{
}

static int
remove_entry (const char *path, const struct stat *st, int flag,
              struct FTW *ftw)
{
  remove (path);
  return 0;
}

static void
remove_folder (void)
{
  nftw (folder, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
fuzz_init (void)
{
  /* tmpfs if there is one: the harnesses write and sync files at
   * every run.
   */
  const char *tmpdir = getenv ("TMPDIR");

  if (tmpdir == NULL || *tmpdir == '\0')
    tmpdir = access ("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf (folder, sizeof folder, "%s/vdi-fuzz-XXXXXX", tmpdir);
  if (strlen (folder) + 1 == sizeof folder || mkdtemp (folder) == NULL) {
    perror (folder);
    exit (EXIT_FAILURE);
  }
  atexit (remove_folder);
  vdi_set_log_function (quiet_log);
}

const char *
fuzz_path (const char *name)
{
  static struct { const char *name; char path[128]; } paths[8];
  size_t i;

  for (i = 0; i < sizeof paths / sizeof paths[0]; ++i) {
    if (paths[i].name == NULL) {
      paths[i].name = name;
      snprintf (paths[i].path, sizeof paths[i].path, "%s/%s", folder, name);
    }
    if (strcmp (paths[i].name, name) == 0)
      return paths[i].path;
  }
  abort ();                     /* more names than the harnesses use */
}

const char *
fuzz_write_file (const char *name, const void *data, size_t size,
                 uint64_t extend)
{
  const char *path = fuzz_path (name);
  int fd;

  fd = open (path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd == -1 ||
      vdi_full_pwrite (fd, data, size, 0) == -1 ||
      ftruncate (fd, size + extend) == -1 ||
      close (fd) == -1)
    fuzz_fail ("%s: %m", path);
  return path;
}

uint8_t
fuzz_base_byte (uint64_t offset)
{
  /* Not periodic in a block or a sector: data read from the wrong
   * place shows.
   */
  return (offset >> 9) * 31 + offset * 13 + 0x5a;
}

void
fuzz_write_base (void)
{
  const char *path = fuzz_path ("base.vdi");
  struct vdi_header h;
  struct vdi_image *img;
  struct vdi_chain *chain;
  uint8_t buf[4096];
  uint64_t offset;
  size_t i;

  vdi_header_init_dynamic (&h, VDI_TYPE_NORMAL, FUZZ_BASE_SIZE,
                           FUZZ_BLOCK_SIZE);
  if (vdi_uuid_parse (FUZZ_BASE_UUID, &h.uuid_create) == -1 ||
      vdi_uuid_generate (&h.uuid_modify) == -1 ||
      vdi_image_create (path, &h) == -1)
    fuzz_fail ("%s: cannot create the base image", path);
  img = vdi_image_open (path, VDI_OPEN_WRITE);
  chain = img ? vdi_chain_new (&img, 1) : NULL;
  if (chain == NULL)
    fuzz_fail ("%s: cannot open the base image", path);
  for (offset = FUZZ_BLOCK_SIZE; offset < FUZZ_BASE_SIZE;
       offset += sizeof buf) {
    if (offset / FUZZ_BLOCK_SIZE % 2 == 0)
      continue;
    for (i = 0; i < sizeof buf; ++i)
      buf[i] = fuzz_base_byte (offset + i);
    if (vdi_chain_pwrite (chain, buf, sizeof buf, offset, 0, NULL) == -1)
      fuzz_fail ("%s: cannot write the base image", path);
  }
  if (vdi_chain_flush (chain) == -1)
    fuzz_fail ("%s: cannot flush the base image", path);
  vdi_chain_free (chain);
}

void
fuzz_fail (const char *fs, ...)
{
  va_list args;

  va_start (args, fs);
  fprintf (stderr, "fuzz: ");
  vfprintf (stderr, fs, args);
  fprintf (stderr, "\n");
  va_end (args);
  abort ();
}
