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
#include <fcntl.h>
#include <dirent.h>
#include <libgen.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cleanup.h"

#include "vbox-registry.h"
#include "vdi-internal.h"

/* A VDI file seen while scanning folders. */
struct candidate {
  struct vdi_uuid uuid;
  struct vdi_uuid linkage;      /* its parent's UUID, null for a base */
  char *path;                   /* in a folder that went through realpath */
  dev_t dev;                    /* the file itself: a symlink or hard link */
  ino_t ino;                    /* to a file already seen is the same file */
  /* A VDI file that does not open: its header decodes (so its UUID is
   * known) but does not validate.  Never used as a parent, only named
   * when it is the parent wanted.
   */
  bool broken;
};

struct finder {
  const struct vdi_parent_search *search;
  char **scanned;               /* folders already read, realpath */
  bool *user_only;              /* scanned[i] is only one of search->dirs,
                                 * not a folder of the images */
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
  free (f->user_only);
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
add_candidate (struct finder *f, const struct vdi_uuid *uuid,
               const struct vdi_uuid *linkage, char *path,
               const struct stat *st, bool broken)
{
  struct candidate *c;

  c = realloc (f->candidates, (f->nr_candidates + 1) * sizeof *c);
  if (c == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  f->candidates = c;
  c[f->nr_candidates].uuid = *uuid;
  c[f->nr_candidates].linkage = *linkage;
  c[f->nr_candidates].path = path;
  c[f->nr_candidates].dev = st->st_dev;
  c[f->nr_candidates].ino = st->st_ino;
  c[f->nr_candidates].broken = broken;
  f->nr_candidates++;
  return 0;
}

static bool
is_differencing (const struct vdi_header *h)
{
  return !vdi_uuid_is_null (&h->uuid_linkage) &&
    (h->type == VDI_TYPE_DIFF || h->type == VDI_TYPE_UNDO);
}

/* The create UUID of a file that vdi_image_open refused, if its
 * header decodes at all.  Quiet.
 */
static bool
decode_broken (const char *path, struct vdi_uuid *uuid)
{
  uint8_t buf[VDI_HEADER_READ_SIZE];
  struct vdi_header h;
  ssize_t len;
  bool was_quiet, ok;
  int fd;

  fd = open (path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd == -1)
    return false;
  len = pread (fd, buf, sizeof buf, 0);
  close (fd);
  if (len <= 0)
    return false;
  was_quiet = vdi_quiet (true);
  ok = vdi_header_decode (path, buf, len, &h) == 0;
  vdi_quiet (was_quiet);
  if (ok)
    *uuid = h.uuid_create;
  return ok;
}

/* Read the header of every VDI file in dir, once per folder (user:
 * dir is one of search->dirs).  Files that are not valid VDI images
 * are skipped (with a debug message); those whose header decodes are
 * remembered as broken.
 */
static int
scan_folder (struct finder *f, const char *dir, bool user)
{
  CLEANUP_FREE char *real = realpath (dir, NULL);
  char **scanned;
  bool *user_only;
  DIR *d;
  struct dirent *ent;
  size_t i;

  if (real == NULL)             /* a folder that does not exist */
    return 0;
  for (i = 0; i < f->nr_scanned; ++i)
    if (strcmp (f->scanned[i], real) == 0) {
      f->user_only[i] = f->user_only[i] && user;
      return 0;
    }
  scanned = realloc (f->scanned, (f->nr_scanned + 1) * sizeof *scanned);
  if (scanned == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  f->scanned = scanned;
  user_only = realloc (f->user_only, (f->nr_scanned + 1) * sizeof *user_only);
  if (user_only == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  f->user_only = user_only;
  f->user_only[f->nr_scanned] = user;
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
    const struct vdi_uuid none = { { 0 } };
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
      struct vdi_uuid uuid;

      if (decode_broken (path, &uuid)) {
        if (add_candidate (f, &uuid, &none, path, &st, true) == -1) {
          free (path);
          closedir (d);
          return -1;
        }
      }
      else
        free (path);
      continue;
    }
    if (add_candidate (f, &vdi_image_header (img)->uuid_create,
                       is_differencing (vdi_image_header (img))
                       ? &vdi_image_header (img)->uuid_linkage : &none,
                       path, &st, false) == -1) {
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
  if (scan_folder (f, dirname (copy1), false) == -1 ||
      scan_folder (f, dirname (dirname (copy2)), false) == -1)
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

/* Scan the folders where the parent of child may be: its own, the
 * one above, the user's.
 */
static int
scan_for_parent (struct finder *f, const struct vdi_image *child)
{
  size_t i;

  if (scan_around (f, vdi_image_filename (child)) == -1)
    return -1;
  for (i = 0; i < f->search->nr_dirs; ++i)
    if (scan_folder (f, f->search->dirs[i], true) == -1)
      return -1;
  return 0;
}

/* The candidate with this UUID, or NULL.  If two different files
 * have it, *other is the second one.  Broken files count only if
 * broken is true.
 */
static const struct candidate *
find_candidate (const struct finder *f, const struct vdi_uuid *want,
                bool broken, const struct candidate **other)
{
  const struct candidate *found = NULL;
  size_t i;

  *other = NULL;
  for (i = 0; i < f->nr_candidates; ++i) {
    const struct candidate *c = &f->candidates[i];

    if (!vdi_uuid_equal (&c->uuid, want) || c->broken != broken)
      continue;
    if (found == NULL)
      found = c;
    else if (found->dev != c->dev || found->ino != c->ino) {
      *other = c;
      break;
    }
  }
  return found;
}

/* " (use DIRS or REGISTRY)" with the options the user has for more
 * folders and a registry, as the caller named them, or "" if it named
 * none.  Written into buf[256].
 */
static const char *
search_hint (const struct vdi_parent_search *search, char *buf)
{
  const char *a = search->dirs_option;
  const char *b = search->registry_option;

  if (a && b)
    snprintf (buf, 256, " (use %s or %s)", a, b);
  else if (a || b)
    snprintf (buf, 256, " (use %s)", a ? a : b);
  else
    buf[0] = '\0';
  return buf;
}

/* Append s to the list unless it is there already. */
static int
append_unique (char ***list, size_t *n, const char *s)
{
  size_t i;

  for (i = 0; i < *n; ++i)
    if (strcmp ((*list)[i], s) == 0)
      return 0;
  return vdi_strings_append (list, n, s);
}

/* Does the settings file at path register uuid at the file of one of
 * the candidates?  Quiet: it may be anything named .vbox.
 */
static bool
registers (const char *path, const struct vdi_uuid *uuid,
           const struct candidate *const *candidates, size_t n)
{
  struct vbox_registry *reg;
  const struct vbox_medium *medium;
  struct stat st;
  bool was_quiet, r = false;
  size_t i;

  was_quiet = vdi_quiet (true);
  reg = vbox_registry_new ();
  if (reg && vbox_registry_load (reg, path) == 0 &&
      (medium = vbox_registry_find_uuid (reg, uuid)) != NULL &&
      stat (medium->location, &st) == 0)
    for (i = 0; i < n; ++i)
      r = r || (st.st_dev == candidates[i]->dev &&
                st.st_ino == candidates[i]->ino);
  vbox_registry_free (reg);
  vdi_quiet (was_quiet);
  return r;
}

/* Append to *list the settings files (*.vbox) in dir that register
 * uuid at the file of one of the candidates.
 */
static int
registries_in (const char *dir, const struct vdi_uuid *uuid,
               const struct candidate *const *candidates, size_t n,
               char ***list, size_t *nr)
{
  DIR *d = opendir (dir);
  struct dirent *ent;
  int r = 0;

  if (d == NULL)
    return 0;
  while (r == 0 && (ent = readdir (d)) != NULL) {
    CLEANUP_FREE char *path = NULL;
    size_t len = strlen (ent->d_name);

    if (len <= 5 || strcasecmp (ent->d_name + len - 5, ".vbox") != 0)
      continue;
    if (asprintf (&path, "%s/%s", dir, ent->d_name) == -1) {
      vdi_error ("asprintf: %m");
      r = -1;
    }
    else if (registers (path, uuid, candidates, n))
      r = append_unique (list, nr, path);
  }
  closedir (d);
  return r;
}

static int
compare_strings (const void *a, const void *b)
{
  return strcmp (*(char *const *) a, *(char *const *) b);
}

/* "OPTION VALUE", or "OPTION=VALUE" for an option ending in '='. */
static void
print_option (FILE *fp, const char *option, const char *value)
{
  const size_t len = strlen (option);

  fprintf (fp, "%s%s%s", option,
           len > 0 && option[len - 1] == '=' ? "" : " ", value);
}

/* Print " A or B or C" of the values of option. */
static void
print_choices (FILE *fp, const char *option, char **values, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i) {
    fprintf (fp, "%s", i == 0 ? " " : " or ");
    print_option (fp, option, values[i]);
  }
}

/* What chooses between two files that both have the parent's UUID,
 * for the end of the error: a settings file beside them that
 * registers one ("use registry=FILE"), a folder that only the user
 * added and that holds one ("leave out parent-dir=DIR"), or, when
 * neither is there, moving the wrong one away.  NULL after an error.
 */
static char *
ambiguity_hint (const struct finder *f, const struct vdi_uuid *uuid,
                const struct candidate *a, const struct candidate *b)
{
  const struct candidate *const pair[] = { a, b };
  const struct vdi_parent_search *search = f->search;
  char **registries = NULL, **dirs = NULL, *hint = NULL;
  size_t nr_registries = 0, nr_dirs = 0, i, j, len;
  FILE *fp;

  for (i = 0; i < 2; ++i) {
    CLEANUP_FREE char *copy1 = strdup (pair[i]->path);
    CLEANUP_FREE char *copy2 = strdup (pair[i]->path);
    const char *folder;

    if (copy1 == NULL || copy2 == NULL) {
      vdi_error ("strdup: %m");
      goto out;
    }
    folder = dirname (copy1);
    if (search->registry_option &&
        (registries_in (folder, uuid, pair, 2,
                        &registries, &nr_registries) == -1 ||
         registries_in (dirname (dirname (copy2)), uuid, pair, 2,
                        &registries, &nr_registries) == -1))
      goto out;
    for (j = 0; search->dirs_option && j < f->nr_scanned; ++j)
      if (f->user_only[j] && strcmp (f->scanned[j], folder) == 0 &&
          append_unique (&dirs, &nr_dirs, folder) == -1)
        goto out;
  }
  /* Folders list their files in no particular order.  (With none,
   * registries is NULL, which qsort may not be given.)
   */
  if (nr_registries > 1)
    qsort (registries, nr_registries, sizeof *registries, compare_strings);

  fp = open_memstream (&hint, &len);
  if (fp == NULL) {
    vdi_error ("open_memstream: %m");
    goto out;
  }
  if (nr_registries > 0 || nr_dirs > 0) {
    fprintf (fp, " (");
    if (nr_registries > 0) {
      fprintf (fp, "use");
      print_choices (fp, search->registry_option, registries, nr_registries);
    }
    if (nr_registries > 0 && nr_dirs > 0)
      fprintf (fp, ", or ");
    if (nr_dirs > 0) {
      fprintf (fp, "leave out");
      print_choices (fp, search->dirs_option, dirs, nr_dirs);
    }
    fprintf (fp, "%s to choose)", nr_registries > 0 && nr_dirs > 0 ? "," : "");
  }
  else
    fprintf (fp, "; %smove the one that is not the parent out of the "
             "folders searched", search->registry_option
             ? "no settings file beside them registers either, so " : "");
  if (fclose (fp) == EOF) {
    vdi_error ("fclose: %m");
    free (hint);
    hint = NULL;
  }

 out:
  vdi_strings_free (registries, nr_registries);
  vdi_strings_free (dirs, nr_dirs);
  return hint;
}

/* Does an unfinished merge explain why the image in child_path links
 * to linkage rather than to its registry parent x?  It does when the
 * journal of the merge that removes x (beside x for a merge into its
 * parent, beside child_path for one into the child) relinks to
 * linkage, x's own parent: the settings file is rewritten after the
 * relinks (vdi-img snapshot delete), and the chain reads the same
 * either way.
 */
static bool
merge_relinked (const char *child_path, const struct vbox_medium *x,
                const struct vdi_uuid *linkage)
{
  const char *const owners[] = { x->location, child_path };
  struct vdi_journal j;
  size_t i;
  bool was_quiet, found = false;

  if (x->parent == NULL || !vdi_uuid_equal (&x->parent->uuid, linkage))
    return false;
  for (i = 0; !found && i < sizeof owners / sizeof owners[0]; ++i) {
    CLEANUP_FREE char *path = NULL;
    int r;

    was_quiet = vdi_quiet (true);
    r = vdi_journal_of (owners[i], &path, &j);
    vdi_quiet (was_quiet);
    if (r == 1) {
      found = vdi_uuid_equal (&j.removed_uuid, &x->uuid) &&
        vdi_uuid_equal (&j.parent, linkage);
      free (j.removed);
    }
  }
  if (found)
    vdi_debug ("%s: relinked past %s by a merge that is not finished",
               child_path, x->location);
  return found;
}

/* If child is a layer that the vdidiff filter made over a disk that
 * is not a VDI image, say so: its parent UUID is no VDI image's, and
 * only the filter over that disk serves it.  Returns true if it did.
 */
static bool
layer_over_other (const struct vdi_image *child)
{
  const struct vdi_header *h = vdi_image_header (child);
  char uuid[VDI_UUID_STRLEN];

  if (strcmp (h->comment, VDI_VDIDIFF_COMMENT) != 0 ||
      !vdi_uuid_is_null (&h->uuid_parent_modify))
    return false;
  vdi_error ("%s: the vdidiff filter made this differencing image over a "
             "disk that is not a VDI image (its parent UUID %s names no "
             "VDI image): serve it with the filter over that disk "
             "(--filter=vdidiff ... vdidiff=%s)",
             vdi_image_filename (child),
             vdi_uuid_format (&h->uuid_linkage, uuid),
             vdi_image_filename (child));
  return true;
}

/* Find the file of the parent of child by scanning folders. */
static char *
find_parent_in_folders (struct finder *f, const struct vdi_image *child)
{
  const struct vdi_uuid *want = &vdi_image_header (child)->uuid_linkage;
  char uuid[VDI_UUID_STRLEN], hint[256];
  const struct candidate *found, *other;
  char *r;

  if (scan_for_parent (f, child) == -1)
    return NULL;

  found = find_candidate (f, want, false, &other);
  if (other) {
    CLEANUP_FREE char *choose = ambiguity_hint (f, want, found, other);

    if (choose)
      vdi_error ("%s: parent %s is ambiguous: %s and %s both have this "
                 "UUID%s", vdi_image_filename (child),
                 vdi_uuid_format (want, uuid), found->path, other->path,
                 choose);
    return NULL;
  }
  if (found == NULL && (found = find_candidate (f, want, true, &other))) {
    /* The parent is there but broken: let it say why, in one error
     * line naming it (and the child in a debug line).
     */
    struct vdi_image *img;

    vdi_debug ("%s: parent %s is %s, which does not open",
               vdi_image_filename (child), vdi_uuid_format (want, uuid),
               found->path);
    img = vdi_image_open (found->path, 0);
    if (img) {                  /* it was changed meanwhile */
      vdi_image_close (img);
      vdi_error ("%s: parent %s (%s) changed while it was read",
                 vdi_image_filename (child), uuid, found->path);
    }
    return NULL;
  }
  if (found == NULL) {
    CLEANUP_FREE char *where = NULL;

    if (layer_over_other (child))
      return NULL;
    where = searched_folders (f);
    vdi_error ("%s: parent %s not found; looked in %s%s",
               vdi_image_filename (child), vdi_uuid_format (want, uuid),
               where ? where : "its folders",
               search_hint (f->search, hint));
    return NULL;
  }
  r = strdup (found->path);
  if (r == NULL)
    vdi_error ("strdup: %m");
  return r;
}

/* Find the file of the parent of child in the registry. */
static char *
find_parent_in_registry (struct finder *f, const struct vdi_image *child)
{
  const struct vbox_registry *reg = f->search->registry;
  const struct vdi_header *h = vdi_image_header (child);
  const struct vbox_medium *medium, *parent;
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN], c[VDI_UUID_STRLEN];
  char *r;

  medium = vbox_registry_find_uuid (reg, &h->uuid_create);
  if (medium && medium->parent &&
      !vdi_uuid_equal (&medium->parent->uuid, &h->uuid_linkage) &&
      !merge_relinked (vdi_image_filename (child), medium->parent,
                       &h->uuid_linkage)) {
    vdi_error ("%s: parent UUID %s does not match the parent %s of "
               "medium %s in the media registry %s",
               vdi_image_filename (child), vdi_uuid_format (&h->uuid_linkage, a),
               vdi_uuid_format (&medium->parent->uuid, b),
               vdi_uuid_format (&h->uuid_create, c), medium->registry_file);
    return NULL;
  }

  parent = vbox_registry_find_uuid (reg, &h->uuid_linkage);
  if (parent == NULL) {
    if (layer_over_other (child))
      return NULL;
    vdi_error ("%s: parent %s is not in the media registry%s%s",
               vdi_image_filename (child),
               vdi_uuid_format (&h->uuid_linkage, a),
               medium ? " " : "", medium ? medium->registry_file : "");
    return NULL;
  }
  if (strcasecmp (parent->format, "VDI") != 0) {
    vdi_error ("%s: parent %s (%s) has format %s, which is not supported",
               vdi_image_filename (child),
               vdi_uuid_format (&parent->uuid, a), parent->location,
               parent->format);
    return NULL;
  }
  /* Say which medium the missing file is, not only "open: No such
   * file" about a name the user may never have seen.
   */
  if (access (parent->location, F_OK) == -1) {
    vdi_error ("%s: parent %s is at %s in the media registry %s: %m",
               vdi_image_filename (child),
               vdi_uuid_format (&parent->uuid, a), parent->location,
               parent->registry_file);
    return NULL;
  }
  r = strdup (parent->location);
  if (r == NULL)
    vdi_error ("strdup: %m");
  return r;
}

/* VirtualBox refuses a fixed image anywhere but at the base of a
 * chain.  A fixed image that ends the chain but has a parent UUID is
 * either a base image with a leftover linkage, which VirtualBox
 * ignores (so do we), or an image in the middle of a chain whose
 * parent exists.  With a registry, the registry says which: a medium
 * nested in another has a parent, a top-level one is a base (an
 * image not in the registry has a parent if its parent UUID is
 * registered).  Without one, it has a parent if a file with that
 * UUID is in the folders searched.  The second case is an error.
 */
static int
check_fixed_base (struct finder *f, const struct vdi_image *img)
{
  const struct vdi_header *h = vdi_image_header (img);
  const struct vdi_uuid *parent_uuid = &h->uuid_linkage;
  const char *parent_file = NULL;
  char a[VDI_UUID_STRLEN];

  if (h->type != VDI_TYPE_FIXED || vdi_uuid_is_null (&h->uuid_linkage))
    return 0;

  if (f->search->registry) {
    const struct vbox_medium *medium, *parent;

    medium = vbox_registry_find_uuid (f->search->registry, &h->uuid_create);
    parent = medium ? medium->parent
      : vbox_registry_find_uuid (f->search->registry, &h->uuid_linkage);
    if (parent) {
      parent_uuid = &parent->uuid;
      parent_file = parent->location;
    }
  }
  else {
    const struct candidate *found, *other;

    if (scan_for_parent (f, img) == -1)
      return -1;
    found = find_candidate (f, &h->uuid_linkage, false, &other);
    if (found)
      parent_file = found->path;
  }

  if (parent_file) {
    vdi_error ("%s: a fixed image can only be the base of a chain, but "
               "this one has the parent %s (%s)",
               vdi_image_filename (img), vdi_uuid_format (parent_uuid, a),
               parent_file);
    return -1;
  }
  if (f->search->registry == NULL)
    vdi_debug ("%s: fixed image with a parent UUID %s that is nowhere: "
               "taken as a base, as VirtualBox does",
               vdi_image_filename (img), vdi_uuid_format (parent_uuid, a));
  return 0;
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

    if (vdi_chain_check_parent (images, n, linkage) == -1)
      goto err;

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

  if (check_fixed_base (&f, images[n - 1]) == -1)
    goto err;

  finder_free (&f);
  return vdi_chain_new (images, n);

 err:
  finder_free (&f);
  for (i = 0; i < n; ++i)
    vdi_image_close (images[i]);
  return NULL;
}

/* Scan the folders where the children of parent may be: its own, the
 * folders just inside it (a machine's Snapshots folder), the user's.
 * These are the folders in which vdi_chain_open, starting from a
 * child, would look for parent.
 */
static int
scan_for_children (struct finder *f, const struct vdi_image *parent)
{
  CLEANUP_FREE char *copy = strdup (vdi_image_filename (parent));
  const char *dir;
  DIR *d;
  struct dirent *ent;
  size_t i;

  if (copy == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  dir = dirname (copy);
  if (scan_folder (f, dir, false) == -1)
    return -1;
  d = opendir (dir);
  if (d) {
    while ((ent = readdir (d)) != NULL) {
      CLEANUP_FREE char *sub = NULL;
      struct stat st;

      if (strcmp (ent->d_name, ".") == 0 || strcmp (ent->d_name, "..") == 0)
        continue;
      if (asprintf (&sub, "%s/%s", dir, ent->d_name) == -1) {
        vdi_error ("asprintf: %m");
        closedir (d);
        return -1;
      }
      if (stat (sub, &st) == 0 && S_ISDIR (st.st_mode) &&
          scan_folder (f, sub, false) == -1) {
        closedir (d);
        return -1;
      }
    }
    closedir (d);
  }
  for (i = 0; i < f->search->nr_dirs; ++i)
    if (scan_folder (f, f->search->dirs[i], true) == -1)
      return -1;
  return 0;
}

int
vdi_strings_append (char ***paths, size_t *n, const char *path)
{
  char **list = realloc (*paths, (*n + 1) * sizeof *list);

  if (list == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  *paths = list;
  list[*n] = strdup (path);
  if (list[*n] == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  ++*n;
  return 0;
}

void
vdi_strings_free (char **paths, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    free (paths[i]);
  free (paths);
}

/* The children of parent that the registry gives its medium. */
static int
registry_children (const struct vdi_image *parent,
                   const struct vbox_registry *reg,
                   char ***paths, size_t *n)
{
  const struct vbox_medium *medium, *child;
  size_t pos = 0;

  medium = vbox_registry_find_uuid (reg,
                                    &vdi_image_header (parent)->uuid_create);
  if (medium == NULL)
    return 0;
  while ((child = vbox_registry_next_child (reg, medium, &pos)) != NULL) {
    if (vdi_strings_append (paths, n, child->location) == -1) {
      vdi_strings_free (*paths, *n);
      *paths = NULL;
      *n = 0;
      return -1;
    }
  }
  return 0;
}

int
vdi_find_children (const struct vdi_image *parent,
                   const struct vdi_parent_search *search,
                   char ***paths, size_t *n)
{
  struct finder f = { .search = search };
  const struct vdi_uuid *uuid = &vdi_image_header (parent)->uuid_create;
  struct stat self;
  size_t i, j;

  *paths = NULL;
  *n = 0;
  if (search->registry)
    return registry_children (parent, search->registry, paths, n);
  if (fstat (vdi_image_fd (parent), &self) == -1) {
    vdi_error ("%s: fstat: %m", vdi_image_filename (parent));
    return -1;
  }
  if (scan_for_children (&f, parent) == -1)
    goto err;

  for (i = 0; i < f.nr_candidates; ++i) {
    const struct candidate *c = &f.candidates[i];

    if (c->broken || !vdi_uuid_equal (&c->linkage, uuid) ||
        (c->dev == self.st_dev && c->ino == self.st_ino))
      continue;
    /* The same file seen twice (a link) is one child. */
    for (j = 0; j < i; ++j)
      if (!f.candidates[j].broken &&
          vdi_uuid_equal (&f.candidates[j].linkage, uuid) &&
          f.candidates[j].dev == c->dev && f.candidates[j].ino == c->ino)
        break;
    if (j < i)
      continue;
    if (vdi_strings_append (paths, n, c->path) == -1)
      goto err;
  }
  finder_free (&f);
  return 0;

 err:
  finder_free (&f);
  vdi_strings_free (*paths, *n);
  *paths = NULL;
  *n = 0;
  return -1;
}
