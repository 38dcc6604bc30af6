/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Opening a differencing image together with its parents.
 *
 * Starting from the top image, each parent is found by the child's
 * linkage UUID: in the media registry when there is one (as
 * VirtualBox's Main does), otherwise by reading the headers of the
 * VDI files in a few folders, the way VirtualBox lays a machine out:
 * the image's own folder, the folder above it (diffs live in the
 * machine's Snapshots folder, bases in the machine folder), the
 * folders of the parents found so far, and any folders the user
 * names.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>

#include "cleanup.h"

#include "vbox-registry.h"
#include "vdi-internal.h"

/* A VDI file seen while scanning folders. */
struct candidate {
  struct vdi_uuid uuid;
  char *path;                   /* realpath */
};

struct finder {
  const struct vdi_parent_search *search;
  char **scanned;               /* folders already read, realpath */
  size_t nr_scanned;
  struct candidate *candidates;
  size_t nr_candidates;
};

static void
finder_free (struct finder *f)
{
  size_t i;

  for (i = 0; i < f->nr_scanned; ++i)
    free (f->scanned[i]);
  free (f->scanned);
  for (i = 0; i < f->nr_candidates; ++i)
    free (f->candidates[i].path);
  free (f->candidates);
}

static bool
has_vdi_suffix (const char *name)
{
  size_t len = strlen (name);

  return len > 4 && strcasecmp (name + len - 4, ".vdi") == 0;
}

static int
add_candidate (struct finder *f, const struct vdi_uuid *uuid, char *path)
{
  struct candidate *c;

  c = realloc (f->candidates, (f->nr_candidates + 1) * sizeof *c);
  if (c == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  f->candidates = c;
  c[f->nr_candidates].uuid = *uuid;
  c[f->nr_candidates].path = path;
  f->nr_candidates++;
  return 0;
}

/* Read the header of every VDI file in dir, once per folder.  Files
 * that are not valid VDI images are skipped (with a debug message).
 */
static int
scan_folder (struct finder *f, const char *dir)
{
  CLEANUP_FREE char *real = realpath (dir, NULL);
  char **scanned;
  DIR *d;
  struct dirent *ent;
  size_t i;

  if (real == NULL)             /* a folder that does not exist */
    return 0;
  for (i = 0; i < f->nr_scanned; ++i)
    if (strcmp (f->scanned[i], real) == 0)
      return 0;
  scanned = realloc (f->scanned, (f->nr_scanned + 1) * sizeof *scanned);
  if (scanned == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  f->scanned = scanned;
  f->scanned[f->nr_scanned++] = real;
  real = NULL;
  dir = f->scanned[f->nr_scanned - 1];

  d = opendir (dir);
  if (d == NULL) {
    vdi_debug ("%s: opendir: %m", dir);
    return 0;
  }
  while ((ent = readdir (d)) != NULL) {
    char *path;
    struct stat st;
    struct vdi_image *img;
    bool was_quiet;

    if (!has_vdi_suffix (ent->d_name))
      continue;
    if (asprintf (&path, "%s/%s", dir, ent->d_name) == -1) {
      vdi_error ("asprintf: %m");
      closedir (d);
      return -1;
    }
    if (stat (path, &st) == -1 || !S_ISREG (st.st_mode)) {
      free (path);
      continue;
    }
    was_quiet = vdi_quiet (true);
    img = vdi_image_open (path, VDI_OPEN_HEADER_ONLY);
    vdi_quiet (was_quiet);
    if (img == NULL) {
      free (path);
      continue;
    }
    if (add_candidate (f, &vdi_image_header (img)->uuid_create, path) == -1) {
      vdi_image_close (img);
      free (path);
      closedir (d);
      return -1;
    }
    vdi_image_close (img);
  }
  closedir (d);
  return 0;
}

/* The folder of path, and the folder above it. */
static int
scan_around (struct finder *f, const char *path)
{
  CLEANUP_FREE char *copy1 = strdup (path);
  CLEANUP_FREE char *copy2 = strdup (path);

  if (copy1 == NULL || copy2 == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  if (scan_folder (f, dirname (copy1)) == -1 ||
      scan_folder (f, dirname (dirname (copy2))) == -1)
    return -1;
  return 0;
}

/* Describe the folders searched, for an error message. */
static char *
searched_folders (const struct finder *f)
{
  size_t i, len = 1;
  char *s;

  for (i = 0; i < f->nr_scanned; ++i)
    len += strlen (f->scanned[i]) + 2;
  s = malloc (len);
  if (s == NULL)
    return NULL;
  s[0] = '\0';
  for (i = 0; i < f->nr_scanned; ++i) {
    if (i > 0)
      strcat (s, ", ");
    strcat (s, f->scanned[i]);
  }
  return s;
}

/* Find the file of the parent of child by scanning folders. */
static char *
find_parent_in_folders (struct finder *f, const struct vdi_image *child)
{
  const struct vdi_uuid *want = &vdi_image_header (child)->uuid_linkage;
  char uuid[VDI_UUID_STRLEN];
  const char *found = NULL;
  size_t i;

  if (scan_around (f, vdi_image_filename (child)) == -1)
    return NULL;
  for (i = 0; i < f->search->nr_dirs; ++i)
    if (scan_folder (f, f->search->dirs[i]) == -1)
      return NULL;

  for (i = 0; i < f->nr_candidates; ++i) {
    if (!vdi_uuid_equal (&f->candidates[i].uuid, want))
      continue;
    if (found && strcmp (found, f->candidates[i].path) != 0) {
      vdi_error ("%s: parent %s is ambiguous: %s and %s both have this "
                 "UUID (use registry= to choose)",
                 vdi_image_filename (child), vdi_uuid_format (want, uuid),
                 found, f->candidates[i].path);
      return NULL;
    }
    found = f->candidates[i].path;
  }
  if (found == NULL) {
    CLEANUP_FREE char *where = searched_folders (f);

    vdi_error ("%s: parent %s not found; looked in %s "
               "(use parent-dir= or registry=)",
               vdi_image_filename (child), vdi_uuid_format (want, uuid),
               where ? where : "its folders");
    return NULL;
  }
  return strdup (found);
}

/* Find the file of the parent of child in the registry. */
static char *
find_parent_in_registry (struct finder *f, const struct vdi_image *child)
{
  const struct vbox_registry *reg = f->search->registry;
  const struct vdi_header *h = vdi_image_header (child);
  const struct vbox_medium *medium, *parent;
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN], c[VDI_UUID_STRLEN];

  medium = vbox_registry_find_uuid (reg, &h->uuid_create);
  if (medium && medium->parent &&
      !vdi_uuid_equal (&medium->parent->uuid, &h->uuid_linkage)) {
    vdi_error ("%s: parent UUID %s does not match the parent %s of "
               "medium %s in the media registry %s",
               vdi_image_filename (child), vdi_uuid_format (&h->uuid_linkage, a),
               vdi_uuid_format (&medium->parent->uuid, b),
               vdi_uuid_format (&h->uuid_create, c), medium->registry_file);
    return NULL;
  }

  parent = vbox_registry_find_uuid (reg, &h->uuid_linkage);
  if (parent == NULL) {
    vdi_error ("%s: parent %s is not in the media registry",
               vdi_image_filename (child),
               vdi_uuid_format (&h->uuid_linkage, a));
    return NULL;
  }
  if (strcasecmp (parent->format, "VDI") != 0) {
    vdi_error ("%s: parent %s (%s) has format %s, which is not supported",
               vdi_image_filename (child),
               vdi_uuid_format (&parent->uuid, a), parent->location,
               parent->format);
    return NULL;
  }
  return strdup (parent->location);
}

static bool
is_differencing (const struct vdi_header *h)
{
  return !vdi_uuid_is_null (&h->uuid_linkage) &&
    (h->type == VDI_TYPE_DIFF || h->type == VDI_TYPE_UNDO);
}

struct vdi_chain *
vdi_chain_open (const char *filename, unsigned top_flags,
                const struct vdi_parent_search *search)
{
  struct finder f = { .search = search };
  struct vdi_image *images[VDI_MAX_CHAIN_DEPTH];
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];
  size_t n = 0, i;

  images[n] = vdi_image_open (filename, top_flags);
  if (images[n] == NULL)
    goto err;
  n++;

  while (is_differencing (vdi_image_header (images[n - 1]))) {
    const struct vdi_image *child = images[n - 1];
    const struct vdi_uuid *linkage = &vdi_image_header (child)->uuid_linkage;
    CLEANUP_FREE char *parent_path = NULL;

    if (n == VDI_MAX_CHAIN_DEPTH) {
      vdi_error ("%s: the chain is more than %d images deep",
                 filename, VDI_MAX_CHAIN_DEPTH);
      goto err;
    }
    for (i = 0; i < n; ++i) {
      if (vdi_uuid_equal (linkage, &vdi_image_header (images[i])->uuid_create)) {
        vdi_error ("%s: the chain has a cycle: %s names %s (%s) as its "
                   "parent, which is already in the chain",
                   filename, vdi_image_filename (child),
                   vdi_uuid_format (linkage, a), vdi_image_filename (images[i]));
        goto err;
      }
    }

    parent_path = search->registry
      ? find_parent_in_registry (&f, child)
      : find_parent_in_folders (&f, child);
    if (parent_path == NULL)
      goto err;

    images[n] = vdi_image_open (parent_path, 0);
    if (images[n] == NULL)
      goto err;
    n++;
    if (!vdi_uuid_equal (linkage, &vdi_image_header (images[n - 1])->uuid_create)) {
      vdi_error ("%s: parent %s was expected in %s, which has UUID %s",
                 vdi_image_filename (child), vdi_uuid_format (linkage, a),
                 parent_path,
                 vdi_uuid_format (&vdi_image_header (images[n - 1])->uuid_create,
                                  b));
      goto err;
    }
    vdi_debug ("%s: parent %s is %s", vdi_image_filename (child),
               vdi_uuid_format (linkage, a), parent_path);
  }

  finder_free (&f);
  return vdi_chain_new (images, n);

 err:
  finder_free (&f);
  for (i = 0; i < n; ++i)
    vdi_image_close (images[i]);
  return NULL;
}
