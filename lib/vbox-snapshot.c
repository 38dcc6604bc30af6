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
#include <sys/stat.h>

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

/* op_begin, and find the snapshot which names, in the registry and
 * in the file.
 */
static int
op_begin_snapshot (struct op *op, const char *vbox, const char *which,
                   const struct vbox_snapshot **snap, xmlNodePtr *element)
{
  if (op_begin (op, vbox) == -1)
    return -1;
  *snap = vbox_machine_find_snapshot (op->m, which);
  if (*snap == NULL)
    return -1;
  *element = vbox_settings_find_snapshot (&op->s, &(*snap)->uuid);
  if (*element == NULL) {
    vdi_error ("%s: snapshot %s is not in the file", vbox, which);
    return -1;
  }
  return 0;
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
  vdi_strings_free (op->created, op->nr_created);
  vdi_strings_free (op->obsolete, op->nr_obsolete);
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

/* Only VDI media are changed. */
static int
check_vdi (const struct op *op, const struct vbox_medium *medium)
{
  char u[VDI_UUID_STRLEN];

  if (strcasecmp (medium->format, "VDI") == 0)
    return 0;
  vdi_error ("%s: medium %s has format %s: only VDI media are supported",
             op->s.filename, vdi_uuid_format (&medium->uuid, u),
             medium->format);
  return -1;
}

/* The machine's snapshot folder, made if it is not there yet, as
 * VirtualBox makes it with the first differencing image.
 */
static int
make_snapshot_folder (const struct op *op)
{
  if (mkdir (op->m->snapshot_folder, 0777) == -1 && errno != EEXIST) {
    vdi_error ("%s: mkdir: %m", op->m->snapshot_folder);
    return -1;
  }
  return 0;
}

/* Give the layer to adopt its name in the snapshot folder.  A run cut
 * short may have done so already: the same file under that name is
 * fine.
 */
static int
link_layer (const char *layer, const char *path)
{
  struct stat a, b;

  if (link (layer, path) == 0)
    return 0;
  if (errno == EEXIST && stat (layer, &a) == 0 && stat (path, &b) == 0 &&
      a.st_dev == b.st_dev && a.st_ino == b.st_ino)
    return 0;
  vdi_error ("%s: linking it as %s: %m", layer, path);
  return -1;
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
  if (check_vdi (op, medium) == -1)
    return -1;
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
    if (make_snapshot_folder (op) == -1 || link_layer (op->adopt, path) == -1)
      return -1;
    op->adopted = true;
    if (vdi_strings_append (&op->created, &op->nr_created, path) == -1 ||
        vdi_strings_append (&op->obsolete, &op->nr_obsolete, op->adopt) == -1)
      return -1;
  }
  else if (make_snapshot_folder (op) == -1 ||
           vdi_image_create (path, &h) == -1 ||
           vdi_strings_append (&op->created, &op->nr_created, path) == -1)
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
  if (check_vdi (op, medium) == -1)
    return -1;
  element = vbox_settings_find_hard_disk (&op->s, uuid);
  if (element == NULL || lock_medium (op, medium) == NULL ||
      vdi_strings_append (&op->obsolete, &op->nr_obsolete,
                          medium->location) == -1)
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

  if (op_begin_snapshot (&op, vbox, which, &snap, &element) == -1)
    goto out;
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

/* What deleting a snapshot does to one of its disks (vbox-lifecycle.md
 * section 5.2).
 */
struct disk_plan {
  enum { PLAN_KEEP, PLAN_REMOVE, PLAN_INTO_PARENT, PLAN_INTO_CHILD } action;
  const struct vbox_medium *medium;  /* the snapshot's medium */
  const struct vbox_medium *child;   /* its one child, for a merge */
};

struct delete_plan {
  struct op *op;
  const char *which;
  struct disk_plan *disks;
  size_t nr_disks;
};

static off_t
file_size (const char *path)
{
  struct stat st;

  return stat (path, &st) == 0 ? st.st_size : -1;
}

/* Which way to merge medium with its only child: into the base when
 * medium is one, else into the larger file, as VirtualBox chooses
 * between two dynamic images; but the way a merge that was cut short
 * went, if there is one.
 */
static int
merge_action (const struct vbox_medium *medium,
              const struct vbox_medium *child)
{
  enum vdi_merge_direction pending;

  switch (vdi_merge_pending (child->location, &pending)) {
  case -1: return -1;
  case 1:  return pending == VDI_MERGE_INTO_PARENT
      ? PLAN_INTO_PARENT : PLAN_INTO_CHILD;
  }
  if (medium->parent == NULL ||
      file_size (medium->location) >= file_size (child->location))
    return PLAN_INTO_PARENT;
  return PLAN_INTO_CHILD;
}

/* Plan the disk of the snapshot whose Image element names uuid. */
static int
plan_disk (void *opaque, xmlNodePtr image, const struct vdi_uuid *uuid)
{
  struct delete_plan *p = opaque;
  const struct vbox_medium *medium = vbox_registry_find_uuid (p->op->reg,
                                                              uuid);
  struct disk_plan d = { .action = PLAN_KEEP, .medium = medium };
  struct disk_plan *disks;
  size_t nr_children, pos = 0;
  char u[VDI_UUID_STRLEN];
  int action;

  if (medium == NULL || !gets_diff (medium))
    return 0;
  if (check_vdi (p->op, medium) == -1)
    return -1;
  nr_children = vbox_registry_nr_children (p->op->reg, medium);
  if (nr_children > 1) {
    vdi_error ("%s: medium %s (%s) of snapshot \"%s\" has %zu differencing "
               "children, so the snapshot cannot be deleted (VirtualBox "
               "refuses it too)", p->op->s.filename,
               vdi_uuid_format (uuid, u), medium->location, p->which,
               nr_children);
    return -1;
  }
  if (nr_children == 0)
    d.action = medium->parent ? PLAN_REMOVE : PLAN_KEEP;
  else {
    d.child = vbox_registry_next_child (p->op->reg, medium, &pos);
    action = merge_action (medium, d.child);
    if (action == -1)
      return -1;
    d.action = action;
  }
  if (d.action == PLAN_REMOVE && lock_medium (p->op, medium) == NULL)
    return -1;
  disks = realloc (p->disks, (p->nr_disks + 1) * sizeof *disks);
  if (disks == NULL) {
    vdi_error ("realloc: %m");
    return -1;
  }
  p->disks = disks;
  p->disks[p->nr_disks++] = d;
  return 0;
}

/* Make every Image element of the machine that names from name to. */
static void
rename_attachments (xmlNodePtr node, const struct vdi_uuid *from,
                    const struct vdi_uuid *to)
{
  xmlNodePtr c;

  for (c = node->children; c; c = c->next) {
    if (c->type != XML_ELEMENT_NODE)
      continue;
    if (vbox_xml_is_element (c, "Image")) {
      CLEANUP_XMLFREE xmlChar *text = vbox_xml_get_attr (c, "uuid");
      struct vdi_uuid u;

      if (text && vdi_uuid_parse ((const char *) text, &u) == 0 &&
          vdi_uuid_equal (&u, from))
        vbox_settings_set_uuid (c, "uuid", to);
    }
    else
      rename_attachments (c, from, to);
  }
}

/* Move the HardDisk children of from under to, then remove from. */
static int
renest_children (xmlNodePtr from, xmlNodePtr to)
{
  xmlNodePtr c, next, copy;

  for (c = from->children; c; c = next) {
    next = c->next;
    if (!vbox_xml_is_element (c, "HardDisk"))
      continue;
    copy = vbox_settings_copy (c, (int) vbox_settings_depth (to) + 2
                               - (int) vbox_settings_depth (c));
    if (copy == NULL || vbox_settings_append (to, copy) == -1) {
      xmlFreeNode (copy);
      return -1;
    }
  }
  vbox_settings_remove (from);
  return 0;
}

/* The registry after the merge of one disk. */
static int
apply_disk (struct op *op, const struct disk_plan *d)
{
  xmlNodePtr element = vbox_settings_find_hard_disk (&op->s,
                                                     &d->medium->uuid);
  xmlNodePtr child = d->child
    ? vbox_settings_find_hard_disk (&op->s, &d->child->uuid) : NULL;
  xmlNodePtr copy;

  if (element == NULL || (d->child && child == NULL)) {
    vdi_error ("%s: a medium of the snapshot is not registered in it",
               op->s.filename);
    return -1;
  }
  switch (d->action) {
  case PLAN_KEEP:
    return 0;
  case PLAN_REMOVE:
    vbox_settings_remove (element);
    return vdi_strings_append (&op->obsolete, &op->nr_obsolete,
                        d->medium->location);
  case PLAN_INTO_PARENT:
    /* The child is gone: its children and its attachment are the
     * medium's.
     */
    rename_attachments (op->s.machine, &d->child->uuid, &d->medium->uuid);
    return renest_children (child, element);
  case PLAN_INTO_CHILD:
    /* The child takes the medium's place; at the top it is a base. */
    copy = vbox_settings_copy (child, (int) vbox_settings_depth (element)
                               - (int) vbox_settings_depth (child));
    if (copy == NULL)
      return -1;
    if (d->medium->parent == NULL) {
      xmlUnsetProp (copy, BAD_CAST "autoReset");
      if (vbox_settings_set (copy, "type", "Normal") == -1) {
        xmlFreeNode (copy);
        return -1;
      }
    }
    xmlReplaceNode (element, copy);
    xmlFreeNode (element);
    return 0;
  }
  return 0;
}

/* The snapshot's child snapshot (at most one) takes its place in the
 * tree; then the snapshot goes.  Returns the UUID of its parent
 * snapshot in parent (false if it had none).
 */
static int
unlink_snapshot (struct op *op, xmlNodePtr snapshot, bool *has_parent,
                 struct vdi_uuid *parent)
{
  xmlNodePtr list = vbox_xml_first_child (snapshot, "Snapshots");
  xmlNodePtr child = list ? vbox_xml_first_child (list, "Snapshot") : NULL;
  xmlNodePtr container = snapshot->parent, copy = NULL, c;

  *has_parent = container != op->s.machine;
  if (*has_parent) {
    CLEANUP_XMLFREE xmlChar *text =
      vbox_xml_get_attr (container->parent, "uuid");

    if (text == NULL || vdi_uuid_parse ((const char *) text, parent) == -1)
      *has_parent = false;
  }
  if (child) {
    copy = vbox_settings_copy (child, (int) vbox_settings_depth (snapshot)
                               - (int) vbox_settings_depth (child));
    if (copy == NULL ||
        (*has_parent ? vbox_settings_append (container, copy)
         : vbox_settings_insert_before (snapshot, copy)) == -1) {
      xmlFreeNode (copy);
      return -1;
    }
  }
  vbox_settings_remove (snapshot);
  /* A Snapshots element left empty goes too. */
  if (*has_parent) {
    for (c = container->children; c; c = c->next)
      if (c->type == XML_ELEMENT_NODE)
        return 0;
    vbox_settings_remove (container);
  }
  return 0;
}

/* How many child snapshots a Snapshot element has. */
static size_t
nr_child_snapshots (const xmlNode *snapshot)
{
  xmlNodePtr list = vbox_xml_first_child (snapshot, "Snapshots"), c;
  size_t n = 0;

  for (c = list ? list->children : NULL; c; c = c->next)
    n += vbox_xml_is_element (c, "Snapshot");
  return n;
}

/* Merge the disks as planned, each stopping before it removes a file. */
static int
merge_disks (const struct delete_plan *p)
{
  const struct vdi_parent_search search = { .registry = p->op->reg };
  struct vdi_merge merge = { .search = &search, .keep_removed = true };
  size_t i;

  for (i = 0; i < p->nr_disks; ++i) {
    const struct disk_plan *d = &p->disks[i];

    if (d->action != PLAN_INTO_PARENT && d->action != PLAN_INTO_CHILD)
      continue;
    merge.direction = d->action == PLAN_INTO_PARENT
      ? VDI_MERGE_INTO_PARENT : VDI_MERGE_INTO_CHILD;
    if (vdi_merge (d->child->location, &merge) == -1)
      return -1;
  }
  return 0;
}

int
vbox_snapshot_delete (const char *vbox, const char *which)
{
  struct delete_plan plan = { .which = which };
  const struct vbox_snapshot *snap;
  xmlNodePtr element;
  struct vdi_uuid parent;
  bool current, has_parent;
  struct op op;
  size_t i, n;
  int r = -1;

  plan.op = &op;
  if (op_begin_snapshot (&op, vbox, which, &snap, &element) == -1)
    goto out;
  current = op.m->has_current_snapshot &&
    vdi_uuid_equal (&snap->uuid, &op.m->current_snapshot);
  n = nr_child_snapshots (element);
  if (n > 1 || (current && n > 0)) {
    vdi_error ("%s: snapshot \"%s\" has %zu child snapshot%s: VirtualBox "
               "deletes only a snapshot with at most one, and the current "
               "snapshot only without any", vbox, snap->name, n,
               n == 1 ? "" : "s");
    goto out;
  }

  /* Plan, merge (the files no settings file names go last), rewrite
   * the settings, then remove the files merged away.
   */
  if (vbox_settings_for_each_disk (element, plan_disk, &plan) == -1 ||
      merge_disks (&plan) == -1)
    goto out;
  for (i = 0; i < plan.nr_disks; ++i)
    if (apply_disk (&op, &plan.disks[i]) == -1)
      goto out;
  if (unlink_snapshot (&op, element, &has_parent, &parent) == -1)
    goto out;
  if (current) {
    if (has_parent) {
      if (vbox_settings_set_uuid (op.s.machine, "currentSnapshot",
                                  &parent) == -1)
        goto out;
    }
    else
      xmlUnsetProp (op.s.machine, BAD_CAST "currentSnapshot");
    xmlUnsetProp (op.s.machine, BAD_CAST "currentStateModified");
  }
  r = vbox_settings_save (&op.s);
  for (i = 0; r == 0 && i < plan.nr_disks; ++i)
    if (plan.disks[i].child &&
        vdi_merge_remove (plan.disks[i].child->location) == -1)
      r = -1;

 out:
  free (plan.disks);
  return op_end (&op, r);
}
