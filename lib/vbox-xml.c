/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Reading VirtualBox settings files (VirtualBox.xml and .vbox files)
 * safely, and the helpers that walk their tree and read typed
 * attributes.  Nothing here knows about media or machines.
 *
 * Design notes.
 *
 * Parsing.  Settings files come from users and may be hostile, so the
 * file is read into memory by us (a regular file of at most
 * VBOX_MAX_FILE_SIZE bytes, refused before parsing) and parsed with a
 * parser context of its own:
 *
 *  - XML_PARSE_NONET, never XML_PARSE_NOENT, XML_PARSE_DTDLOAD or
 *    XML_PARSE_DTDVALID, and XML_PARSE_NO_XXE where libxml2 has it;
 *  - the internalSubset and externalSubset SAX callbacks refuse any
 *    DOCTYPE and stop the parser at once, before a single declaration
 *    is read: VirtualBox never writes one, and without a DTD there are
 *    no entities to expand (billion laughs) or to fetch (XXE);
 *  - XML_PARSE_HUGE, because libxml2's default depth limit (256
 *    elements) is below VirtualBox's 300 nested HardDisks.  HUGE
 *    lifts the entity amplification limits too, which is safe only
 *    because DTDs are refused; it also lifts the depth limit, so the
 *    startElementNs callback counts the depth itself and stops the
 *    parser past VBOX_MAX_ELEMENT_DEPTH;
 *  - libxml2's messages go to a structured error handler set on the
 *    context (and, for the few raised without a context, as the
 *    thread's handler for the duration of the call only).  The first
 *    error is kept and reported as one line through vdi_error.
 *
 * Walking.  The tree is walked by element local names; an element
 * counts if it has no namespace or one of the namespaces VirtualBox
 * has used.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <errno.h>
#include <endian.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/SAX2.h>

#include "cleanup.h"

#include "vbox-internal.h"
#include "vdi-format.h"
#include "vdi-internal.h"

/* Settings files larger than this are refused before parsing. */
#define VBOX_MAX_FILE_SIZE (64 * 1024 * 1024)

/* Elements nested deeper than this stop the parser.  It leaves room
 * for VBOX_MAX_MEDIUM_DEPTH HardDisks and for VBOX_MAX_SNAPSHOT_DEPTH
 * (vbox-machine.c) snapshots (two elements each, Snapshot and
 * Snapshots).
 */
#define VBOX_MAX_ELEMENT_DEPTH 1024

#if LIBXML_VERSION >= 21200
#define XML_ERROR_CONST const
#else
#define XML_ERROR_CONST
#endif

static const int parse_options =
  XML_PARSE_NONET | XML_PARSE_HUGE | XML_PARSE_BIG_LINES
#if LIBXML_VERSION >= 21300
  | XML_PARSE_NO_XXE
#endif
  ;

/* The default namespaces of settings files: the documented one, and
 * the one every real file we have seen uses.  No namespace at all is
 * accepted too.
 */
static const char *const vbox_namespaces[] = {
  "http://www.virtualbox.org/",
  "http://www.innotek.de/VirtualBox-settings",
  NULL
};

/* Messages. */

const char *
vbox_xml_clean_text (const void *text, char *buf, size_t size)
{
  const unsigned char *s = text;
  size_t i;

  for (i = 0; s[i] && i < size - 4; ++i)
    buf[i] = s[i] < 0x20 || s[i] == 0x7f ? '?' : s[i];
  if (s[i])
    strcpy (&buf[i], "...");
  else
    buf[i] = '\0';
  return buf;
}

/* Reading and parsing. */

struct parse_state {
  const char *filename;
  unsigned depth;               /* of the element being parsed */
  startElementNsSAX2Func start_element; /* libxml2's own callbacks */
  endElementNsSAX2Func end_element;
  bool refused;                 /* we stopped the parser */
  char refusal[256];
  bool have_error;              /* the first error of libxml2 */
  int error_line;
  char error[256];
};

static void
refuse (xmlParserCtxtPtr ctxt, const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 2, 3)));

static void
refuse (xmlParserCtxtPtr ctxt, const char *fs, ...)
{
  struct parse_state *st = ctxt->_private;
  va_list args;

  if (!st->refused) {
    st->refused = true;
    va_start (args, fs);
    vsnprintf (st->refusal, sizeof st->refusal, fs, args);
    va_end (args);
  }
  xmlStopParser (ctxt);
}

/* Called for any <!DOCTYPE>, before its declarations are read. */
static void
refuse_dtd (void *ctx,
            const xmlChar *name __attribute__ ((__unused__)),
            const xmlChar *external_id __attribute__ ((__unused__)),
            const xmlChar *system_id __attribute__ ((__unused__)))
{
  refuse (ctx,
          "DTDs and entities are not allowed in VirtualBox settings files");
}

static void
start_element (void *ctx, const xmlChar *localname, const xmlChar *prefix,
               const xmlChar *uri, int nb_namespaces,
               const xmlChar **namespaces, int nb_attributes,
               int nb_defaulted, const xmlChar **attributes)
{
  xmlParserCtxtPtr ctxt = ctx;
  struct parse_state *st = ctxt->_private;

  st->start_element (ctx, localname, prefix, uri, nb_namespaces, namespaces,
                     nb_attributes, nb_defaulted, attributes);
  if (++st->depth > VBOX_MAX_ELEMENT_DEPTH)
    refuse (ctxt, "line %d: elements are nested more than %d deep",
            xmlSAX2GetLineNumber (ctx), VBOX_MAX_ELEMENT_DEPTH);
}

static void
end_element (void *ctx, const xmlChar *localname, const xmlChar *prefix,
             const xmlChar *uri)
{
  xmlParserCtxtPtr ctxt = ctx;
  struct parse_state *st = ctxt->_private;

  st->depth--;
  st->end_element (ctx, localname, prefix, uri);
}

/* libxml2's errors: keep the first, demote warnings to debug. */
static void
xml_error (void *user_data, XML_ERROR_CONST xmlError *err)
{
  xmlParserCtxtPtr ctxt = user_data;
  struct parse_state *st = ctxt->_private;
  char msg[sizeof st->error];
  size_t len, i;

  /* One line: libxml2's messages end in a newline and some hold more. */
  snprintf (msg, sizeof msg, "%s", err->message ? err->message : "error");
  len = strlen (msg);
  while (len > 0 && (msg[len - 1] == '\n' || msg[len - 1] == ' '))
    msg[--len] = '\0';
  for (i = 0; i < len; ++i)
    if ((unsigned char) msg[i] < 0x20)
      msg[i] = ' ';

  if (err->level == XML_ERR_WARNING)
    vdi_debug ("%s: line %d: %s", st->filename, err->line, msg);
  else if (!st->have_error) {
    st->have_error = true;
    st->error_line = err->line;
    memcpy (st->error, msg, sizeof msg);
  }
}

/* Does the file start like a VDI image (a disk given where a settings
 * file was wanted)?  The reverse of vdi_header_decode's check.
 */
static bool
is_vdi_image (int fd)
{
  struct vdi_disk_preheader pre;

  return vdi_full_pread (fd, &pre, sizeof pre, 0) == 0 &&
    le32toh (pre.signature) == VDI_SIGNATURE;
}

/* Read a whole settings file into memory, refusing anything that is
 * not a regular file of sane size.
 */
static char *
read_settings_file (const char *filename, size_t *len_ret)
{
  struct stat statbuf;
  char *buf;
  size_t len = 0;
  int fd;

  fd = vdi_open_regular (filename, O_RDONLY, "settings files");
  if (fd == -1)
    return NULL;
  if (fstat (fd, &statbuf) == -1) {
    vdi_error ("%s: fstat: %m", filename);
    close (fd);
    return NULL;
  }
  /* Before the size: most disks are larger than any settings file. */
  if (is_vdi_image (fd)) {
    vdi_error ("%s: not a VirtualBox settings file but a VDI disk image",
               filename);
    close (fd);
    return NULL;
  }
  if (statbuf.st_size > VBOX_MAX_FILE_SIZE) {
    vdi_error ("%s: the file is too large for a VirtualBox settings file "
               "(%jd bytes, the limit is %d MiB)",
               filename, (intmax_t) statbuf.st_size,
               VBOX_MAX_FILE_SIZE / (1024 * 1024));
    close (fd);
    return NULL;
  }
  if (statbuf.st_size == 0) {
    vdi_error ("%s: the file is empty, not a VirtualBox settings file",
               filename);
    close (fd);
    return NULL;
  }

  buf = malloc (statbuf.st_size + 1);
  if (buf == NULL) {
    vdi_error ("%s: malloc: %m", filename);
    close (fd);
    return NULL;
  }
  while (len < (size_t) statbuf.st_size) {
    ssize_t r = read (fd, buf + len, statbuf.st_size - len);

    if (r == -1) {
      if (errno == EINTR)
        continue;
      vdi_error ("%s: read: %m", filename);
      free (buf);
      close (fd);
      return NULL;
    }
    if (r == 0)                 /* the file shrank meanwhile */
      break;
    len += r;
  }
  close (fd);
  buf[len] = '\0';
  *len_ret = len;
  return buf;
}

xmlDocPtr
vbox_xml_parse_file (const char *filename)
{
  CLEANUP_FREE char *buf = NULL;
  struct parse_state st = { .filename = filename };
  xmlParserCtxtPtr ctxt;
  xmlStructuredErrorFunc saved_handler;
  void *saved_context;
  xmlDocPtr doc;
  bool well_formed;
  size_t len;

  buf = read_settings_file (filename, &len);
  if (buf == NULL)
    return NULL;

  ctxt = xmlCreateMemoryParserCtxt (buf, (int) len);
  if (ctxt == NULL) {
    vdi_error ("%s: cannot create an XML parser", filename);
    return NULL;
  }
  ctxt->_private = &st;
  st.start_element = ctxt->sax->startElementNs;
  st.end_element = ctxt->sax->endElementNs;
  if (st.start_element == NULL || st.end_element == NULL) {
    vdi_error ("%s: the XML parser is not in SAX2 mode", filename);
    xmlFreeParserCtxt (ctxt);
    return NULL;
  }
  ctxt->sax->startElementNs = start_element;
  ctxt->sax->endElementNs = end_element;
  ctxt->sax->internalSubset = refuse_dtd;
  ctxt->sax->externalSubset = refuse_dtd;
  ctxt->sax->serror = xml_error;
  xmlCtxtUseOptions (ctxt, parse_options);

  /* Errors raised without the context (some encoding errors) go to
   * the thread's handler: take it for this call only.
   */
  saved_handler = xmlStructuredError;
  saved_context = xmlStructuredErrorContext;
  xmlSetStructuredErrorFunc (ctxt, xml_error);
  xmlParseDocument (ctxt);
  xmlSetStructuredErrorFunc (saved_context, saved_handler);

  doc = ctxt->myDoc;
  ctxt->myDoc = NULL;
  well_formed = ctxt->wellFormed;
  xmlFreeParserCtxt (ctxt);

  if (st.refused) {
    vdi_error ("%s: %s", filename, st.refusal);
    goto err;
  }
  if (!well_formed || doc == NULL || st.have_error) {
    if (st.have_error && st.error_line > 0)
      vdi_error ("%s: not a well-formed XML file: line %d: %s",
                 filename, st.error_line, st.error);
    else if (st.have_error)
      vdi_error ("%s: not a well-formed XML file: %s", filename, st.error);
    else
      vdi_error ("%s: not a well-formed XML file", filename);
    goto err;
  }
  /* Cannot happen with the callbacks above; checked all the same. */
  if (doc->intSubset || doc->extSubset) {
    vdi_error ("%s: DTDs and entities are not allowed in VirtualBox "
               "settings files", filename);
    goto err;
  }
  return doc;

 err:
  xmlFreeDoc (doc);
  return NULL;
}

/* Walking the tree. */

bool
vbox_xml_is_settings_namespace (const xmlNs *ns)
{
  size_t i;

  if (ns == NULL)
    return true;
  for (i = 0; vbox_namespaces[i]; ++i)
    if (xmlStrEqual (ns->href, BAD_CAST vbox_namespaces[i]))
      return true;
  return false;
}

bool
vbox_xml_is_element (const xmlNode *node, const char *name)
{
  return node->type == XML_ELEMENT_NODE &&
    xmlStrEqual (node->name, BAD_CAST name) &&
    vbox_xml_is_settings_namespace (node->ns);
}

xmlNodePtr
vbox_xml_first_child (const xmlNode *parent, const char *name)
{
  xmlNodePtr c;

  for (c = parent->children; c; c = c->next)
    if (vbox_xml_is_element (c, name))
      return c;
  return NULL;
}

/* Typed attributes. */

xmlChar *
vbox_xml_get_attr (const xmlNode *node, const char *name)
{
  return xmlGetNoNsProp (node, BAD_CAST name);
}

int
vbox_xml_get_uuid_attr (const char *filename, const xmlNode *node,
                        const char *attr, bool required,
                        struct vdi_uuid *uuid)
{
  CLEANUP_XMLFREE xmlChar *text = vbox_xml_get_attr (node, attr);
  char buf[VBOX_MSG_TEXT_MAX];

  if (text == NULL) {
    if (!required)
      return 1;
    vdi_error ("%s: line %ld: <%s> has no %s attribute",
               filename, xmlGetLineNo (node), node->name, attr);
    return -1;
  }
  if (vdi_uuid_parse ((const char *) text, uuid) == -1) {
    vdi_error ("%s: line %ld: malformed UUID \"%s\" in <%s %s>",
               filename, xmlGetLineNo (node),
               vbox_xml_clean_text (text, buf, sizeof buf), node->name, attr);
    return -1;
  }
  if (vdi_uuid_is_null (uuid)) {
    vdi_error ("%s: line %ld: null UUID \"%s\" in <%s %s>",
               filename, xmlGetLineNo (node),
               vbox_xml_clean_text (text, buf, sizeof buf), node->name, attr);
    return -1;
  }
  return 0;
}

char *
vbox_xml_get_string_attr (const char *filename, const xmlNode *node,
                          const char *attr)
{
  CLEANUP_XMLFREE xmlChar *text = vbox_xml_get_attr (node, attr);
  char *r;

  if (text == NULL) {
    vdi_error ("%s: line %ld: <%s> has no %s attribute",
               filename, xmlGetLineNo (node), node->name, attr);
    return NULL;
  }
  r = strdup ((const char *) text);
  if (r == NULL)
    vdi_error ("strdup: %m");
  return r;
}

int
vbox_xml_parse_bool (const char *text)
{
  if (strcasecmp (text, "true") == 0 || strcasecmp (text, "yes") == 0 ||
      strcasecmp (text, "on") == 0 || strcmp (text, "1") == 0)
    return 1;
  if (strcasecmp (text, "false") == 0 || strcasecmp (text, "no") == 0 ||
      strcasecmp (text, "off") == 0 || strcmp (text, "0") == 0)
    return 0;
  return -1;
}
