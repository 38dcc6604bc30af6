/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Paths in VirtualBox settings files: medium locations and a
 * machine's snapshot folder, translated to absolute POSIX paths.
 *
 * A relative path is relative to the folder of the settings file that
 * holds it.  A path written by VirtualBox on Windows (backslashes or
 * a drive letter) cannot be used as it is: a relative one is tried
 * with '/' for '\\'; if there is no such file, as the files may have
 * moved with the machine folder, its file name is looked for in the
 * machine folder, the machine's snapshot folder and the folder of the
 * settings file.  If no file is found, the first of those is the
 * guess, so that errors can name it.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vdi-internal.h"

char *
vbox_path_join (const char *dir, const char *name)
{
  size_t len = strlen (dir);
  char *path;

  if (asprintf (&path, "%s%s%s", dir,
                len > 0 && dir[len - 1] == '/' ? "" : "/", name) == -1) {
    vdi_error ("asprintf: %m");
    return NULL;
  }
  return path;
}

char *
vbox_path_folder (const char *path)
{
  char *folder = strdup (path), *slash;

  if (folder == NULL) {
    vdi_error ("strdup: %m");
    return NULL;
  }
  slash = strrchr (folder, '/');
  if (slash == folder)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';
  return folder;
}

static bool
has_drive_letter (const char *path)
{
  return ((path[0] >= 'A' && path[0] <= 'Z') ||
          (path[0] >= 'a' && path[0] <= 'z')) && path[1] == ':';
}

/* A path written by VirtualBox on Windows: backslashes or a drive
 * letter.  A path starting with '/' is taken as a POSIX path.
 */
static bool
is_windows_path (const char *path)
{
  return path[0] != '/' &&
    (strchr (path, '\\') != NULL || has_drive_letter (path));
}

static bool
is_windows_absolute (const char *path)
{
  return has_drive_letter (path) || path[0] == '\\';
}

/* The last component of a Windows path. */
static const char *
windows_basename (const char *path)
{
  const char *p, *base = has_drive_letter (path) ? path + 2 : path;

  for (p = base; *p; ++p)
    if (*p == '\\' || *p == '/')
      base = p + 1;
  return base;
}

/* A relative Windows path with '/' for '\\'. */
static char *
windows_to_posix (const char *path)
{
  char *r = strdup (path), *p;

  if (r == NULL) {
    vdi_error ("strdup: %m");
    return NULL;
  }
  for (p = r; *p; ++p)
    if (*p == '\\')
      *p = '/';
  return r;
}

static bool
file_exists (const char *path)
{
  return access (path, F_OK) == 0;
}

/* Not inlined into the recursive load_hard_disk, for its buffers. */
char * __attribute__ ((__noinline__))
vbox_path_resolve_location (const char *filename, const xmlNode *node,
                            const char *folder,
                            const struct vbox_machine *machine,
                            const char *written)
{
  const char *dirs[3];
  const char *base;
  char buf[VBOX_MSG_PATH_MAX], pbuf[VBOX_MSG_PATH_MAX];
  char *path, *guess = NULL;
  size_t nr_dirs = 0, i;

  if (*written == '\0') {
    vdi_error ("%s: line %ld: <%s> has an empty location",
               filename, xmlGetLineNo (node), node->name);
    return NULL;
  }
  if (written[0] == '/') {
    path = strdup (written);
    if (path == NULL)
      vdi_error ("strdup: %m");
    return path;
  }
  if (!is_windows_path (written))
    return vbox_path_join (folder, written);

  /* A Windows path: the file may have moved with the machine folder. */
  base = windows_basename (written);
  if (*base == '\0' || strcmp (base, ".") == 0 || strcmp (base, "..") == 0) {
    vdi_error ("%s: line %ld: location \"%s\" names no file",
               filename, xmlGetLineNo (node),
               vbox_xml_clean_text (written, buf, sizeof buf));
    return NULL;
  }
  if (!is_windows_absolute (written)) {
    CLEANUP_FREE char *rel = windows_to_posix (written);

    if (rel == NULL)
      return NULL;
    path = vbox_path_join (folder, rel);
    if (path == NULL || file_exists (path))
      return path;
    free (path);
  }

  if (machine) {
    dirs[nr_dirs++] = machine->folder;
    dirs[nr_dirs++] = machine->snapshot_folder;
  }
  if (machine == NULL || strcmp (machine->folder, folder) != 0)
    dirs[nr_dirs++] = folder;

  for (i = 0; i < nr_dirs; ++i) {
    path = vbox_path_join (dirs[i], base);
    if (path == NULL) {
      free (guess);
      return NULL;
    }
    if (file_exists (path)) {
      vdi_debug ("%s: Windows location %s found as %s",
                 filename, vbox_xml_clean_text (written, buf, sizeof buf),
                 vbox_xml_clean_text (path, pbuf, sizeof pbuf));
      free (guess);
      return path;
    }
    if (guess == NULL)
      guess = path;
    else
      free (path);
  }
  vdi_debug ("%s: Windows location %s not found, guessing %s",
             filename, vbox_xml_clean_text (written, buf, sizeof buf),
             vbox_xml_clean_text (guess, pbuf, sizeof pbuf));
  return guess;
}

char *
vbox_path_resolve_snapshot_folder (const char *folder, const char *written)
{
  char *path;

  if (written == NULL || *written == '\0')
    return vbox_path_join (folder, "Snapshots");
  if (written[0] == '/') {
    path = strdup (written);
    if (path == NULL)
      vdi_error ("strdup: %m");
    return path;
  }
  if (is_windows_path (written)) {
    if (is_windows_absolute (written)) {
      const char *base = windows_basename (written);

      return vbox_path_join (folder, *base ? base : "Snapshots");
    }
    else {
      CLEANUP_FREE char *rel = windows_to_posix (written);

      return rel ? vbox_path_join (folder, rel) : NULL;
    }
  }
  return vbox_path_join (folder, written);
}
