/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The journal of a merge, IMAGE.merge beside the image given to
 * vdi_merge: what is left to do once the data has been copied (see
 * vdi-merge.c).  The chain code reads it too, to follow an image that
 * an unfinished merge has relinked already.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include "cleanup.h"

#include "vdi-internal.h"

const char *
vdi_journal_direction_name (enum vdi_merge_direction direction)
{
  return direction == VDI_MERGE_INTO_PARENT ? "into-parent" : "into-child";
}

int
vdi_journal_write (const char *path, const struct vdi_journal *j)
{
  CLEANUP_FREE char *tmp = NULL;
  char removed[VDI_UUID_STRLEN], parent[VDI_UUID_STRLEN];
  char parent_modify[VDI_UUID_STRLEN];
  FILE *fp;

  if (asprintf (&tmp, "%s.tmp", path) == -1) {
    vdi_error ("asprintf: %m");
    return -1;
  }
  fp = fopen (tmp, "we");
  if (fp == NULL) {
    vdi_error ("%s: %m", tmp);
    return -1;
  }
  fprintf (fp,
           "vdi merge journal\n"
           "direction=%s\n"
           "removed=%s\n"
           "removed-uuid=%s\n"
           "parent-uuid=%s\n"
           "parent-modify-uuid=%s\n",
           vdi_journal_direction_name (j->direction), j->removed,
           vdi_uuid_format (&j->removed_uuid, removed),
           vdi_uuid_format (&j->parent, parent),
           vdi_uuid_format (&j->parent_modify, parent_modify));
  if (fflush (fp) == EOF || fsync (fileno (fp)) == -1) {
    vdi_error ("%s: %m", tmp);
    fclose (fp);
    unlink (tmp);
    return -1;
  }
  if (fclose (fp) == EOF || rename (tmp, path) == -1) {
    vdi_error ("%s: %m", path);
    unlink (tmp);
    return -1;
  }
  return vdi_sync_folder (path);
}

/* Read the value of "key=value\n" from line into its place in j. */
static int
journal_field (struct vdi_journal *j, const char *line)
{
  const char *eq = strchr (line, '=');
  const char *value = eq ? eq + 1 : "";
  size_t key_len = eq ? (size_t) (eq - line) : 0;

#define IS_KEY(name) (key_len == strlen (name) && \
                      strncmp (line, (name), key_len) == 0)
  if (IS_KEY ("direction")) {
    if (strcmp (value, "into-parent") == 0)
      j->direction = VDI_MERGE_INTO_PARENT;
    else if (strcmp (value, "into-child") == 0)
      j->direction = VDI_MERGE_INTO_CHILD;
    else
      return -1;
    return 0;
  }
  if (IS_KEY ("removed")) {
    free (j->removed);
    j->removed = strdup (value);
    return j->removed && *value == '/' ? 0 : -1;
  }
  if (IS_KEY ("removed-uuid"))
    return vdi_uuid_parse (value, &j->removed_uuid);
  if (IS_KEY ("parent-uuid"))
    return vdi_uuid_parse (value, &j->parent);
  if (IS_KEY ("parent-modify-uuid"))
    return vdi_uuid_parse (value, &j->parent_modify);
#undef IS_KEY
  return -1;
}

/* Returns 1 and fills j if the journal exists, 0 if it does not. */
int
vdi_journal_read (const char *path, struct vdi_journal *j)
{
  CLEANUP_FREE char *line = NULL;
  size_t size = 0;
  ssize_t len;
  unsigned lines = 0;
  FILE *fp;

  memset (j, 0, sizeof *j);
  fp = fopen (path, "re");
  if (fp == NULL) {
    if (errno == ENOENT)
      return 0;
    vdi_error ("%s: %m", path);
    return -1;
  }
  while ((len = getline (&line, &size, fp)) > 0) {
    if (line[len - 1] != '\n')
      break;
    line[len - 1] = '\0';
    if (lines++ == 0 ? strcmp (line, "vdi merge journal") != 0
        : journal_field (j, line) == -1)
      break;
  }
  fclose (fp);
  if (len > 0 || lines != 6 || j->removed == NULL) {
    vdi_error ("%s: not a merge journal, or a damaged one", path);
    free (j->removed);
    j->removed = NULL;
    return -1;
  }
  return 1;
}

/* The journal of a merge of filename: *path gets its name; returns 1
 * and fills j if it exists, 0 if not, -1 after an error.
 */
int
vdi_journal_of (const char *filename, char **path, struct vdi_journal *j)
{
  if (asprintf (path, "%s.merge", filename) == -1) {
    vdi_error ("asprintf: %m");
    *path = NULL;
    return -1;
  }
  return vdi_journal_read (*path, j);
}
