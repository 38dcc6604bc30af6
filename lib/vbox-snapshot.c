/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Offline snapshots of a VirtualBox machine: take and restore, as
 * VirtualBox does them with the machine powered off
 * (vbox-lifecycle.md sections 3 and 4).
 *
 * Order of the changes, so that a crash leaves the settings file old
 * or new and the media it names as they were: first every new
 * differencing image is created (new files that nothing names yet),
 * then the settings file is replaced in one rename (vbox-settings.c),
 * then the files that the new settings no longer name are removed.
 * A crash before the rename leaves new files that nothing names; one
 * after it, old files that nothing names.  Neither changes a disk.
 * The images involved are locked (exclusively) from the start to the
 * end, so no server has them open meanwhile.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <inttypes.h>
#include <errno.h>
#include <time.h>
#include <unistd.h>

#include <libxml/tree.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vbox-snapshot.h"
#include "vdi-internal.h"

/* New differencing images get VirtualBox's block size. */
#define DIFF_BLOCK_SIZE (1024 * 1024)

/* One operation on a machine. */
struct op {
  struct vbox_registry *reg;
  const struct vbox_machine *m;
  struct vbox_settings s;
  struct vdi_image **locked;    /* images held until the end */
  size_t nr_locked;
  char **created;               /* new files, removed if it fails */
  size_t nr_created;
  char **obsolete;              /* files to remove once saved */
  size_t nr_obsolete;
  const char *adopt;            /* take --adopt: the layer, or NULL */
  struct vdi_header adopt_header;
  bool adopted;
};

static int
push_string (char ***list, size_t *n, const char *s)
{
  char **p = realloc (*list, (*n + 1) * sizeof *p);

  if (p == NULL || (p[*n] = strdup (s)) == NULL) {
    vdi_error ("out of memory");
    if (p)
      *list = p;
    return -1;
  }
  *list = p;
  ++*n;
  return 0;
}

static void
free_strings (char **list, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    free (list[i]);
  free (list);
}

static int
op_begin (struct op *op, const char *vbox)
{
  memset (op, 0, sizeof *op);
  op->reg = vbox_registry_new ();
  if (op->reg == NULL || vbox_registry_load (op->reg, vbox) == -1)
    return -1;
  op->m = vbox_registry_machine (op->reg);
  if (op->m == NULL) {
    vdi_error ("%s: holds no machine", vbox);
    return -1;
  }
  return vbox_settings_open (vbox, &op->s);
}

/* Finish: on failure remove what was created; on success what the
 * saved settings no longer name.
 */
static int
op_end (struct op *op, int r)
{
  size_t i;

  if (r == -1)
    for (i = 0; i < op->nr_created; ++i)
      unlink (op->created[i]);
  else
    for (i = 0; i < op->nr_obsolete; ++i)
      if (unlink (op->obsolete[i]) == -1 && errno != ENOENT)
        vdi_warning ("%s: not removed: %m", op->obsolete[i]);
  for (i = 0; i < op->nr_locked; ++i)
    vdi_image_close (op->locked[i]);
  free (op->locked);
  free_strings (op->created, op->nr_created);
  free_strings (op->obsolete, op->nr_obsolete);
  vbox_settings_close (&op->s);
  vbox_registry_free (op->reg);
  return r;
}

/* Open the image of medium with the exclusive lock, held to the end. */
static struct vdi_image *
lock_medium (struct op *op, const struct vbox_medium *medium)
{
  struct vdi_image **p, *img;

  p = realloc (op->locked, (op->nr_locked + 1) * sizeof *p);
  if (p == NULL) {
    vdi_error ("realloc: %m");
    return NULL;
  }
  op->locked = p;
  img = vdi_image_open (medium->location, VDI_OPEN_EXCLUSIVE);
  if (img)
    op->locked[op->nr_locked++] = img;
  return img;
}

/* A location as VirtualBox writes it: relative to the machine folder
 * when inside it, else absolute.
 */
static const char *
location_of (const struct op *op, const char *path)
{
  size_t len = strlen (op->m->folder);

  if (strncmp (path, op->m->folder, len) == 0 && path[len] == '/')
    return path + len + 1;
  return path;
}

/* Does a snapshot take give this attached medium a new differencing
 * image?  Every differencing image does, and a base of type Normal
 * (vbox-lifecycle.md section 1); Immutable, MultiAttach, Writethrough
 * and Shareable bases stay attached as they are.
 */
static bool
gets_diff (const struct vbox_medium *medium)
{
  return medium->parent != NULL || strcmp (medium->type, "Normal") == 0;
}

/* Give the attached medium of image (its UUID uuid) a new empty
 * differencing image in the snapshot folder, registered under it, and
 * attach that instead.  With --adopt, the layer takes that place.
 */
static int
new_diff (void *opaque, xmlNodePtr image, const struct vdi_uuid *uuid)
{
  struct op *op = opaque;
  const struct vbox_medium *medium = vbox_registry_find_uuid (op->reg, uuid);
  CLEANUP_FREE char *path = NULL;
  const struct vdi_header *ph;
  struct vdi_image *parent;
  struct vdi_header h;
  xmlNodePtr element, hd;
  char u[VDI_UUID_STRLEN];
  bool adopt;

  if (medium == NULL || !gets_diff (medium))
    return 0;
  if (strcasecmp (medium->format, "VDI") != 0) {
    vdi_error ("%s: medium %s has format %s: only VDI media are supported",
               op->s.filename, vdi_uuid_format (uuid, u), medium->format);
    return -1;
  }
  element = vbox_settings_find_hard_disk (&op->s, uuid);
  if (element == NULL) {
    vdi_error ("%s: medium %s is not registered in this file (but in %s): "
               "not supported", op->s.filename, vdi_uuid_format (uuid, u),
               medium->registry_file);
    return -1;
  }
  parent = lock_medium (op, medium);
  if (parent == NULL)
    return -1;
  ph = vdi_image_header (parent);

  /* --adopt: the layer made over this disk takes the new image's
   * place.
   */
  adopt = op->adopt && !op->adopted &&
    vdi_uuid_equal (&op->adopt_header.uuid_linkage, &ph->uuid_create);
  if (adopt) {
    h = op->adopt_header;
    if (h.disk_size != ph->disk_size) {
      vdi_error ("%s: its size %" PRIu64 " differs from the size %" PRIu64
                 " of %s", op->adopt, h.disk_size, ph->disk_size,
                 medium->location);
      return -1;
    }
  }
  else {
    vdi_header_init_dynamic (&h, VDI_TYPE_DIFF, ph->disk_size,
                             DIFF_BLOCK_SIZE);
    if (vdi_uuid_generate (&h.uuid_create) == -1 ||
        vdi_uuid_generate (&h.uuid_modify) == -1)
      return -1;
    h.uuid_linkage = ph->uuid_create;
    h.uuid_parent_modify = ph->uuid_modify;
  }

  if (asprintf (&path, "%s/{%s}.vdi", op->m->snapshot_folder,
                vdi_uuid_format (&h.uuid_create, u)) == -1) {
    vdi_error ("asprintf: %m");
    return -1;
  }
  if (adopt) {
    /* The layer's file appears under its new name, and goes from its
     * old one once the settings name it.
     */
    if (link (op->adopt, path) == -1) {
      vdi_error ("%s: linking it as %s: %m", op->adopt, path);
      return -1;
    }
    op->adopted = true;
    if (push_string (&op->created, &op->nr_created, path) == -1 ||
        push_string (&op->obsolete, &op->nr_obsolete, op->adopt) == -1)
      return -1;
  }
  else if (vdi_image_create (path, &h) == -1 ||
           push_string (&op->created, &op->nr_created, path) == -1)
    return -1;

  hd = vbox_settings_new_element (element, "HardDisk");
  if (hd == NULL ||
      vbox_settings_set_uuid (hd, "uuid", &h.uuid_create) == -1 ||
      vbox_settings_set (hd, "location", location_of (op, path)) == -1 ||
      vbox_settings_set (hd, "format", "VDI") == -1 ||
      (strcmp (medium->type, "Immutable") == 0 &&
       vbox_settings_set (hd, "autoReset", "true") == -1) ||
      vbox_settings_append (element, hd) == -1)
    return -1;
  return vbox_settings_set_uuid (image, "uuid", &h.uuid_create);
}

/* Read the header of the layer to adopt (locked meanwhile, so that no
 * server is writing it).
 */
static int
read_layer (struct op *op, const char *adopt)
{
  struct vdi_image *layer = vdi_image_open (adopt, VDI_OPEN_EXCLUSIVE);

  if (layer == NULL)
    return -1;
  op->adopt = adopt;
  op->adopt_header = *vdi_image_header (layer);
  vdi_image_close (layer);
  if (op->adopt_header.type != VDI_TYPE_DIFF) {
    vdi_error ("%s: is a %s image, not a differencing image", adopt,
               vdi_type_name (op->adopt_header.type));
    return -1;
  }
  return 0;
}

/* "2024-05-01T10:00:00Z", now. */
static void
time_stamp (char buf[32])
{
  time_t t = time (NULL);
  struct tm tm;

  strftime (buf, 32, "%Y-%m-%dT%H:%M:%SZ", gmtime_r (&t, &tm));
}

/* Append to snapshot a copy of each of the Machine's elements that a
 * snapshot keeps (Hardware, Platform, StorageControllers), indented
 * to its depth.
 */
static int
copy_state (const struct op *op, xmlNodePtr snapshot)
{
  static const char *const kept[] = {
    "Hardware", "Platform", "StorageControllers",
  };
  size_t i;

  for (i = 0; i < sizeof kept / sizeof kept[0]; ++i) {
    xmlNodePtr node = vbox_xml_first_child (op->s.machine, kept[i]);
    xmlNodePtr copy;

    if (node == NULL)
      continue;
    copy = vbox_settings_copy (node, (int) vbox_settings_depth (snapshot) + 2
                               - (int) vbox_settings_depth (node));
    if (copy == NULL || vbox_settings_append (snapshot, copy) == -1) {
      xmlFreeNode (copy);
      return -1;
    }
  }
  return 0;
}

/* Put a new Snapshot element where the next snapshot goes: the first
 * one before the Machine's Hardware, a later one last in the
 * Snapshots of the current snapshot.
 */
static int
place_snapshot (const struct op *op, xmlNodePtr snapshot)
{
  xmlNodePtr current, children, hw;

  if (!op->m->has_current_snapshot) {
    hw = vbox_xml_first_child (op->s.machine, "Hardware");
    return hw ? vbox_settings_insert_before (hw, snapshot)
      : vbox_settings_append (op->s.machine, snapshot);
  }
  current = vbox_settings_find_snapshot (&op->s, &op->m->current_snapshot);
  if (current == NULL) {
    vdi_error ("%s: the current snapshot is not in the file",
               op->s.filename);
    return -1;
  }
  children = vbox_xml_first_child (current, "Snapshots");
  if (children == NULL) {
    children = vbox_settings_new_element (current, "Snapshots");
    if (children == NULL || vbox_settings_append (current, children) == -1)
      return -1;
  }
  return vbox_settings_append (children, snapshot);
}

int
vbox_snapshot_take (const char *vbox, const char *name,
                    const char *description, const char *adopt)
{
  struct op op;
  struct vdi_uuid uuid;
  xmlNodePtr snapshot = NULL, desc;
  char stamp[32], u[VDI_UUID_STRLEN];
  int r = -1;

  if (op_begin (&op, vbox) == -1 || (adopt && read_layer (&op, adopt) == -1))
    goto out;
  time_stamp (stamp);
  if (vdi_uuid_generate (&uuid) == -1)
    goto out;
  snapshot = vbox_settings_new_element (op.s.machine, "Snapshot");
  if (snapshot == NULL ||
      vbox_settings_set_uuid (snapshot, "uuid", &uuid) == -1 ||
      vbox_settings_set (snapshot, "name", name) == -1 ||
      vbox_settings_set (snapshot, "timeStamp", stamp) == -1 ||
      place_snapshot (&op, snapshot) == -1)
    goto out;
  if (description) {
    desc = vbox_settings_new_element (snapshot, "Description");
    if (desc == NULL)
      goto out;
    xmlNodeAddContent (desc, BAD_CAST description);
    if (vbox_settings_append (snapshot, desc) == -1)
      goto out;
  }
  if (copy_state (&op, snapshot) == -1 ||
      vbox_settings_for_each_disk (op.s.machine, new_diff, &op) == -1)
    goto out;
  if (adopt && !op.adopted) {
    vdi_error ("%s: not a differencing image of a disk that %s has "
               "attached (its parent is %s)", adopt, vbox,
               vdi_uuid_format (&op.adopt_header.uuid_linkage, u));
    goto out;
  }
  if (vbox_settings_set_uuid (op.s.machine, "currentSnapshot", &uuid) == -1 ||
      vbox_settings_set (op.s.machine, "currentStateModified", "false") == -1)
    goto out;
  r = vbox_settings_save (&op.s);

 out:
  return op_end (&op, r);
}

/* Replace the Machine's element name with a copy of the snapshot's,
 * indented to the Machine's depth.
 */
static int
restore_element (const struct op *op, xmlNodePtr snapshot, const char *name)
{
  xmlNodePtr from = vbox_xml_first_child (snapshot, name);
  xmlNodePtr old = vbox_xml_first_child (op->s.machine, name);
  xmlNodePtr copy;

  if (from == NULL)
    return 0;
  copy = vbox_settings_copy (from, (int) vbox_settings_depth (old ? old : from)
                             - (int) vbox_settings_depth (from));
  if (copy == NULL)
    return -1;
  if (old) {
    xmlReplaceNode (old, copy);
    xmlFreeNode (old);
    return 0;
  }
  return vbox_settings_append (op->s.machine, copy);
}

/* The current state's differencing images that a restore discards:
 * each attached diff that has no children (vbox-lifecycle.md section
 * 4, step 6) loses its registry entry now and its file once saved.
 */
static int
discard_diff (void *opaque, xmlNodePtr image, const struct vdi_uuid *uuid)
{
  struct op *op = opaque;
  const struct vbox_medium *medium = vbox_registry_find_uuid (op->reg, uuid);
  xmlNodePtr element;

  if (medium == NULL || medium->parent == NULL ||
      vbox_registry_nr_children (op->reg, medium) > 0)
    return 0;
  element = vbox_settings_find_hard_disk (&op->s, uuid);
  if (element == NULL || lock_medium (op, medium) == NULL ||
      push_string (&op->obsolete, &op->nr_obsolete, medium->location) == -1)
    return -1;
  vbox_settings_remove (element);
  return 0;
}

int
vbox_snapshot_restore (const char *vbox, const char *which)
{
  static const char *const restored[] = {
    "Hardware", "Platform", "StorageControllers",
  };
  const struct vbox_snapshot *snap;
  xmlNodePtr element;
  CLEANUP_XMLFREE xmlChar *stamp = NULL;
  struct op op;
  size_t i;
  int r = -1;

  if (op_begin (&op, vbox) == -1)
    goto out;
  snap = vbox_machine_find_snapshot (op.m, which);
  if (snap == NULL)
    goto out;
  element = vbox_settings_find_snapshot (&op.s, &snap->uuid);
  if (element == NULL) {
    vdi_error ("%s: snapshot %s is not in the file", vbox, which);
    goto out;
  }
  if (vbox_settings_for_each_disk (op.s.machine, discard_diff, &op) == -1)
    goto out;
  for (i = 0; i < sizeof restored / sizeof restored[0]; ++i)
    if (restore_element (&op, element, restored[i]) == -1)
      goto out;
  if (vbox_settings_for_each_disk (op.s.machine, new_diff, &op) == -1 ||
      vbox_settings_set_uuid (op.s.machine, "currentSnapshot",
                              &snap->uuid) == -1 ||
      vbox_settings_set (op.s.machine, "currentStateModified", "false") == -1)
    goto out;
  stamp = vbox_xml_get_attr (element, "timeStamp");
  if (stamp && vbox_settings_set (op.s.machine, "lastStateChange",
                                  (const char *) stamp) == -1)
    goto out;
  r = vbox_settings_save (&op.s);

 out:
  return op_end (&op, r);
}
