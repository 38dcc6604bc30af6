/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* VirtualBox XML media registries (VirtualBox.xml and .vbox files):
 * a registry's life, and loading a settings file into it.
 *
 * A file is parsed (vbox-xml.c).  For a .vbox file the machine's
 * attributes are read first, as Windows locations are looked for in
 * the machine's folders (vbox-path.c); then come the media
 * (vbox-media.c), then the machine's attachments and snapshots
 * (vbox-machine.c).  A load that fails leaves the registry as it was.
 */

#include <config.h>

#include <stdlib.h>

#include <libxml/tree.h>

#include "vbox-internal.h"
#include "vdi-internal.h"

struct vbox_registry *
vbox_registry_new (void)
{
  struct vbox_registry *reg = calloc (1, sizeof *reg);

  if (reg == NULL)
    vdi_error ("calloc: %m");
  return reg;
}

void
vbox_registry_free (struct vbox_registry *reg)
{
  size_t i;

  if (reg == NULL)
    return;
  for (i = 0; i < reg->nr_media; ++i)
    vbox_medium_free (reg->media[i]);
  free (reg->media);
  free (reg->slots);
  for (i = 0; i < reg->nr_files; ++i)
    free (reg->files[i]);
  free (reg->files);
  vbox_machine_free (reg->machine);
  free (reg);
}

/* Check the root element of a settings file.  Returns it, or NULL
 * after an error.
 */
static xmlNodePtr
get_root (const char *filename, xmlDocPtr doc)
{
  CLEANUP_XMLFREE xmlChar *version = NULL;
  xmlNodePtr root;
  char buf[VBOX_MSG_TEXT_MAX];

  root = xmlDocGetRootElement (doc);
  if (root == NULL) {
    vdi_error ("%s: the XML document has no root element", filename);
    return NULL;
  }
  if (!xmlStrEqual (root->name, BAD_CAST "VirtualBox")) {
    vdi_error ("%s: not a VirtualBox settings file: the root element is "
               "<%s>, not <VirtualBox>",
               filename, vbox_xml_clean_text (root->name, buf, sizeof buf));
    return NULL;
  }
  if (!vbox_xml_is_settings_namespace (root->ns)) {
    vdi_error ("%s: not a VirtualBox settings file: <VirtualBox> is in "
               "namespace %s",
               filename,
               vbox_xml_clean_text (root->ns->href, buf, sizeof buf));
    return NULL;
  }
  version = vbox_xml_get_attr (root, "version");
  vdi_debug ("%s: settings version %s", filename,
             version
             ? vbox_xml_clean_text (version, buf, sizeof buf) : "(none)");
  return root;
}

/* The Machine element of a .vbox file or the Global element of
 * VirtualBox.xml: root holds exactly one of them, and the other is
 * set to NULL.
 */
static int
get_machine_or_global (const char *filename, const xmlNode *root,
                       xmlNodePtr *machine, xmlNodePtr *global)
{
  *machine = vbox_xml_first_child (root, "Machine");
  *global = vbox_xml_first_child (root, "Global");
  if (*machine && *global) {
    vdi_error ("%s: <VirtualBox> holds both <Machine> and <Global>",
               filename);
    return -1;
  }
  if (!*machine && !*global) {
    vdi_error ("%s: <VirtualBox> holds neither <Machine> (a .vbox file) "
               "nor <Global> (VirtualBox.xml)", filename);
    return -1;
  }
  return 0;
}

/* Read the media and, for a .vbox file, the machine: its attributes
 * before the media (Windows locations are looked for in its folders),
 * its attachments and snapshots after them.
 */
static int
load_settings (struct vbox_load *ld, const xmlNode *machine,
               const xmlNode *global)
{
  xmlNodePtr registry;

  if (machine) {
    if (ld->reg->machine) {
      vdi_error ("%s: a machine is already loaded from %s: only one "
                 ".vbox file can be loaded",
                 ld->filename, ld->reg->machine->filename);
      return -1;
    }
    if (vbox_machine_load_attributes (ld, machine) == -1)
      return -1;
  }

  registry = vbox_xml_first_child (machine ? machine : global,
                                   "MediaRegistry");
  if (registry && vbox_media_load_registry (ld, registry) == -1)
    return -1;

  if (machine && vbox_machine_load_state (ld, machine) == -1)
    return -1;
  return 0;
}

/* After a load that succeeded: hand its machine, if any, over to the
 * registry.  Nothing here can fail.
 */
static void
adopt_machine (struct vbox_load *ld)
{
  char ubuf[VDI_UUID_STRLEN];
  size_t i;

  if (ld->machine == NULL)
    return;
  for (i = 0; i < ld->machine->nr_disks; ++i)
    if (vbox_registry_find_uuid (ld->reg, &ld->machine->disks[i]) == NULL)
      vdi_debug ("%s: attached medium {%s} is not in the registry yet",
                 ld->filename,
                 vdi_uuid_format (&ld->machine->disks[i], ubuf));
  ld->reg->machine = ld->machine;
  ld->machine = NULL;
}

int
vbox_registry_load (struct vbox_registry *reg, const char *filename)
{
  struct vbox_load ld = {
    .reg = reg, .filename = filename, .first_new = reg->nr_media
  };
  char *path = NULL, **files;
  xmlDocPtr doc = NULL;
  xmlNodePtr root, machine, global;
  int r = -1;

  path = realpath (filename, NULL);
  if (path == NULL) {
    vdi_error ("%s: %m", filename);
    return -1;
  }
  ld.path = path;
  ld.folder = vbox_path_folder (path);
  if (ld.folder == NULL)
    goto out;

  /* Room to record the file, so that nothing can fail once loaded. */
  files = realloc (reg->files, (reg->nr_files + 1) * sizeof *files);
  if (files == NULL) {
    vdi_error ("realloc: %m");
    goto out;
  }
  reg->files = files;

  doc = vbox_xml_parse_file (filename);
  if (doc == NULL)
    goto out;
  root = get_root (filename, doc);
  if (root == NULL ||
      get_machine_or_global (filename, root, &machine, &global) == -1 ||
      load_settings (&ld, machine, global) == -1)
    goto out;

  /* Success: nothing below can fail. */
  adopt_machine (&ld);
  reg->files[reg->nr_files++] = path;
  path = NULL;
  vdi_debug ("%s: %zu media in the registry", filename, reg->nr_media);
  r = 0;

 out:
  if (r == -1)
    vbox_media_rollback (reg, ld.first_new);
  vbox_machine_free (ld.machine);
  xmlFreeDoc (doc);
  free (ld.folder);
  free (path);
  return r;
}
