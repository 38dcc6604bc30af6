/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The machine of a .vbox file: its attributes, the hard disks
 * attached in its current state and at each snapshot, and the
 * snapshot tree, with the search for a snapshot by name or UUID.
 *
 * Design notes.
 *
 * Walking.  Snapshot nesting is bounded as VirtualBox bounds it, so
 * the recursive walker has a fixed maximum depth.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <libxml/tree.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vdi-internal.h"

/* VirtualBox's limit on snapshot nesting (SETTINGS_SNAPSHOT_DEPTH_MAX). */
#define VBOX_MAX_SNAPSHOT_DEPTH 250

/* Attachments. */

static int
push_uuid (struct vdi_uuid **array, size_t *n, const struct vdi_uuid *uuid)
{
  /* The capacity is the next power of 2. */
  if (*n == 0 || (*n & (*n - 1)) == 0) {
    struct vdi_uuid *p = realloc (*array, (*n ? 2 * *n : 1) * sizeof *p);

    if (p == NULL) {
      vdi_error ("realloc: %m");
      return -1;
    }
    *array = p;
  }
  (*array)[(*n)++] = *uuid;
  return 0;
}

/* StorageControllers/StorageController/AttachedDevice[type=HardDisk]/
 * Image@uuid.
 */
static int
load_controllers (const struct vbox_load *ld, const xmlNode *controllers,
                  struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr ctrl, dev, image;
  struct vdi_uuid uuid;

  for (ctrl = controllers->children; ctrl; ctrl = ctrl->next) {
    if (!vbox_xml_is_element (ctrl, "StorageController"))
      continue;
    for (dev = ctrl->children; dev; dev = dev->next) {
      CLEANUP_XMLFREE xmlChar *type = NULL;

      if (!vbox_xml_is_element (dev, "AttachedDevice"))
        continue;
      type = vbox_xml_get_attr (dev, "type");
      if (type == NULL || strcasecmp ((const char *) type, "HardDisk") != 0)
        continue;
      image = vbox_xml_first_child (dev, "Image");
      if (image == NULL)
        continue;
      if (vbox_xml_get_uuid_attr (ld->filename, image, "uuid", true,
                                  &uuid) == -1 ||
          push_uuid (disks, nr_disks, &uuid) == -1)
        return -1;
    }
  }
  return 0;
}

/* Before settings 1.7: HardDiskAttachments/HardDiskAttachment@hardDisk. */
static int
load_legacy_attachments (const struct vbox_load *ld,
                         const xmlNode *attachments,
                         struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr c;
  struct vdi_uuid uuid;

  for (c = attachments->children; c; c = c->next) {
    if (!vbox_xml_is_element (c, "HardDiskAttachment"))
      continue;
    if (vbox_xml_get_uuid_attr (ld->filename, c, "hardDisk", true,
                                &uuid) == -1 ||
        push_uuid (disks, nr_disks, &uuid) == -1)
      return -1;
  }
  return 0;
}

/* The hard disks attached to a Machine or a Snapshot, whose
 * controllers sit directly under it or in its Hardware element.
 */
static int
load_attachments (const struct vbox_load *ld, const xmlNode *owner,
                  struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr c, h;

  for (c = owner->children; c; c = c->next) {
    if (vbox_xml_is_element (c, "StorageControllers")) {
      if (load_controllers (ld, c, disks, nr_disks) == -1)
        return -1;
    }
    else if (vbox_xml_is_element (c, "HardDiskAttachments")) {
      if (load_legacy_attachments (ld, c, disks, nr_disks) == -1)
        return -1;
    }
    else if (vbox_xml_is_element (c, "Hardware")) {
      for (h = c->children; h; h = h->next) {
        if (vbox_xml_is_element (h, "StorageControllers")) {
          if (load_controllers (ld, h, disks, nr_disks) == -1)
            return -1;
        }
        else if (vbox_xml_is_element (h, "HardDiskAttachments")) {
          if (load_legacy_attachments (ld, h, disks, nr_disks) == -1)
            return -1;
        }
      }
    }
  }
  return 0;
}

/* Snapshots. */

struct snapshot_list {
  struct vbox_snapshot *snapshots;
  size_t *parents;              /* index of the parent, or SIZE_MAX */
  size_t n, alloc;
};

/* A saved state, as VirtualBox tells it (Snapshot::getOnline,
 * Machine's state file path): a stateFile attribute that is not empty.
 */
static bool
has_state_file (const xmlNode *node)
{
  CLEANUP_XMLFREE xmlChar *state_file = vbox_xml_get_attr (node, "stateFile");

  return state_file != NULL && state_file[0] != '\0';
}

static int
load_snapshot (const struct vbox_load *ld, const xmlNode *node,
               size_t parent, unsigned depth, struct snapshot_list *list)
{
  struct vbox_snapshot *s;
  xmlNodePtr c, child;
  size_t idx;

  if (depth > VBOX_MAX_SNAPSHOT_DEPTH) {
    vdi_error ("%s: line %ld: snapshots are nested more than %d deep "
               "(VirtualBox's limit)",
               ld->filename, xmlGetLineNo (node), VBOX_MAX_SNAPSHOT_DEPTH);
    return -1;
  }

  if (list->n == list->alloc) {
    size_t n = list->alloc ? 2 * list->alloc : 8;
    struct vbox_snapshot *p = realloc (list->snapshots, n * sizeof *p);
    size_t *q;

    if (p == NULL) {
      vdi_error ("realloc: %m");
      return -1;
    }
    list->snapshots = p;
    q = realloc (list->parents, n * sizeof *q);
    if (q == NULL) {
      vdi_error ("realloc: %m");
      return -1;
    }
    list->parents = q;
    list->alloc = n;
  }
  idx = list->n++;
  s = &list->snapshots[idx];
  memset (s, 0, sizeof *s);
  list->parents[idx] = parent;

  if (vbox_xml_get_uuid_attr (ld->filename, node, "uuid", true,
                              &s->uuid) == -1)
    return -1;
  s->name = vbox_xml_get_string_attr (ld->filename, node, "name");
  if (s->name == NULL)
    return -1;
  s->online = has_state_file (node);
  /* The list may move while the children are read: no s after this. */
  if (load_attachments (ld, node, &s->disks, &s->nr_disks) == -1)
    return -1;

  for (c = node->children; c; c = c->next) {
    if (!vbox_xml_is_element (c, "Snapshots"))
      continue;
    for (child = c->children; child; child = child->next) {
      if (vbox_xml_is_element (child, "Snapshot") &&
          load_snapshot (ld, child, idx, depth + 1, list) == -1)
        return -1;
    }
  }
  return 0;
}

/* The machine. */

static int
compare_snapshot_uuids (const void *a, const void *b)
{
  const struct vbox_snapshot *const *x = a, *const *y = b;

  return memcmp ((*x)->uuid.bytes, (*y)->uuid.bytes, sizeof (*x)->uuid.bytes);
}

void
vbox_machine_free (struct vbox_machine *m)
{
  size_t i;

  if (m == NULL)
    return;
  free (m->name);
  free (m->filename);
  free (m->folder);
  free (m->snapshot_folder);
  free (m->disks);
  for (i = 0; i < m->nr_snapshots; ++i) {
    free (m->snapshots[i].name);
    free (m->snapshots[i].disks);
  }
  free (m->snapshots);
  free (m);
}

int
vbox_machine_load_attributes (struct vbox_load *ld, const xmlNode *node)
{
  CLEANUP_XMLFREE xmlChar *snapshot_folder = NULL;
  struct vbox_machine *m;
  int r;

  m = calloc (1, sizeof *m);
  if (m == NULL) {
    vdi_error ("calloc: %m");
    return -1;
  }
  ld->machine = m;

  if (vbox_xml_get_uuid_attr (ld->filename, node, "uuid", true,
                              &m->uuid) == -1)
    return -1;
  m->name = vbox_xml_get_string_attr (ld->filename, node, "name");
  if (m->name == NULL)
    return -1;
  m->filename = strdup (ld->path);
  m->folder = strdup (ld->folder);
  if (m->filename == NULL || m->folder == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  snapshot_folder = vbox_xml_get_attr (node, "snapshotFolder");
  m->snapshot_folder =
    vbox_path_resolve_snapshot_folder (ld->folder,
                                       (const char *) snapshot_folder);
  if (m->snapshot_folder == NULL)
    return -1;
  r = vbox_xml_get_uuid_attr (ld->filename, node, "currentSnapshot", false,
                              &m->current_snapshot);
  if (r == -1)
    return -1;
  m->has_current_snapshot = r == 0;
  m->saved = has_state_file (node);
  return 0;
}

/* Read the snapshot tree under a Machine element into m. */
static int
load_snapshots (const struct vbox_load *ld, const xmlNode *node,
                struct vbox_machine *m)
{
  struct snapshot_list list = { 0 };
  xmlNodePtr c;
  size_t i;

  for (c = node->children; c; c = c->next) {
    if (vbox_xml_is_element (c, "Snapshot") &&
        load_snapshot (ld, c, SIZE_MAX, 1, &list) == -1)
      goto err;
  }

  /* Hand the list over, then link the parents. */
  m->snapshots = list.snapshots;
  m->nr_snapshots = list.n;
  for (i = 0; i < m->nr_snapshots; ++i)
    m->snapshots[i].parent = list.parents[i] == SIZE_MAX
      ? NULL : &m->snapshots[list.parents[i]];
  free (list.parents);
  return 0;

 err:
  /* The partial list: free what it owns. */
  for (i = 0; i < list.n; ++i) {
    free (list.snapshots[i].name);
    free (list.snapshots[i].disks);
  }
  free (list.snapshots);
  free (list.parents);
  return -1;
}

/* No two snapshots of m may have the same UUID. */
static int
check_snapshot_uuids (const char *filename, const struct vbox_machine *m)
{
  CLEANUP_FREE const struct vbox_snapshot **sorted = NULL;
  char ubuf[VDI_UUID_STRLEN];
  size_t i;

  if (m->nr_snapshots <= 1)
    return 0;
  sorted = malloc (m->nr_snapshots * sizeof *sorted);
  if (sorted == NULL) {
    vdi_error ("malloc: %m");
    return -1;
  }
  for (i = 0; i < m->nr_snapshots; ++i)
    sorted[i] = &m->snapshots[i];
  qsort (sorted, m->nr_snapshots, sizeof *sorted, compare_snapshot_uuids);
  for (i = 1; i < m->nr_snapshots; ++i) {
    if (vdi_uuid_equal (&sorted[i - 1]->uuid, &sorted[i]->uuid)) {
      vdi_error ("%s: duplicate snapshot UUID {%s}",
                 filename, vdi_uuid_format (&sorted[i]->uuid, ubuf));
      return -1;
    }
  }
  return 0;
}

/* The current snapshot of m, if it has one, must be one of its
 * snapshots.
 */
static int
check_current_snapshot (const char *filename, const struct vbox_machine *m)
{
  char ubuf[VDI_UUID_STRLEN], nbuf[VBOX_MSG_TEXT_MAX];
  size_t i;

  if (!m->has_current_snapshot)
    return 0;
  for (i = 0; i < m->nr_snapshots; ++i)
    if (vdi_uuid_equal (&m->snapshots[i].uuid, &m->current_snapshot))
      return 0;
  vdi_error ("%s: the current snapshot {%s} of machine \"%s\" is not "
             "one of its snapshots",
             filename, vdi_uuid_format (&m->current_snapshot, ubuf),
             vbox_xml_clean_text (m->name, nbuf, sizeof nbuf));
  return -1;
}

int
vbox_machine_load_state (struct vbox_load *ld, const xmlNode *node)
{
  struct vbox_machine *m = ld->machine;

  if (load_attachments (ld, node, &m->disks, &m->nr_disks) == -1 ||
      load_snapshots (ld, node, m) == -1 ||
      check_snapshot_uuids (ld->filename, m) == -1 ||
      check_current_snapshot (ld->filename, m) == -1)
    return -1;
  return 0;
}

/* Lookups. */

const struct vbox_machine *
vbox_registry_machine (const struct vbox_registry *reg)
{
  return reg->machine;
}

const struct vbox_snapshot *
vbox_machine_current_snapshot (const struct vbox_machine *machine)
{
  size_t i;

  if (!machine->has_current_snapshot)
    return NULL;
  /* vbox_machine_load_state checked that it is one of them. */
  for (i = 0; i < machine->nr_snapshots; ++i)
    if (vdi_uuid_equal (&machine->snapshots[i].uuid,
                        &machine->current_snapshot))
      return &machine->snapshots[i];
  return NULL;
}

const struct vbox_snapshot *
vbox_machine_find_snapshot (const struct vbox_machine *machine,
                            const char *name_or_uuid)
{
  const struct vbox_snapshot *found = NULL;
  char list[512], ubuf[VDI_UUID_STRLEN], buf[VBOX_MSG_TEXT_MAX];
  char nbuf[VBOX_MSG_TEXT_MAX];
  struct vdi_uuid uuid;
  size_t i, n = 0, len = 0;

  if (vdi_uuid_parse (name_or_uuid, &uuid) == 0) {
    for (i = 0; i < machine->nr_snapshots; ++i)
      if (vdi_uuid_equal (&machine->snapshots[i].uuid, &uuid))
        return &machine->snapshots[i];
  }

  list[0] = '\0';
  for (i = 0; i < machine->nr_snapshots; ++i) {
    if (strcmp (machine->snapshots[i].name, name_or_uuid) != 0)
      continue;
    if (n++ == 0)
      found = &machine->snapshots[i];
    if (len < sizeof list) {
      int w = snprintf (list + len, sizeof list - len, "%s{%s}",
                        n > 1 ? ", " : "",
                        vdi_uuid_format (&machine->snapshots[i].uuid, ubuf));
      len += w > 0 ? (size_t) w : 0;
    }
  }
  if (n == 1)
    return found;
  if (n > 1) {
    vdi_error ("%s: %zu snapshots of machine \"%s\" are named \"%s\": "
               "%s%s; name one by its UUID",
               machine->filename, n,
               vbox_xml_clean_text (machine->name, nbuf, sizeof nbuf),
               vbox_xml_clean_text (name_or_uuid, buf, sizeof buf), list,
               len >= sizeof list ? "..." : "");
    return NULL;
  }
  if (machine->nr_snapshots == 0) {
    vdi_error ("%s: machine \"%s\" has no snapshots, so none is named or "
               "has the UUID \"%s\"",
               machine->filename,
               vbox_xml_clean_text (machine->name, nbuf, sizeof nbuf),
               vbox_xml_clean_text (name_or_uuid, buf, sizeof buf));
    return NULL;
  }
  /* Say what there is: names and UUIDs, as much as fits in list. */
  len = 0;
  for (i = 0; i < machine->nr_snapshots && len < sizeof list; ++i) {
    char sbuf[VBOX_MSG_TEXT_MAX];
    int w = snprintf (list + len, sizeof list - len, "%s\"%s\" {%s}",
                      i > 0 ? ", " : "",
                      vbox_xml_clean_text (machine->snapshots[i].name,
                                           sbuf, sizeof sbuf),
                      vdi_uuid_format (&machine->snapshots[i].uuid, ubuf));
    len += w > 0 ? (size_t) w : 0;
  }
  vdi_error ("%s: machine \"%s\" has no snapshot named or with UUID \"%s\"; "
             "its %zu snapshot%s: %s%s",
             machine->filename,
             vbox_xml_clean_text (machine->name, nbuf, sizeof nbuf),
             vbox_xml_clean_text (name_or_uuid, buf, sizeof buf),
             machine->nr_snapshots, machine->nr_snapshots == 1 ? "" : "s",
             list, len >= sizeof list ? "..." : "");
  return NULL;
}
