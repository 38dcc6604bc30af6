/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* VirtualBox XML media registries (VirtualBox.xml and .vbox files).
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
 * has used.  HardDisk nesting (the parent/differencing relation) and
 * snapshot nesting are bounded as VirtualBox bounds them, so the
 * recursive walkers have a fixed maximum depth.
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
#include <stdarg.h>
#include <string.h>
#include <strings.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/stat.h>

#include <libxml/parser.h>
#include <libxml/parserInternals.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <libxml/SAX2.h>

#include "cleanup.h"

#include "vbox-registry.h"
#include "vdi-internal.h"

/* Settings files larger than this are refused before parsing. */
#define VBOX_MAX_FILE_SIZE (64 * 1024 * 1024)

/* Elements nested deeper than this stop the parser.  It leaves room
 * for VBOX_MAX_MEDIUM_DEPTH HardDisks and for VBOX_MAX_SNAPSHOT_DEPTH
 * snapshots (two elements each, Snapshot and Snapshots).
 */
#define VBOX_MAX_ELEMENT_DEPTH 1024

/* VirtualBox's limit on snapshot nesting (SETTINGS_SNAPSHOT_DEPTH_MAX). */
#define VBOX_MAX_SNAPSHOT_DEPTH 250

/* How much of a text (or path) taken from a file appears in a message. */
#define VBOX_MSG_TEXT_MAX 84
#define VBOX_MSG_PATH_MAX 400

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

/* HardDisk types in VirtualBox's spelling. */
static const char *const medium_types[] = {
  "Normal", "Immutable", "Writethrough", "Shareable", "Readonly",
  "MultiAttach", NULL
};

struct vbox_registry {
  struct vbox_medium **media;   /* in load order */
  size_t nr_media, alloc_media;
  struct vbox_medium **slots;   /* hash table on the UUID */
  size_t nr_slots;              /* 0 or a power of 2 */
  char **files;                 /* absolute names of the files loaded */
  size_t nr_files;
  struct vbox_machine *machine;
};

static inline void
cleanup_xmlfree (void *ptr)
{
  xmlChar *p = * (xmlChar **) ptr;

  if (p)
    xmlFree (p);
}
#define CLEANUP_XMLFREE __attribute__ ((cleanup (cleanup_xmlfree)))

/* Copy text from a file into buf[size] for a message, control
 * characters replaced so that every message stays on one line, and
 * cut (ending in "...") if it does not fit.
 */
static const char *
clean_text (const void *text, char *buf, size_t size)
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

  /* O_NONBLOCK so that a FIFO cannot block open; it is refused below. */
  fd = open (filename, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
  if (fd == -1) {
    vdi_error ("%s: open: %m", filename);
    return NULL;
  }
  if (fstat (fd, &statbuf) == -1) {
    vdi_error ("%s: fstat: %m", filename);
    close (fd);
    return NULL;
  }
  if (!S_ISREG (statbuf.st_mode)) {
    vdi_error ("%s: not a regular file", filename);
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

/* Parse a settings file.  Logs one error and returns NULL on failure. */
static xmlDocPtr
parse_settings (const char *filename)
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

/* Tree helpers. */

static bool
is_vbox_namespace (const xmlNs *ns)
{
  size_t i;

  if (ns == NULL)
    return true;
  for (i = 0; vbox_namespaces[i]; ++i)
    if (xmlStrEqual (ns->href, BAD_CAST vbox_namespaces[i]))
      return true;
  return false;
}

static bool
is_element (const xmlNode *node, const char *name)
{
  return node->type == XML_ELEMENT_NODE &&
    xmlStrEqual (node->name, BAD_CAST name) &&
    is_vbox_namespace (node->ns);
}

static xmlNodePtr
first_child (const xmlNode *parent, const char *name)
{
  xmlNodePtr c;

  for (c = parent->children; c; c = c->next)
    if (is_element (c, name))
      return c;
  return NULL;
}

/* An attribute, to be released with xmlFree, or NULL if absent. */
static xmlChar *
get_attr (const xmlNode *node, const char *name)
{
  return xmlGetNoNsProp (node, BAD_CAST name);
}

/* Paths. */

static char *
join_path (const char *dir, const char *name)
{
  size_t len = strlen (dir);
  char *path;

  if (asprintf (&path, "%s%s%s", dir,
                len > 0 && dir[len - 1] == '/' ? "" : "/", name) == -1) {
    vdi_error ("asprintf: %m");
    return NULL;
  }
  return path;
}

static bool
has_drive_letter (const char *path)
{
  return ((path[0] >= 'A' && path[0] <= 'Z') ||
          (path[0] >= 'a' && path[0] <= 'z')) && path[1] == ':';
}

/* A path written by VirtualBox on Windows: backslashes or a drive
 * letter.  A path starting with '/' is taken as a POSIX path.
 */
static bool
is_windows_path (const char *path)
{
  return path[0] != '/' &&
    (strchr (path, '\\') != NULL || has_drive_letter (path));
}

static bool
is_windows_absolute (const char *path)
{
  return has_drive_letter (path) || path[0] == '\\';
}

/* The last component of a Windows path. */
static const char *
windows_basename (const char *path)
{
  const char *p, *base = has_drive_letter (path) ? path + 2 : path;

  for (p = base; *p; ++p)
    if (*p == '\\' || *p == '/')
      base = p + 1;
  return base;
}

/* A relative Windows path with '/' for '\\'. */
static char *
windows_to_posix (const char *path)
{
  char *r = strdup (path), *p;

  if (r == NULL) {
    vdi_error ("strdup: %m");
    return NULL;
  }
  for (p = r; *p; ++p)
    if (*p == '\\')
      *p = '/';
  return r;
}

static bool
file_exists (const char *path)
{
  return access (path, F_OK) == 0;
}

/* Loading. */

struct load {
  struct vbox_registry *reg;
  const char *filename;         /* as given, for messages */
  const char *path;             /* absolute */
  char *folder;                 /* folder of path */
  struct vbox_machine *machine; /* the machine of this file, if any */
  size_t first_new;             /* media appended by this load start here */
};

/* Parse a UUID attribute.  Returns 0, 1 if it is absent and not
 * required, or -1 after an error.
 */
static int
get_uuid_attr (const struct load *ld, const xmlNode *node, const char *attr,
               bool required, struct vdi_uuid *uuid)
{
  CLEANUP_XMLFREE xmlChar *text = get_attr (node, attr);
  char buf[VBOX_MSG_TEXT_MAX];

  if (text == NULL) {
    if (!required)
      return 1;
    vdi_error ("%s: line %ld: <%s> has no %s attribute",
               ld->filename, xmlGetLineNo (node), node->name, attr);
    return -1;
  }
  if (vdi_uuid_parse ((const char *) text, uuid) == -1) {
    vdi_error ("%s: line %ld: malformed UUID \"%s\" in <%s %s>",
               ld->filename, xmlGetLineNo (node),
               clean_text (text, buf, sizeof buf), node->name, attr);
    return -1;
  }
  if (vdi_uuid_is_null (uuid)) {
    vdi_error ("%s: line %ld: null UUID \"%s\" in <%s %s>",
               ld->filename, xmlGetLineNo (node),
               clean_text (text, buf, sizeof buf), node->name, attr);
    return -1;
  }
  return 0;
}

/* A required text attribute, as a malloc'd string. */
static char *
get_string_attr (const struct load *ld, const xmlNode *node,
                 const char *attr)
{
  CLEANUP_XMLFREE xmlChar *text = get_attr (node, attr);
  char *r;

  if (text == NULL) {
    vdi_error ("%s: line %ld: <%s> has no %s attribute",
               ld->filename, xmlGetLineNo (node), node->name, attr);
    return NULL;
  }
  r = strdup ((const char *) text);
  if (r == NULL)
    vdi_error ("strdup: %m");
  return r;
}

static const struct vbox_machine *
current_machine (const struct load *ld)
{
  return ld->machine ? ld->machine : ld->reg->machine;
}

/* Resolve a location as written to an absolute path.  Not inlined
 * into the recursive load_hard_disk, for its buffers.
 */
static char * __attribute__ ((__noinline__))
resolve_location (const struct load *ld, const xmlNode *node,
                  const char *written)
{
  const struct vbox_machine *machine = current_machine (ld);
  const char *dirs[3];
  const char *base;
  char buf[VBOX_MSG_PATH_MAX], pbuf[VBOX_MSG_PATH_MAX];
  char *path, *guess = NULL;
  size_t nr_dirs = 0, i;

  if (*written == '\0') {
    vdi_error ("%s: line %ld: <%s> has an empty location",
               ld->filename, xmlGetLineNo (node), node->name);
    return NULL;
  }
  if (written[0] == '/') {
    path = strdup (written);
    if (path == NULL)
      vdi_error ("strdup: %m");
    return path;
  }
  if (!is_windows_path (written))
    return join_path (ld->folder, written);

  /* A Windows path: the file may have moved with the machine folder. */
  base = windows_basename (written);
  if (*base == '\0' || strcmp (base, ".") == 0 || strcmp (base, "..") == 0) {
    vdi_error ("%s: line %ld: location \"%s\" names no file",
               ld->filename, xmlGetLineNo (node),
               clean_text (written, buf, sizeof buf));
    return NULL;
  }
  if (!is_windows_absolute (written)) {
    CLEANUP_FREE char *rel = windows_to_posix (written);

    if (rel == NULL)
      return NULL;
    path = join_path (ld->folder, rel);
    if (path == NULL || file_exists (path))
      return path;
    free (path);
  }

  if (machine) {
    dirs[nr_dirs++] = machine->folder;
    dirs[nr_dirs++] = machine->snapshot_folder;
  }
  if (machine == NULL || strcmp (machine->folder, ld->folder) != 0)
    dirs[nr_dirs++] = ld->folder;

  for (i = 0; i < nr_dirs; ++i) {
    path = join_path (dirs[i], base);
    if (path == NULL) {
      free (guess);
      return NULL;
    }
    if (file_exists (path)) {
      vdi_debug ("%s: Windows location %s found as %s",
                 ld->filename, clean_text (written, buf, sizeof buf),
                 clean_text (path, pbuf, sizeof pbuf));
      free (guess);
      return path;
    }
    if (guess == NULL)
      guess = path;
    else
      free (path);
  }
  vdi_debug ("%s: Windows location %s not found, guessing %s",
             ld->filename, clean_text (written, buf, sizeof buf),
             clean_text (guess, pbuf, sizeof pbuf));
  return guess;
}

/* The snapshot folder of a machine, absolute. */
static char *
resolve_snapshot_folder (const struct load *ld, const char *written)
{
  char *path;

  if (written == NULL || *written == '\0')
    return join_path (ld->folder, "Snapshots");
  if (written[0] == '/') {
    path = strdup (written);
    if (path == NULL)
      vdi_error ("strdup: %m");
    return path;
  }
  if (is_windows_path (written)) {
    if (is_windows_absolute (written)) {
      const char *base = windows_basename (written);

      return join_path (ld->folder, *base ? base : "Snapshots");
    }
    else {
      CLEANUP_FREE char *rel = windows_to_posix (written);

      return rel ? join_path (ld->folder, rel) : NULL;
    }
  }
  return join_path (ld->folder, written);
}

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

static void
medium_free (struct vbox_medium *m)
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

/* Undo a failed load: drop the media it appended. */
static void
registry_rollback (struct vbox_registry *reg, size_t first_new)
{
  size_t i;

  if (reg->nr_media == first_new)
    return;
  for (i = first_new; i < reg->nr_media; ++i)
    medium_free (reg->media[i]);
  reg->nr_media = first_new;
  hash_fill (reg);
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

/* Booleans as VirtualBox's XML reader takes them. */
static int
parse_bool (const char *text)
{
  if (strcasecmp (text, "true") == 0 || strcasecmp (text, "yes") == 0 ||
      strcasecmp (text, "on") == 0 || strcmp (text, "1") == 0)
    return 1;
  if (strcasecmp (text, "false") == 0 || strcasecmp (text, "no") == 0 ||
      strcasecmp (text, "off") == 0 || strcmp (text, "0") == 0)
    return 0;
  return -1;
}

/* The same UUID as existing, but a different location or parent.
 * Kept out of load_hard_disk, which recurses, for its buffers.
 */
static void __attribute__ ((__noinline__))
report_conflict (const struct load *ld, const xmlNode *node,
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
             clean_text (location, lbuf1, sizeof lbuf1),
             uuid_or_none (parent, pbuf1),
             clean_text (existing->location, lbuf2, sizeof lbuf2),
             uuid_or_none (existing->parent, pbuf2),
             same_file ? "earlier in the file" : "in ",
             same_file ? "" : existing->registry_file);
}

/* Read one HardDisk (or legacy DiffHardDisk) element and, recursively,
 * its differencing children.
 */
static int
load_hard_disk (struct load *ld, const xmlNode *node,
                struct vbox_medium *parent, size_t depth)
{
  CLEANUP_XMLFREE xmlChar *location = NULL;
  CLEANUP_XMLFREE xmlChar *format = NULL;
  CLEANUP_XMLFREE xmlChar *type = NULL;
  CLEANUP_XMLFREE xmlChar *auto_reset = NULL;
  char ubuf[VDI_UUID_STRLEN], tbuf[VBOX_MSG_TEXT_MAX];
  const char *default_format = NULL;
  const char *norm_type = NULL;
  struct vbox_medium *m, *existing;
  struct vdi_uuid uuid;
  CLEANUP_FREE char *resolved = NULL;
  xmlNodePtr c;
  int b = 0;

  if (depth > VBOX_MAX_MEDIUM_DEPTH) {
    vdi_error ("%s: line %ld: HardDisk elements are nested more than %d "
               "deep (VirtualBox's limit)",
               ld->filename, xmlGetLineNo (node), VBOX_MAX_MEDIUM_DEPTH);
    return -1;
  }

  if (get_uuid_attr (ld, node, "uuid", true, &uuid) == -1)
    return -1;

  location = get_attr (node, "location");
  if (location == NULL) {
    /* Before settings 1.4: <VirtualDiskImage filePath=...> etc. */
    static const struct { const char *element, *format; } legacy[] = {
      { "VirtualDiskImage", "VDI" },
      { "VMDKImage", "VMDK" },
      { "VHDImage", "VHD" },
    };
    size_t i;

    for (i = 0; i < sizeof legacy / sizeof legacy[0] && !location; ++i) {
      xmlNodePtr image = first_child (node, legacy[i].element);

      if (image) {
        location = get_attr (image, "filePath");
        default_format = legacy[i].format;
      }
    }
  }
  if (location == NULL) {
    vdi_error ("%s: line %ld: <%s> {%s} has no location attribute",
               ld->filename, xmlGetLineNo (node), node->name,
               vdi_uuid_format (&uuid, ubuf));
    return -1;
  }

  format = get_attr (node, "format");
  if (format == NULL && default_format == NULL) {
    vdi_error ("%s: line %ld: <%s> {%s} has no format attribute",
               ld->filename, xmlGetLineNo (node), node->name,
               vdi_uuid_format (&uuid, ubuf));
    return -1;
  }

  type = get_attr (node, "type");
  if (type) {
    norm_type = normalise_type ((const char *) type);
    if (norm_type == NULL) {
      vdi_error ("%s: line %ld: <%s> {%s} has type \"%s\", which is not "
                 "one of Normal, Immutable, Writethrough, Shareable, "
                 "Readonly or MultiAttach",
                 ld->filename, xmlGetLineNo (node), node->name,
                 vdi_uuid_format (&uuid, ubuf),
                 clean_text (type, tbuf, sizeof tbuf));
      return -1;
    }
  }

  auto_reset = get_attr (node, "autoReset");
  if (auto_reset) {
    b = parse_bool ((const char *) auto_reset);
    if (b == -1) {
      vdi_error ("%s: line %ld: <%s> {%s} has autoReset \"%s\", which is "
                 "neither true nor false",
                 ld->filename, xmlGetLineNo (node), node->name,
                 vdi_uuid_format (&uuid, ubuf),
                 clean_text (auto_reset, tbuf, sizeof tbuf));
      return -1;
    }
  }

  resolved = resolve_location (ld, node, (const char *) location);
  if (resolved == NULL)
    return -1;

  existing = lookup (ld->reg, &uuid);
  if (existing) {
    /* VirtualBox merges the same medium seen in several registries;
     * it must be the same medium though.
     */
    if (existing->parent != parent ||
        strcmp (existing->location, resolved) != 0) {
      report_conflict (ld, node, existing, resolved, parent);
      return -1;
    }
    vdi_debug ("%s: line %ld: medium {%s} is also in %s",
               ld->filename, xmlGetLineNo (node),
               vdi_uuid_format (&uuid, ubuf), existing->registry_file);
    m = existing;
  }
  else {
    m = calloc (1, sizeof *m);
    if (m == NULL) {
      vdi_error ("calloc: %m");
      return -1;
    }
    m->uuid = uuid;
    m->location = resolved;
    resolved = NULL;
    m->location_as_written = strdup ((const char *) location);
    m->format = strdup (format ? (const char *) format : default_format);
    if (m->location_as_written == NULL || m->format == NULL) {
      vdi_error ("strdup: %m");
      medium_free (m);
      return -1;
    }
    /* VirtualBox writes type on base media only; diffs inherit it. */
    if (parent)
      m->type = parent->type;
    else
      m->type = norm_type ? norm_type : "Normal";
    m->auto_reset = b == 1;
    m->parent = parent;
    m->depth = depth;
    m->registry_file = ld->path;
    if (registry_add (ld->reg, m) == -1) {
      medium_free (m);
      return -1;
    }
  }

  for (c = node->children; c; c = c->next) {
    if (is_element (c, "HardDisk") || is_element (c, "DiffHardDisk")) {
      if (load_hard_disk (ld, c, m, depth + 1) == -1)
        return -1;
    }
  }
  return 0;
}

static int
load_media_registry (struct load *ld, const xmlNode *registry)
{
  xmlNodePtr disks, c;

  for (disks = registry->children; disks; disks = disks->next) {
    if (!is_element (disks, "HardDisks"))
      continue;
    for (c = disks->children; c; c = c->next) {
      if (is_element (c, "HardDisk") && load_hard_disk (ld, c, NULL, 1) == -1)
        return -1;
    }
  }
  return 0;
}

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
load_controllers (const struct load *ld, const xmlNode *controllers,
                  struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr ctrl, dev, image;
  struct vdi_uuid uuid;

  for (ctrl = controllers->children; ctrl; ctrl = ctrl->next) {
    if (!is_element (ctrl, "StorageController"))
      continue;
    for (dev = ctrl->children; dev; dev = dev->next) {
      CLEANUP_XMLFREE xmlChar *type = NULL;

      if (!is_element (dev, "AttachedDevice"))
        continue;
      type = get_attr (dev, "type");
      if (type == NULL || strcasecmp ((const char *) type, "HardDisk") != 0)
        continue;
      image = first_child (dev, "Image");
      if (image == NULL)
        continue;
      if (get_uuid_attr (ld, image, "uuid", true, &uuid) == -1 ||
          push_uuid (disks, nr_disks, &uuid) == -1)
        return -1;
    }
  }
  return 0;
}

/* Before settings 1.7: HardDiskAttachments/HardDiskAttachment@hardDisk. */
static int
load_legacy_attachments (const struct load *ld, const xmlNode *attachments,
                         struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr c;
  struct vdi_uuid uuid;

  for (c = attachments->children; c; c = c->next) {
    if (!is_element (c, "HardDiskAttachment"))
      continue;
    if (get_uuid_attr (ld, c, "hardDisk", true, &uuid) == -1 ||
        push_uuid (disks, nr_disks, &uuid) == -1)
      return -1;
  }
  return 0;
}

/* The hard disks attached to a Machine or a Snapshot, whose
 * controllers sit directly under it or in its Hardware element.
 */
static int
load_attachments (const struct load *ld, const xmlNode *owner,
                  struct vdi_uuid **disks, size_t *nr_disks)
{
  xmlNodePtr c, h;

  for (c = owner->children; c; c = c->next) {
    if (is_element (c, "StorageControllers")) {
      if (load_controllers (ld, c, disks, nr_disks) == -1)
        return -1;
    }
    else if (is_element (c, "HardDiskAttachments")) {
      if (load_legacy_attachments (ld, c, disks, nr_disks) == -1)
        return -1;
    }
    else if (is_element (c, "Hardware")) {
      for (h = c->children; h; h = h->next) {
        if (is_element (h, "StorageControllers")) {
          if (load_controllers (ld, h, disks, nr_disks) == -1)
            return -1;
        }
        else if (is_element (h, "HardDiskAttachments")) {
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

static int
load_snapshot (const struct load *ld, const xmlNode *node, size_t parent,
               unsigned depth, struct snapshot_list *list)
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

  if (get_uuid_attr (ld, node, "uuid", true, &s->uuid) == -1)
    return -1;
  s->name = get_string_attr (ld, node, "name");
  if (s->name == NULL)
    return -1;
  /* The list may move while the children are read: no s after this. */
  if (load_attachments (ld, node, &s->disks, &s->nr_disks) == -1)
    return -1;

  for (c = node->children; c; c = c->next) {
    if (!is_element (c, "Snapshots"))
      continue;
    for (child = c->children; child; child = child->next) {
      if (is_element (child, "Snapshot") &&
          load_snapshot (ld, child, idx, depth + 1, list) == -1)
        return -1;
    }
  }
  return 0;
}

static int
compare_snapshot_uuids (const void *a, const void *b)
{
  const struct vbox_snapshot *const *x = a, *const *y = b;

  return memcmp ((*x)->uuid.bytes, (*y)->uuid.bytes, sizeof (*x)->uuid.bytes);
}

static void
machine_free (struct vbox_machine *m)
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

/* Machine attributes, before its media are read (Windows locations
 * are looked for in its folders).
 */
static int
load_machine_attributes (struct load *ld, const xmlNode *node)
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

  if (get_uuid_attr (ld, node, "uuid", true, &m->uuid) == -1)
    return -1;
  m->name = get_string_attr (ld, node, "name");
  if (m->name == NULL)
    return -1;
  m->filename = strdup (ld->path);
  m->folder = strdup (ld->folder);
  if (m->filename == NULL || m->folder == NULL) {
    vdi_error ("strdup: %m");
    return -1;
  }
  snapshot_folder = get_attr (node, "snapshotFolder");
  m->snapshot_folder =
    resolve_snapshot_folder (ld, (const char *) snapshot_folder);
  if (m->snapshot_folder == NULL)
    return -1;
  r = get_uuid_attr (ld, node, "currentSnapshot", false,
                     &m->current_snapshot);
  if (r == -1)
    return -1;
  m->has_current_snapshot = r == 0;
  return 0;
}

/* Attachments and snapshots, after the media. */
static int
load_machine_state (struct load *ld, const xmlNode *node)
{
  struct vbox_machine *m = ld->machine;
  struct snapshot_list list = { 0 };
  CLEANUP_FREE struct vbox_snapshot **sorted = NULL;
  char ubuf[VDI_UUID_STRLEN], nbuf[VBOX_MSG_TEXT_MAX];
  xmlNodePtr c;
  size_t i;
  bool found;

  if (load_attachments (ld, node, &m->disks, &m->nr_disks) == -1)
    return -1;

  for (c = node->children; c; c = c->next) {
    if (is_element (c, "Snapshot") &&
        load_snapshot (ld, c, SIZE_MAX, 1, &list) == -1)
      goto err;
  }

  /* Hand the list over, then link the parents. */
  m->snapshots = list.snapshots;
  m->nr_snapshots = list.n;
  list.snapshots = NULL;
  for (i = 0; i < m->nr_snapshots; ++i)
    m->snapshots[i].parent = list.parents[i] == SIZE_MAX
      ? NULL : &m->snapshots[list.parents[i]];
  free (list.parents);
  list.parents = NULL;

  if (m->nr_snapshots > 1) {
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
                   ld->filename, vdi_uuid_format (&sorted[i]->uuid, ubuf));
        return -1;
      }
    }
  }

  if (m->has_current_snapshot) {
    found = false;
    for (i = 0; i < m->nr_snapshots && !found; ++i)
      found = vdi_uuid_equal (&m->snapshots[i].uuid, &m->current_snapshot);
    if (!found) {
      vdi_error ("%s: the current snapshot {%s} of machine \"%s\" is not "
                 "one of its snapshots",
                 ld->filename, vdi_uuid_format (&m->current_snapshot, ubuf),
                 clean_text (m->name, nbuf, sizeof nbuf));
      return -1;
    }
  }
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

/* Public functions. */

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
    medium_free (reg->media[i]);
  free (reg->media);
  free (reg->slots);
  for (i = 0; i < reg->nr_files; ++i)
    free (reg->files[i]);
  free (reg->files);
  machine_free (reg->machine);
  free (reg);
}

int
vbox_registry_load (struct vbox_registry *reg, const char *filename)
{
  struct load ld = {
    .reg = reg, .filename = filename, .first_new = reg->nr_media
  };
  char *path = NULL, *slash, **files;
  xmlDocPtr doc = NULL;
  xmlNodePtr root, machine, global, registry;
  char buf[VBOX_MSG_TEXT_MAX];
  char ubuf[VDI_UUID_STRLEN];
  size_t i;
  int r = -1;

  path = realpath (filename, NULL);
  if (path == NULL) {
    vdi_error ("%s: %m", filename);
    return -1;
  }
  ld.path = path;
  ld.folder = strdup (path);
  if (ld.folder == NULL) {
    vdi_error ("strdup: %m");
    goto out;
  }
  slash = strrchr (ld.folder, '/');
  if (slash == ld.folder)
    slash[1] = '\0';
  else if (slash)
    *slash = '\0';

  /* Room to record the file, so that nothing can fail once loaded. */
  files = realloc (reg->files, (reg->nr_files + 1) * sizeof *files);
  if (files == NULL) {
    vdi_error ("realloc: %m");
    goto out;
  }
  reg->files = files;

  doc = parse_settings (filename);
  if (doc == NULL)
    goto out;

  root = xmlDocGetRootElement (doc);
  if (root == NULL) {
    vdi_error ("%s: the XML document has no root element", filename);
    goto out;
  }
  if (!xmlStrEqual (root->name, BAD_CAST "VirtualBox")) {
    vdi_error ("%s: not a VirtualBox settings file: the root element is "
               "<%s>, not <VirtualBox>",
               filename, clean_text (root->name, buf, sizeof buf));
    goto out;
  }
  if (!is_vbox_namespace (root->ns)) {
    vdi_error ("%s: not a VirtualBox settings file: <VirtualBox> is in "
               "namespace %s",
               filename, clean_text (root->ns->href, buf, sizeof buf));
    goto out;
  }
  {
    CLEANUP_XMLFREE xmlChar *version = get_attr (root, "version");

    vdi_debug ("%s: settings version %s", filename,
               version ? clean_text (version, buf, sizeof buf) : "(none)");
  }

  machine = first_child (root, "Machine");
  global = first_child (root, "Global");
  if (machine && global) {
    vdi_error ("%s: <VirtualBox> holds both <Machine> and <Global>",
               filename);
    goto out;
  }
  if (!machine && !global) {
    vdi_error ("%s: <VirtualBox> holds neither <Machine> (a .vbox file) "
               "nor <Global> (VirtualBox.xml)", filename);
    goto out;
  }

  if (machine) {
    if (reg->machine) {
      vdi_error ("%s: a machine is already loaded from %s: only one "
                 ".vbox file can be loaded", filename, reg->machine->filename);
      goto out;
    }
    if (load_machine_attributes (&ld, machine) == -1)
      goto out;
  }

  registry = first_child (machine ? machine : global, "MediaRegistry");
  if (registry && load_media_registry (&ld, registry) == -1)
    goto out;

  if (machine && load_machine_state (&ld, machine) == -1)
    goto out;

  /* Success: nothing below can fail. */
  if (ld.machine) {
    for (i = 0; i < ld.machine->nr_disks; ++i)
      if (lookup (reg, &ld.machine->disks[i]) == NULL)
        vdi_debug ("%s: attached medium {%s} is not in the registry yet",
                   filename, vdi_uuid_format (&ld.machine->disks[i], ubuf));
    reg->machine = ld.machine;
    ld.machine = NULL;
  }
  reg->files[reg->nr_files++] = path;
  path = NULL;
  vdi_debug ("%s: %zu media in the registry", filename, reg->nr_media);
  r = 0;

 out:
  if (r == -1)
    registry_rollback (reg, ld.first_new);
  machine_free (ld.machine);
  xmlFreeDoc (doc);
  free (ld.folder);
  free (path);
  return r;
}

const struct vbox_medium *
vbox_registry_find_uuid (const struct vbox_registry *reg,
                         const struct vdi_uuid *uuid)
{
  return lookup (reg, uuid);
}

size_t
vbox_registry_nr_children (const struct vbox_registry *reg,
                           const struct vbox_medium *medium)
{
  size_t i, n = 0;

  for (i = 0; i < reg->nr_media; ++i)
    if (reg->media[i]->parent == medium)
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
  size_t i;

  /* A file that does not exist is matched by its absolute name. */
  if (real == NULL && path[0] != '/') {
    cwd = getcwd (NULL, 0);
    if (cwd)
      absolute = join_path (cwd, path);
  }

  for (i = 0; i < reg->nr_media; ++i)
    if (strcmp (reg->media[i]->location, path) == 0 ||
        (real && strcmp (reg->media[i]->location, real) == 0) ||
        (absolute && strcmp (reg->media[i]->location, absolute) == 0))
      return reg->media[i];

  if (real == NULL)
    return NULL;
  for (i = 0; i < reg->nr_media; ++i) {
    CLEANUP_FREE char *other = realpath (reg->media[i]->location, NULL);

    if (other && strcmp (other, real) == 0)
      return reg->media[i];
  }
  return NULL;
}

const struct vbox_machine *
vbox_registry_machine (const struct vbox_registry *reg)
{
  return reg->machine;
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
               clean_text (machine->name, nbuf, sizeof nbuf),
               clean_text (name_or_uuid, buf, sizeof buf), list,
               len >= sizeof list ? "..." : "");
    return NULL;
  }
  if (machine->nr_snapshots == 0) {
    vdi_error ("%s: machine \"%s\" has no snapshots, so none is named or "
               "has the UUID \"%s\"",
               machine->filename, clean_text (machine->name, nbuf, sizeof nbuf),
               clean_text (name_or_uuid, buf, sizeof buf));
    return NULL;
  }
  /* Say what there is: names and UUIDs, as much as fits in list. */
  len = 0;
  for (i = 0; i < machine->nr_snapshots && len < sizeof list; ++i) {
    char sbuf[VBOX_MSG_TEXT_MAX];
    int w = snprintf (list + len, sizeof list - len, "%s\"%s\" {%s}",
                      i > 0 ? ", " : "",
                      clean_text (machine->snapshots[i].name,
                                  sbuf, sizeof sbuf),
                      vdi_uuid_format (&machine->snapshots[i].uuid, ubuf));
    len += w > 0 ? (size_t) w : 0;
  }
  vdi_error ("%s: machine \"%s\" has no snapshot named or with UUID \"%s\"; "
             "its %zu snapshot%s: %s%s",
             machine->filename, clean_text (machine->name, nbuf, sizeof nbuf),
             clean_text (name_or_uuid, buf, sizeof buf),
             machine->nr_snapshots, machine->nr_snapshots == 1 ? "" : "s",
             list, len >= sizeof list ? "..." : "");
  return NULL;
}
