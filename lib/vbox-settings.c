/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Changing a machine's settings file (.vbox), as VirtualBox writes it.
 *
 * The file is parsed by the same hardened reader as the registry
 * (vbox-xml.c), with every text node kept, and written back by
 * libxml2: what an operation does not change (comments, attribute
 * order, unknown elements, the settings version and namespace) comes
 * out as it went in.  New elements are indented like their siblings.
 *
 * Saving follows VirtualBox's safe write (xml::XmlFileWriter) with one
 * difference: the new file is written to FILE-tmp and synced, the old
 * one is kept as FILE-prev, and FILE-tmp is renamed over FILE.
 * VirtualBox renames FILE to FILE-prev first, so that for a moment
 * there is no FILE; here FILE-prev is made as a hard link, so that at
 * every moment FILE is the old file or the new one.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libxml/tree.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vdi-internal.h"

int
vbox_settings_open (const char *filename, struct vbox_settings *s)
{
  xmlNodePtr root, c;

  memset (s, 0, sizeof *s);
  s->filename = realpath (filename, NULL);
  if (s->filename == NULL) {
    vdi_error ("%s: %m", filename);
    return -1;
  }
  s->doc = vbox_xml_parse_file (s->filename);
  if (s->doc == NULL)
    goto err;
  root = xmlDocGetRootElement (s->doc);
  for (c = root ? root->children : NULL; c; c = c->next)
    if (vbox_xml_is_element (c, "Machine"))
      s->machine = c;
  if (s->machine == NULL) {
    vdi_error ("%s: not a machine settings file (no <Machine>)",
               s->filename);
    goto err;
  }
  return 0;

 err:
  vbox_settings_close (s);
  return -1;
}

void
vbox_settings_close (struct vbox_settings *s)
{
  xmlFreeDoc (s->doc);
  free (s->filename);
  memset (s, 0, sizeof *s);
}

/* The whitespace before node on its line ("" if none). */
static const xmlChar *
indent_of (const xmlNode *node)
{
  const xmlChar *text, *nl;

  if (node->prev == NULL || node->prev->type != XML_TEXT_NODE ||
      node->prev->content == NULL)
    return BAD_CAST "";
  text = node->prev->content;
  nl = BAD_CAST strrchr ((const char *) text, '\n');
  return nl ? nl + 1 : text;
}

static xmlNodePtr
new_text (xmlDocPtr doc, const char *a, const xmlChar *b, const char *c)
{
  CLEANUP_FREE char *s = NULL;

  if (asprintf (&s, "%s%s%s", a, (const char *) b, c) == -1)
    return NULL;
  return xmlNewDocText (doc, BAD_CAST s);
}

/* Indent every line of the subtree of node by delta more spaces (or
 * fewer, for a negative delta: a copy moved up the document).
 */
static void
reindent (xmlNodePtr node, int delta)
{
  xmlNodePtr c;

  for (c = node->children; c; c = c->next) {
    if (c->type == XML_TEXT_NODE && c->content &&
        xmlStrchr (c->content, '\n')) {
      const char *p = (const char *) c->content;
      CLEANUP_FREE char *s = malloc (strlen (p) * (delta > 0 ? delta + 1 : 1)
                                     + 1);
      size_t n = 0;
      int i;

      if (s == NULL)
        continue;               /* left as it was: only the layout */
      while (*p) {
        s[n++] = *p;
        if (*p++ != '\n')
          continue;
        for (i = 0; i < delta; ++i)
          s[n++] = ' ';
        for (i = 0; i > delta && *p == ' '; --i)
          ++p;
      }
      s[n] = '\0';
      xmlNodeSetContent (c, BAD_CAST s);
    }
    else if (c->type == XML_ELEMENT_NODE)
      reindent (c, delta);
  }
}

size_t
vbox_settings_depth (const xmlNode *node)
{
  return strlen ((const char *) indent_of (node));
}

int
vbox_settings_append (xmlNodePtr parent, xmlNodePtr child)
{
  const xmlChar *indent = indent_of (parent);
  xmlNodePtr last = parent->last, before, after = NULL;
  const bool ends_in_text = last && last->type == XML_TEXT_NODE;

  before = new_text (parent->doc, "\n", indent, "  ");
  if (!ends_in_text)
    after = new_text (parent->doc, "\n", indent, "");
  if (before == NULL || (!ends_in_text && after == NULL)) {
    xmlFreeNode (before);
    xmlFreeNode (after);
    vdi_error ("out of memory");
    return -1;
  }
  /* The child goes after the last element, indented one level more;
   * the text that ends the parent's content (before its end tag)
   * stays last.  Text is only ever added next to an element: libxml2
   * merges text nodes that meet.
   */
  if (ends_in_text)
    xmlAddPrevSibling (last, child);
  else {
    xmlAddChild (parent, child);
    xmlAddNextSibling (child, after);
  }
  xmlAddPrevSibling (child, before);
  return 0;
}

int
vbox_settings_insert_before (xmlNodePtr next, xmlNodePtr node)
{
  xmlNodePtr text = new_text (next->doc, "\n", indent_of (next), "");

  if (text == NULL) {
    vdi_error ("out of memory");
    return -1;
  }
  /* node takes next's place, next moves to a line of its own. */
  xmlAddPrevSibling (next, node);
  xmlAddPrevSibling (next, text);
  return 0;
}

void
vbox_settings_remove (xmlNodePtr node)
{
  xmlNodePtr parent = node->parent, prev = node->prev, c, next;

  if (prev && prev->type == XML_TEXT_NODE &&
      xmlStrchr (prev->content, '\n')) {
    xmlUnlinkNode (prev);
    xmlFreeNode (prev);
  }
  xmlUnlinkNode (node);
  xmlFreeNode (node);

  /* A parent left with nothing but white space closes itself, as
   * VirtualBox writes an element without children: <HardDisk .../>.
   */
  for (c = parent->children; c; c = c->next)
    if (c->type != XML_TEXT_NODE || !xmlIsBlankNode (c))
      return;
  for (c = parent->children; c; c = next) {
    next = c->next;
    xmlUnlinkNode (c);
    xmlFreeNode (c);
  }
}

/* A copy made outside the tree declares the namespaces it uses on its
 * root; inside the tree they are the document's.
 */
static void
use_document_namespace (xmlNodePtr node, xmlNsPtr ns)
{
  xmlNodePtr c;

  if (node->ns && ns && xmlStrEqual (node->ns->href, ns->href))
    node->ns = ns;
  for (c = node->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE)
      use_document_namespace (c, ns);
}

xmlNodePtr
vbox_settings_copy (xmlNodePtr node, int delta)
{
  xmlNodePtr copy = xmlDocCopyNode (node, node->doc, 1);

  if (copy == NULL) {
    vdi_error ("out of memory");
    return NULL;
  }
  use_document_namespace (copy, node->ns);
  if (node->ns && copy->nsDef) {
    xmlFreeNsList (copy->nsDef);
    copy->nsDef = NULL;
  }
  reindent (copy, delta);
  return copy;
}

xmlNodePtr
vbox_settings_new_element (const xmlNode *like, const char *name)
{
  xmlNodePtr node = xmlNewDocNode (like->doc, like->ns, BAD_CAST name, NULL);

  if (node == NULL)
    vdi_error ("out of memory");
  return node;
}

int
vbox_settings_set (xmlNodePtr node, const char *name, const char *value)
{
  if (xmlSetProp (node, BAD_CAST name, BAD_CAST value) == NULL) {
    vdi_error ("out of memory");
    return -1;
  }
  return 0;
}

int
vbox_settings_set_uuid (xmlNodePtr node, const char *name,
                        const struct vdi_uuid *uuid)
{
  char buf[VDI_UUID_STRLEN], braced[VDI_UUID_STRLEN + 2];

  snprintf (braced, sizeof braced, "{%s}", vdi_uuid_format (uuid, buf));
  return vbox_settings_set (node, name, braced);
}

/* Does node carry this UUID in attribute name? */
static bool
has_uuid (const xmlNode *node, const char *name, const struct vdi_uuid *uuid)
{
  CLEANUP_XMLFREE xmlChar *text = vbox_xml_get_attr (node, name);
  struct vdi_uuid u;

  return text && vdi_uuid_parse ((const char *) text, &u) == 0 &&
    vdi_uuid_equal (&u, uuid);
}

/* The element called name with attribute attr = uuid in the subtree
 * of node (node included), or NULL.
 */
static xmlNodePtr
find_by_uuid (xmlNodePtr node, const char *name, const char *attr,
              const struct vdi_uuid *uuid)
{
  xmlNodePtr c, r;

  if (vbox_xml_is_element (node, name) && has_uuid (node, attr, uuid))
    return node;
  for (c = node->children; c; c = c->next)
    if (c->type == XML_ELEMENT_NODE &&
        (r = find_by_uuid (c, name, attr, uuid)) != NULL)
      return r;
  return NULL;
}

xmlNodePtr
vbox_settings_find_hard_disk (const struct vbox_settings *s,
                              const struct vdi_uuid *uuid)
{
  xmlNodePtr reg = vbox_xml_first_child (s->machine, "MediaRegistry");
  xmlNodePtr disks = reg ? vbox_xml_first_child (reg, "HardDisks") : NULL;

  return disks ? find_by_uuid (disks, "HardDisk", "uuid", uuid) : NULL;
}

xmlNodePtr
vbox_settings_find_snapshot (const struct vbox_settings *s,
                             const struct vdi_uuid *uuid)
{
  return find_by_uuid (s->machine, "Snapshot", "uuid", uuid);
}

xmlNodePtr
vbox_settings_storage_controllers (xmlNodePtr owner)
{
  xmlNodePtr c = vbox_xml_first_child (owner, "StorageControllers");
  xmlNodePtr hw = vbox_xml_first_child (owner, "Hardware");

  if (c == NULL && hw)
    c = vbox_xml_first_child (hw, "StorageControllers");
  return c;
}

int
vbox_settings_for_each_disk (xmlNodePtr owner, vbox_disk_function fn,
                             void *opaque)
{
  xmlNodePtr controllers = vbox_settings_storage_controllers (owner);
  xmlNodePtr ctrl, dev, image;

  if (controllers == NULL)
    return 0;
  for (ctrl = controllers->children; ctrl; ctrl = ctrl->next) {
    if (!vbox_xml_is_element (ctrl, "StorageController"))
      continue;
    for (dev = ctrl->children; dev; dev = dev->next) {
      CLEANUP_XMLFREE xmlChar *type = NULL;
      CLEANUP_XMLFREE xmlChar *text = NULL;
      struct vdi_uuid uuid;

      if (!vbox_xml_is_element (dev, "AttachedDevice"))
        continue;
      type = vbox_xml_get_attr (dev, "type");
      image = vbox_xml_first_child (dev, "Image");
      if (type == NULL || strcasecmp ((const char *) type, "HardDisk") != 0 ||
          image == NULL)
        continue;
      text = vbox_xml_get_attr (image, "uuid");
      if (text == NULL || vdi_uuid_parse ((const char *) text, &uuid) == -1)
        continue;               /* the registry reader refused these */
      if (fn (opaque, image, &uuid) == -1)
        return -1;
    }
  }
  return 0;
}

/* Write the document to path and sync it. */
static int
write_document (const struct vbox_settings *s, const char *path)
{
  FILE *fp = fopen (path, "we");

  if (fp == NULL) {
    vdi_error ("%s: %m", path);
    return -1;
  }
  if (xmlDocDump (fp, s->doc) == -1 || fflush (fp) == EOF ||
      fsync (fileno (fp)) == -1) {
    vdi_error ("%s: writing the settings: %m", path);
    fclose (fp);
    unlink (path);
    return -1;
  }
  if (fclose (fp) == EOF) {
    vdi_error ("%s: %m", path);
    unlink (path);
    return -1;
  }
  return 0;
}

/* Keep the file as it is now as FILE-prev, through a hard link, so
 * that FILE itself never goes away.
 */
static int
keep_previous (const char *filename)
{
  CLEANUP_FREE char *prev = NULL, *link_tmp = NULL;

  if (asprintf (&prev, "%s-prev", filename) == -1 ||
      asprintf (&link_tmp, "%s-prev-tmp", filename) == -1) {
    vdi_error ("asprintf: %m");
    return -1;
  }
  unlink (link_tmp);
  if (link (filename, link_tmp) == -1 || rename (link_tmp, prev) == -1) {
    vdi_error ("%s: keeping the previous settings as %s: %m",
               filename, prev);
    unlink (link_tmp);
    return -1;
  }
  /* When FILE-prev is that file already (a save was cut short after
   * this step), rename does nothing and leaves the link.
   */
  unlink (link_tmp);
  return 0;
}

int
vbox_settings_save (const struct vbox_settings *s)
{
  CLEANUP_FREE char *tmp = NULL;

  if (asprintf (&tmp, "%s-tmp", s->filename) == -1) {
    vdi_error ("asprintf: %m");
    return -1;
  }
  if (write_document (s, tmp) == -1)
    return -1;
  if (keep_previous (s->filename) == -1)
    goto err;
  if (rename (tmp, s->filename) == -1) {
    vdi_error ("%s: replacing it with %s: %m", s->filename, tmp);
    goto err;
  }
  return vdi_sync_folder (s->filename);

 err:
  unlink (tmp);
  return -1;
}
