/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Declarations shared by the files of the VirtualBox settings reader
 * (vbox-*.c), not exported.
 */

#ifndef VBOX_INTERNAL_H
#define VBOX_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include <libxml/tree.h>

#include "vbox-registry.h"

/* How much of a text (or path) taken from a file appears in a message. */
#define VBOX_MSG_TEXT_MAX 84
#define VBOX_MSG_PATH_MAX 400

/* The registry behind the public header's opaque type. */
struct vbox_registry {
  struct vbox_medium **media;   /* in load order */
  size_t nr_media, alloc_media;
  struct vbox_medium **slots;   /* hash table on the UUID */
  size_t nr_slots;              /* 0 or a power of 2 */
  char **files;                 /* absolute names of the files loaded */
  size_t nr_files;
  struct vbox_machine *machine;
};

/* The state of one vbox_registry_load. */
struct vbox_load {
  struct vbox_registry *reg;
  const char *filename;         /* as given, for messages */
  const char *path;             /* absolute */
  char *folder;                 /* folder of path */
  struct vbox_machine *machine; /* the machine of this file, if any */
  size_t first_new;             /* media appended by this load start here */
};

/* Frees an xmlChar * at the end of its scope (NULL is fine). */
static inline void
cleanup_xmlfree (void *ptr)
{
  xmlChar *p = * (xmlChar **) ptr;

  if (p)
    xmlFree (p);
}
#define CLEANUP_XMLFREE __attribute__ ((cleanup (cleanup_xmlfree)))

/* vbox-xml.c: reading settings files and walking their tree. */

/* Copy text from a file into buf[size] for a message, control
 * characters replaced so that every message stays on one line, and
 * cut (ending in "...") if it does not fit.
 */
extern const char *vbox_xml_clean_text (const void *text,
                                        char *buf, size_t size)
  __attribute__ ((__nonnull__ (1, 2)));

/* Parse a settings file.  Logs one error and returns NULL on failure. */
extern xmlDocPtr vbox_xml_parse_file (const char *filename)
  __attribute__ ((__nonnull__ (1)));

/* True for no namespace or a namespace of VirtualBox settings files. */
extern bool vbox_xml_is_settings_namespace (const xmlNs *ns);

/* True if node is an element called name, in no namespace or a
 * namespace of VirtualBox settings files.
 */
extern bool vbox_xml_is_element (const xmlNode *node, const char *name)
  __attribute__ ((__nonnull__ (1, 2)));

/* The first child of parent that is the element name (as
 * vbox_xml_is_element has it), or NULL.
 */
extern xmlNodePtr vbox_xml_first_child (const xmlNode *parent,
                                        const char *name)
  __attribute__ ((__nonnull__ (1, 2)));

/* An attribute, to be released with xmlFree, or NULL if absent. */
extern xmlChar *vbox_xml_get_attr (const xmlNode *node, const char *name)
  __attribute__ ((__nonnull__ (1, 2)));

/* Parse a UUID attribute.  Returns 0, 1 if it is absent and not
 * required, or -1 after an error naming filename.
 */
extern int vbox_xml_get_uuid_attr (const char *filename, const xmlNode *node,
                                   const char *attr, bool required,
                                   struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2, 3, 5)));

/* A required text attribute, as a malloc'd string.  NULL after an
 * error naming filename.
 */
extern char *vbox_xml_get_string_attr (const char *filename,
                                       const xmlNode *node, const char *attr)
  __attribute__ ((__nonnull__ (1, 2, 3)));

/* A boolean as VirtualBox's XML reader takes it: 1, 0, or -1 if the
 * text is not a boolean.
 */
extern int vbox_xml_parse_bool (const char *text)
  __attribute__ ((__nonnull__ (1)));

/* vbox-path.c: translating the paths of settings files. */

/* dir/name, without a second '/' if dir ends in one. */
extern char *vbox_path_join (const char *dir, const char *name)
  __attribute__ ((__nonnull__ (1, 2)));

/* The folder of an absolute path, "/" for a file in the root folder.
 * NULL after an error.
 */
extern char *vbox_path_folder (const char *path)
  __attribute__ ((__nonnull__ (1)));

/* A medium location as written in node of filename, resolved to an
 * absolute path: relative to folder (the folder of filename), or for
 * a Windows path, looked for in the folders of machine (NULL if there
 * is none yet) too.  NULL after an error.
 */
extern char *vbox_path_resolve_location (const char *filename,
                                         const xmlNode *node,
                                         const char *folder,
                                         const struct vbox_machine *machine,
                                         const char *written)
  __attribute__ ((__nonnull__ (1, 2, 3, 5)));

/* The snapshot folder of a machine as written (NULL if not written),
 * resolved to an absolute path relative to folder, the folder of its
 * .vbox file.
 */
extern char *vbox_path_resolve_snapshot_folder (const char *folder,
                                                const char *written)
  __attribute__ ((__nonnull__ (1)));

/* vbox-media.c: the media registry. */

/* Free a medium (NULL is fine). */
extern void vbox_medium_free (struct vbox_medium *m);

/* Read the HardDisk trees of a MediaRegistry element into the
 * registry.  On error the media appended so far stay: the caller
 * drops them with vbox_media_rollback.
 */
extern int vbox_media_load_registry (struct vbox_load *ld,
                                     const xmlNode *registry)
  __attribute__ ((__nonnull__ (1, 2)));

/* Undo a failed load: drop the media appended since first_new. */
extern void vbox_media_rollback (struct vbox_registry *reg, size_t first_new)
  __attribute__ ((__nonnull__ (1)));

/* vbox-machine.c: the machine of a .vbox file. */

/* Free a machine (NULL is fine). */
extern void vbox_machine_free (struct vbox_machine *m);

/* Read the attributes of a Machine element into a new machine,
 * ld->machine, before its media are read (Windows locations are
 * looked for in its folders).  On error the caller frees ld->machine.
 */
extern int vbox_machine_load_attributes (struct vbox_load *ld,
                                         const xmlNode *node)
  __attribute__ ((__nonnull__ (1, 2)));

/* Read the attachments and snapshots of a Machine element into
 * ld->machine, after the media.
 */
extern int vbox_machine_load_state (struct vbox_load *ld, const xmlNode *node)
  __attribute__ ((__nonnull__ (1, 2)));

/* vbox-settings.c: changing a machine's settings file. */

struct vbox_settings {
  char *filename;               /* absolute */
  xmlDocPtr doc;
  xmlNodePtr machine;           /* its Machine element */
};

/* Parse a .vbox file to change it.  Returns 0, or -1 after an error. */
extern int vbox_settings_open (const char *filename, struct vbox_settings *s)
  __attribute__ ((__nonnull__ (1, 2)));
extern void vbox_settings_close (struct vbox_settings *s)
  __attribute__ ((__nonnull__ (1)));
/* Replace the file with the document, safely (see vbox-settings.c). */
extern int vbox_settings_save (const struct vbox_settings *s)
  __attribute__ ((__nonnull__ (1)));

/* The HardDisk element of a medium in the machine's registry, and the
 * Snapshot element of a snapshot, or NULL.
 */
extern xmlNodePtr vbox_settings_find_hard_disk (const struct vbox_settings *s,
                                                const struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2)));
extern xmlNodePtr vbox_settings_find_snapshot (const struct vbox_settings *s,
                                               const struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2)));
/* The StorageControllers element of a Machine or Snapshot (directly
 * under it or in its Hardware), or NULL.
 */
extern xmlNodePtr vbox_settings_storage_controllers (xmlNodePtr owner)
  __attribute__ ((__nonnull__ (1)));
/* Call fn for the Image element of each hard disk attached in owner,
 * in document order, with the UUID it names; stop at -1.
 */
typedef int (*vbox_disk_function) (void *opaque, xmlNodePtr image,
                                   const struct vdi_uuid *uuid);
extern int vbox_settings_for_each_disk (xmlNodePtr owner,
                                        vbox_disk_function fn, void *opaque)
  __attribute__ ((__nonnull__ (1, 2)));

/* A new element in the namespace of like. */
extern xmlNodePtr vbox_settings_new_element (const xmlNode *like,
                                             const char *name)
  __attribute__ ((__nonnull__ (1, 2)));
/* The indentation of node's line, in spaces. */
extern size_t vbox_settings_depth (const xmlNode *node)
  __attribute__ ((__nonnull__ (1)));
/* A deep copy of node, its inner lines indented by delta more spaces
 * (fewer if negative), to go to a depth delta deeper.
 */
extern xmlNodePtr vbox_settings_copy (xmlNodePtr node, int delta)
  __attribute__ ((__nonnull__ (1)));
/* Make child the last child element of parent, or put node before
 * next, on a line of its own, indented as its siblings are.
 */
extern int vbox_settings_append (xmlNodePtr parent, xmlNodePtr child)
  __attribute__ ((__nonnull__ (1, 2)));
extern int vbox_settings_insert_before (xmlNodePtr next, xmlNodePtr node)
  __attribute__ ((__nonnull__ (1, 2)));
/* Unlink and free node, and the line break and indentation before it. */
extern void vbox_settings_remove (xmlNodePtr node)
  __attribute__ ((__nonnull__ (1)));
/* Set an attribute; a UUID is written braced, as VirtualBox does. */
extern int vbox_settings_set (xmlNodePtr node, const char *name,
                              const char *value)
  __attribute__ ((__nonnull__ (1, 2, 3)));
extern int vbox_settings_set_uuid (xmlNodePtr node, const char *name,
                                   const struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2, 3)));

#endif /* VBOX_INTERNAL_H */
