/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* The media registry: the HardDisk trees of a MediaRegistry element,
 * read into media with their UUID, location, format, type and parent,
 * and the lookups by UUID and by location.
 *
 * Design notes.
 *
 * Walking.  HardDisk nesting (the parent/differencing relation) is
 * bounded as VirtualBox bounds it, so the recursive walker has a
 * fixed maximum depth.
 *
 * The registry.  Media are kept in an array of pointers (a medium's
 * address never changes, so parent pointers stay valid) with an open
 * addressing hash table on the UUID.  A load that fails leaves the
 * registry as it was: media are only ever appended, existing ones are
 * never modified, so undoing a load is dropping what it appended.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libxml/tree.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vdi-internal.h"

/* HardDisk types in VirtualBox's spelling. */
static const char *const medium_types[] = {
  "Normal", "Immutable", "Writethrough", "Shareable", "Readonly",
  "MultiAttach", NULL
};

/* The media table. */

static size_t
uuid_hash (const struct vdi_uuid *uuid)
{
  uint64_t h = UINT64_C (14695981039346656037);
  size_t i;

  for (i = 0; i < sizeof uuid->bytes; ++i) {
    h ^= uuid->bytes[i];
    h *= UINT64_C (1099511628211);
  }
  return h ^ (h >> 32);
}

/* The slot holding uuid, or the empty slot where it would go. */
static struct vbox_medium **
hash_slot (const struct vbox_registry *reg, const struct vdi_uuid *uuid)
{
  size_t mask = reg->nr_slots - 1, i = uuid_hash (uuid) & mask;

  while (reg->slots[i] && !vdi_uuid_equal (&reg->slots[i]->uuid, uuid))
    i = (i + 1) & mask;
  return &reg->slots[i];
}

static void
hash_fill (struct vbox_registry *reg)
{
  size_t i;

  memset (reg->slots, 0, reg->nr_slots * sizeof *reg->slots);
  for (i = 0; i < reg->nr_media; ++i)
    *hash_slot (reg, &reg->media[i]->uuid) = reg->media[i];
}

static struct vbox_medium *
lookup (const struct vbox_registry *reg, const struct vdi_uuid *uuid)
{
  if (reg->nr_slots == 0)
    return NULL;
  return *hash_slot (reg, uuid);
}

void
vbox_medium_free (struct vbox_medium *m)
{
  if (m == NULL)
    return;
  free (m->location);
  free (m->location_as_written);
  free (m->format);
  free (m);
}

/* Append m (not yet in the table) to the registry. */
static int
registry_add (struct vbox_registry *reg, struct vbox_medium *m)
{
  if (reg->nr_media == reg->alloc_media) {
    size_t n = reg->alloc_media ? 2 * reg->alloc_media : 16;
    struct vbox_medium **p = realloc (reg->media, n * sizeof *p);

    if (p == NULL) {
      vdi_error ("realloc: %m");
      return -1;
    }
    reg->media = p;
    reg->alloc_media = n;
  }
  /* Keep the table at most half full. */
  if (2 * (reg->nr_media + 1) > reg->nr_slots) {
    size_t n = reg->nr_slots ? 2 * reg->nr_slots : 64;
    struct vbox_medium **slots = calloc (n, sizeof *slots);

    if (slots == NULL) {
      vdi_error ("calloc: %m");
      return -1;
    }
    free (reg->slots);
    reg->slots = slots;
    reg->nr_slots = n;
    hash_fill (reg);
  }
  reg->media[reg->nr_media++] = m;
  *hash_slot (reg, &m->uuid) = m;
  return 0;
}

void
vbox_media_rollback (struct vbox_registry *reg, size_t first_new)
{
  size_t i;

  if (reg->nr_media == first_new)
    return;
  for (i = first_new; i < reg->nr_media; ++i)
    vbox_medium_free (reg->media[i]);
  reg->nr_media = first_new;
  hash_fill (reg);
}

/* Loading. */

/* The machine in whose folders Windows locations are looked for:
 * this file's, or one loaded before.
 */
static const struct vbox_machine *
current_machine (const struct vbox_load *ld)
{
  return ld->machine ? ld->machine : ld->reg->machine;
}

static const char *
uuid_or_none (const struct vbox_medium *m, char buf[VDI_UUID_STRLEN + 2])
{
  char u[VDI_UUID_STRLEN];

  if (m == NULL)
    return "none";
  snprintf (buf, VDI_UUID_STRLEN + 2, "{%s}", vdi_uuid_format (&m->uuid, u));
  return buf;
}

/* Normalise a type attribute; NULL if it is not a type. */
static const char *
normalise_type (const char *text)
{
  size_t i;

  for (i = 0; medium_types[i]; ++i)
    if (strcasecmp (text, medium_types[i]) == 0)
      return medium_types[i];
  return NULL;
}

/* The same UUID as existing, but a different location or parent.
 * Kept out of load_hard_disk, which recurses, for its buffers.
 */
static void __attribute__ ((__noinline__))
report_conflict (const struct vbox_load *ld, const xmlNode *node,
                 const struct vbox_medium *existing, const char *location,
                 const struct vbox_medium *parent)
{
  char ubuf[VDI_UUID_STRLEN];
  char pbuf1[VDI_UUID_STRLEN + 2], pbuf2[VDI_UUID_STRLEN + 2];
  char lbuf1[VBOX_MSG_PATH_MAX], lbuf2[VBOX_MSG_PATH_MAX];
  const bool same_file = strcmp (existing->registry_file, ld->path) == 0;

  vdi_error ("%s: line %ld: duplicate UUID {%s}: location %s and parent %s "
             "here, but location %s and parent %s %s%s",
             ld->filename, xmlGetLineNo (node),
             vdi_uuid_format (&existing->uuid, ubuf),
             vbox_xml_clean_text (location, lbuf1, sizeof lbuf1),
             uuid_or_none (parent, pbuf1),
             vbox_xml_clean_text (existing->location, lbuf2, sizeof lbuf2),
             uuid_or_none (existing->parent, pbuf2),
             same_file ? "earlier in the file" : "in ",
             same_file ? "" : existing->registry_file);
}

/* The attributes of a HardDisk element. */
struct hard_disk_attributes {
  struct vdi_uuid uuid;
  xmlChar *location;            /* as written */
  xmlChar *format;              /* NULL if not written */
  const char *default_format;   /* from a legacy image element, or NULL */
  const char *type;             /* normalised; NULL if not written */
  bool auto_reset;
};

static void
free_hard_disk_attributes (struct hard_disk_attributes *attrs)
{
  if (attrs->location)
    xmlFree (attrs->location);
  if (attrs->format)
    xmlFree (attrs->format);
}
#define CLEANUP_HARD_DISK_ATTRIBUTES \
  __attribute__ ((cleanup (free_hard_disk_attributes)))

/* Before settings 1.4 the location was the filePath of a child
 * element that also gave the format: <VirtualDiskImage filePath=...>
 * etc.  Returns the location, or NULL if there is none.
 */
static xmlChar *
get_legacy_location (const xmlNode *node, const char **default_format)
{
  static const struct { const char *element, *format; } legacy[] = {
    { "VirtualDiskImage", "VDI" },
    { "VMDKImage", "VMDK" },
    { "VHDImage", "VHD" },
  };
  xmlChar *location = NULL;
  size_t i;

  for (i = 0; i < sizeof legacy / sizeof legacy[0] && !location; ++i) {
    xmlNodePtr image = vbox_xml_first_child (node, legacy[i].element);

    if (image) {
      location = vbox_xml_get_attr (image, "filePath");
      *default_format = legacy[i].format;
    }
  }
  return location;
}

/* Read and check the attributes of a HardDisk element.  attrs is
 * freed by the caller, after an error too.  Kept out of
 * load_hard_disk, which recurses, for its buffers.
 */
static int __attribute__ ((__noinline__))
parse_hard_disk_attributes (const struct vbox_load *ld, const xmlNode *node,
                            struct hard_disk_attributes *attrs)
{
  CLEANUP_XMLFREE xmlChar *type = NULL;
  CLEANUP_XMLFREE xmlChar *auto_reset = NULL;
  char ubuf[VDI_UUID_STRLEN], tbuf[VBOX_MSG_TEXT_MAX];
  int b;

  if (vbox_xml_get_uuid_attr (ld->filename, node, "uuid", true,
                              &attrs->uuid) == -1)
    return -1;

  attrs->location = vbox_xml_get_attr (node, "location");
  if (attrs->location == NULL)
    attrs->location = get_legacy_location (node, &attrs->default_format);
  if (attrs->location == NULL) {
    vdi_error ("%s: line %ld: <%s> {%s} has no location attribute",
               ld->filename, xmlGetLineNo (node), node->name,
               vdi_uuid_format (&attrs->uuid, ubuf));
    return -1;
  }

  attrs->format = vbox_xml_get_attr (node, "format");
  if (attrs->format == NULL && attrs->default_format == NULL) {
    vdi_error ("%s: line %ld: <%s> {%s} has no format attribute",
               ld->filename, xmlGetLineNo (node), node->name,
               vdi_uuid_format (&attrs->uuid, ubuf));
    return -1;
  }

  type = vbox_xml_get_attr (node, "type");
  if (type) {
    attrs->type = normalise_type ((const char *) type);
    if (attrs->type == NULL) {
      vdi_error ("%s: line %ld: <%s> {%s} has type \"%s\", which is not "
                 "one of Normal, Immutable, Writethrough, Shareable, "
                 "Readonly or MultiAttach",
                 ld->filename, xmlGetLineNo (node), node->name,
                 vdi_uuid_format (&attrs->uuid, ubuf),
                 vbox_xml_clean_text (type, tbuf, sizeof tbuf));
      return -1;
    }
  }

  auto_reset = vbox_xml_get_attr (node, "autoReset");
  if (auto_reset) {
    b = vbox_xml_parse_bool ((const char *) auto_reset);
    if (b == -1) {
      vdi_error ("%s: line %ld: <%s> {%s} has autoReset \"%s\", which is "
                 "neither true nor false",
                 ld->filename, xmlGetLineNo (node), node->name,
                 vdi_uuid_format (&attrs->uuid, ubuf),
                 vbox_xml_clean_text (auto_reset, tbuf, sizeof tbuf));
      return -1;
    }
    attrs->auto_reset = b == 1;
  }
  return 0;
}

/* A medium already in the registry, seen again at node with location
 * (resolved) and parent.  VirtualBox merges the same medium seen in
 * several registries; it must be the same medium though.
 */
static int
check_same_medium (const struct vbox_load *ld, const xmlNode *node,
                   const struct vbox_medium *existing, const char *location,
                   const struct vbox_medium *parent)
{
  char ubuf[VDI_UUID_STRLEN];

  if (existing->parent != parent ||
      strcmp (existing->location, location) != 0) {
    report_conflict (ld, node, existing, location, parent);
    return -1;
  }
  vdi_debug ("%s: line %ld: medium {%s} is also in %s",
             ld->filename, xmlGetLineNo (node),
             vdi_uuid_format (&existing->uuid, ubuf),
             existing->registry_file);
  return 0;
}

/* Append a new medium made of attrs to the registry.  It takes
 * location (resolved), after an error too.  Returns the medium, or
 * NULL after an error.
 */
static struct vbox_medium *
add_medium (const struct vbox_load *ld,
            const struct hard_disk_attributes *attrs, char *location,
            struct vbox_medium *parent, size_t depth)
{
  struct vbox_medium *m;

  m = calloc (1, sizeof *m);
  if (m == NULL) {
    vdi_error ("calloc: %m");
    free (location);
    return NULL;
  }
  m->uuid = attrs->uuid;
  m->location = location;
  m->location_as_written = strdup ((const char *) attrs->location);
  m->format = strdup (attrs->format
                      ? (const char *) attrs->format : attrs->default_format);
  if (m->location_as_written == NULL || m->format == NULL) {
    vdi_error ("strdup: %m");
    vbox_medium_free (m);
    return NULL;
  }
  /* VirtualBox writes type on base media only; diffs inherit it. */
  if (parent)
    m->type = parent->type;
  else
    m->type = attrs->type ? attrs->type : "Normal";
  /* The XSD allows autoReset on differencing images only, and
   * VirtualBox reports it false for a base (Medium::getAutoReset).
   */
  m->auto_reset = parent != NULL && attrs->auto_reset;
  m->parent = parent;
  m->depth = depth;
  m->registry_file = ld->path;
  if (registry_add (ld->reg, m) == -1) {
    vbox_medium_free (m);
    return NULL;
  }
  return m;
}

/* Read one HardDisk (or legacy DiffHardDisk) element and, recursively,
 * its differencing children.
 */
static int
load_hard_disk (struct vbox_load *ld, const xmlNode *node,
                struct vbox_medium *parent, size_t depth)
{
  CLEANUP_HARD_DISK_ATTRIBUTES struct hard_disk_attributes attrs = { 0 };
  CLEANUP_FREE char *resolved = NULL;
  struct vbox_medium *m;
  xmlNodePtr c;

  if (depth > VBOX_MAX_MEDIUM_DEPTH) {
    vdi_error ("%s: line %ld: HardDisk elements are nested more than %d "
               "deep (VirtualBox's limit)",
               ld->filename, xmlGetLineNo (node), VBOX_MAX_MEDIUM_DEPTH);
    return -1;
  }

  if (parse_hard_disk_attributes (ld, node, &attrs) == -1)
    return -1;
  resolved = vbox_path_resolve_location (ld->filename, node, ld->folder,
                                         current_machine (ld),
                                         (const char *) attrs.location);
  if (resolved == NULL)
    return -1;

  m = lookup (ld->reg, &attrs.uuid);
  if (m) {
    if (check_same_medium (ld, node, m, resolved, parent) == -1)
      return -1;
  }
  else {
    m = add_medium (ld, &attrs, resolved, parent, depth);
    resolved = NULL;            /* add_medium took it */
    if (m == NULL)
      return -1;
  }

  for (c = node->children; c; c = c->next) {
    if (vbox_xml_is_element (c, "HardDisk") ||
        vbox_xml_is_element (c, "DiffHardDisk")) {
      if (load_hard_disk (ld, c, m, depth + 1) == -1)
        return -1;
    }
  }
  return 0;
}

int
vbox_media_load_registry (struct vbox_load *ld, const xmlNode *registry)
{
  xmlNodePtr disks, c;

  for (disks = registry->children; disks; disks = disks->next) {
    if (!vbox_xml_is_element (disks, "HardDisks"))
      continue;
    for (c = disks->children; c; c = c->next) {
      if (vbox_xml_is_element (c, "HardDisk") &&
          load_hard_disk (ld, c, NULL, 1) == -1)
        return -1;
    }
  }
  return 0;
}

/* Lookups. */

const struct vbox_medium *
vbox_registry_find_uuid (const struct vbox_registry *reg,
                         const struct vdi_uuid *uuid)
{
  return lookup (reg, uuid);
}

const struct vbox_medium *
vbox_registry_next_child (const struct vbox_registry *reg,
                          const struct vbox_medium *medium, size_t *pos)
{
  while (*pos < reg->nr_media) {
    const struct vbox_medium *m = reg->media[(*pos)++];

    if (m->parent == medium)
      return m;
  }
  return NULL;
}

size_t
vbox_registry_nr_children (const struct vbox_registry *reg,
                           const struct vbox_medium *medium)
{
  size_t pos = 0, n = 0;

  while (vbox_registry_next_child (reg, medium, &pos))
    n++;
  return n;
}

const struct vbox_medium *
vbox_registry_find_location (const struct vbox_registry *reg,
                             const char *path)
{
  CLEANUP_FREE char *real = realpath (path, NULL);
  CLEANUP_FREE char *cwd = NULL;
  CLEANUP_FREE char *absolute = NULL;
  struct stat st;
  size_t i;

  /* A file that does not exist is matched by its absolute name. */
  if (real == NULL && path[0] != '/') {
    cwd = getcwd (NULL, 0);
    if (cwd)
      absolute = vbox_path_join (cwd, path);
  }

  for (i = 0; i < reg->nr_media; ++i)
    if (strcmp (reg->media[i]->location, path) == 0 ||
        (real && strcmp (reg->media[i]->location, real) == 0) ||
        (absolute && strcmp (reg->media[i]->location, absolute) == 0))
      return reg->media[i];

  /* The same file by another name: a symbolic or a hard link. */
  if (real == NULL || stat (real, &st) == -1)
    return NULL;
  for (i = 0; i < reg->nr_media; ++i) {
    struct stat other;

    if (stat (reg->media[i]->location, &other) == 0 &&
        other.st_dev == st.st_dev && other.st_ino == st.st_ino)
      return reg->media[i];
  }
  return NULL;
}
