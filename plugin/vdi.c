/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit plugin serving VirtualBox VDI images.  The plugin is glue:
 * configuration keys become libvdi calls, and the chain that libvdi
 * resolves at start-up answers every read and extents request.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/stat.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "cleanup.h"

#include "vbox-registry.h"
#include "libvdi.h"
#include "vdi-nbdkit.h"

/* -D vdi.header=1: print the header and a block map summary of every
 * image of the chain.
 */
NBDKIT_DLL_PUBLIC int vdi_debug_header;
/* -D vdi.chain=1: print the chain, top to base, with UUIDs and files. */
NBDKIT_DLL_PUBLIC int vdi_debug_chain;

/* Configuration. */
static char *filename;          /* file=, absolute */
static char **registry_files;   /* registry=, absolute, repeatable */
static size_t nr_registry_files;
static char **parent_dirs;      /* parent-dir=, absolute, repeatable */
static size_t nr_parent_dirs;
static const char *uuid_param;  /* uuid= */
static const char *snapshot_param; /* snapshot= */
static unsigned disk_index;     /* disk= */
static bool disk_index_set;
static bool force_readonly;     /* readonly= */
static bool autoreset = true;   /* autoreset= */
static bool autoreset_set;

/* The disk being served, resolved in .get_ready. */
static struct vbox_registry *registry;
static struct vdi_chain *chain;
static char *description;
/* Whether clients may write.  A server that will write opens the top
 * image for writing at start, which takes the exclusive lock, so that
 * a second server on the image is refused before it serves anyone.
 * Servers that will not (-r, readonly=true, under a filter that opens
 * the plugin read-only) only take the shared lock, and share the
 * image with other readers.
 */
static bool writable;
/* The top image is an autoreset differencing image served as if it
 * were empty (see poweron): the first write empties the file.  Read
 * and cleared atomically once requests run.
 */
static bool reset_pending;
/* Serialises that first write's reset. */
static pthread_mutex_t reset_lock = PTHREAD_MUTEX_INITIALIZER;

static void
vdi_load (void)
{
  vdi_nbdkit_load ("vdi");
}

static void
free_strings (char **strs, size_t n)
{
  size_t i;

  for (i = 0; i < n; ++i)
    free (strs[i]);
  free (strs);
}

static void
vdi_unload (void)
{
  vdi_chain_free (chain);
  vbox_registry_free (registry);
  free (description);
  free (filename);
  free_strings (registry_files, nr_registry_files);
  free_strings (parent_dirs, nr_parent_dirs);
}

/* The absolute form of the path given as key=path (what: "file" or
 * "folder"), or NULL after an error that says which key
 * (nbdkit_realpath's does not, and calls an empty path a null one).
 */
static char *
absolute_path (const char *key, const char *path, const char *what)
{
  char *abs;

  if (*path == '\0') {
    nbdkit_error ("%s= needs a %s name", key, what);
    return NULL;
  }
  abs = realpath (path, NULL);
  if (abs == NULL)
    nbdkit_error ("%s=%s: %m", key, path);
  return abs;
}

/* Append the absolute form of key=path to a list of strings. */
static int
append_path (char ***list, size_t *n, const char *key, const char *path,
             const char *what)
{
  char **new_list;
  char *abs = absolute_path (key, path, what);

  if (abs == NULL)
    return -1;
  new_list = realloc (*list, (*n + 1) * sizeof *new_list);
  if (new_list == NULL) {
    nbdkit_error ("realloc: %m");
    free (abs);
    return -1;
  }
  new_list[(*n)++] = abs;
  *list = new_list;
  return 0;
}

static int
vdi_config (const char *key, const char *value)
{
  if (strcmp (key, "file") == 0) {
    free (filename);
    filename = absolute_path (key, value, "file");
    if (filename == NULL)
      return -1;
  }
  else if (strcmp (key, "registry") == 0) {
    if (append_path (&registry_files, &nr_registry_files, key, value,
                     "file") == -1)
      return -1;
  }
  else if (strcmp (key, "parent-dir") == 0) {
    struct stat st;

    if (append_path (&parent_dirs, &nr_parent_dirs, key, value,
                     "folder") == -1)
      return -1;
    if (stat (parent_dirs[nr_parent_dirs - 1], &st) == 0 &&
        !S_ISDIR (st.st_mode)) {
      nbdkit_error ("parent-dir=%s: not a folder", value);
      return -1;
    }
  }
  else if (strcmp (key, "uuid") == 0) {
    struct vdi_uuid uuid;

    if (vdi_uuid_parse (value, &uuid) == -1) {
      nbdkit_error ("uuid: '%s' is not a UUID", value);
      return -1;
    }
    uuid_param = value;
  }
  else if (strcmp (key, "snapshot") == 0)
    snapshot_param = value;
  else if (strcmp (key, "readonly") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    force_readonly = r;
  }
  else if (strcmp (key, "autoreset") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    autoreset = r;
    autoreset_set = true;
  }
  else if (strcmp (key, "disk") == 0) {
    /* nbdkit_parse_unsigned calls "abc" an empty string. */
    if (*value == '\0' || strspn (value, "0123456789") != strlen (value)) {
      nbdkit_error ("disk: '%s' is not a disk number: the machine's hard "
                    "disks are numbered from 0", value);
      return -1;
    }
    if (nbdkit_parse_unsigned ("disk", value, &disk_index) == -1)
      return -1;
    disk_index_set = true;
  }
  else {
    nbdkit_error ("unknown parameter '%s'", key);
    return -1;
  }
  return 0;
}

static int
vdi_config_complete (void)
{
  if (filename == NULL && nr_registry_files == 0) {
    nbdkit_error ("you must supply the [file=]<DISK.vdi> parameter, "
                  "or registry=<MACHINE.vbox>, after the plugin name "
                  "on the command line");
    return -1;
  }
  if (nr_registry_files == 0 &&
      (uuid_param || snapshot_param || disk_index_set)) {
    nbdkit_error ("uuid=, snapshot= and disk= need registry=");
    return -1;
  }
  if (nr_registry_files == 0 && autoreset_set) {
    nbdkit_error ("autoreset= needs registry=: only a machine's settings "
                  "say that a differencing image is emptied at power-on");
    return -1;
  }
  if (filename && (uuid_param || snapshot_param || disk_index_set)) {
    nbdkit_error ("file= cannot be combined with uuid=, snapshot= or disk=");
    return -1;
  }
  if (uuid_param && (snapshot_param || disk_index_set)) {
    nbdkit_error ("uuid= cannot be combined with snapshot= or disk=");
    return -1;
  }
  if (nr_registry_files > 0 && nr_parent_dirs > 0) {
    nbdkit_error ("parent-dir= and registry= cannot be combined: "
                  "with a registry, parents are found in the registry");
    return -1;
  }
  return 0;
}

#define vdi_config_help \
  "[file=]<DISK.vdi>     The VirtualBox disk image to serve.\n" \
  "registry=<FILE>       A machine's .vbox file or VirtualBox.xml (repeatable).\n" \
  "uuid=<UUID>           With registry=: serve this medium.\n" \
  "disk=<N>              With registry=: the machine's Nth hard disk (from 0).\n" \
  "snapshot=<NAME|UUID>  With registry=: the disk as it was at this snapshot.\n" \
  "parent-dir=<DIR>      Also look for parents in DIR (repeatable).\n" \
  "readonly=true         Do not open the image for writing.\n" \
  "autoreset=false       With registry=: do not empty an autoreset differencing\n" \
  "                      image at the first write; serve it as it is.\n" \
  "Debug flags (with -v):\n" \
  "-D vdi.chain=1        The chain found, top to base, with UUIDs and files.\n" \
  "-D vdi.header=1       The header and block map summary of every image."

static void
vdi_dump_plugin (void)
{
  printf ("vdi_header_versions=0,1.1\n");
  printf ("vdi_image_types=dynamic,fixed,undo,differencing\n");
  printf ("vdi_block_size_min=%d\n", VDI_MIN_BLOCK_SIZE);
  printf ("vdi_block_size_max=%d\n", VDI_MAX_BLOCK_SIZE);
  printf ("vdi_max_chain_depth=%d\n", VDI_MAX_CHAIN_DEPTH);
  printf ("vdi_registry=yes\n");
  printf ("vdi_extents=yes\n");
  printf ("vdi_locking=ofd\n");
  printf ("vdi_write=yes\n");
  printf ("vdi_autoreset=yes\n");
}

/* Print what -D vdi.header=1 asks for. */
static void
debug_image (const struct vdi_image *img)
{
  const struct vdi_header *h = vdi_image_header (img);
  char create[VDI_UUID_STRLEN], modify[VDI_UUID_STRLEN];
  char linkage[VDI_UUID_STRLEN], parent_modify[VDI_UUID_STRLEN];
  uint32_t i, data = 0, zero = 0, free_ = 0;

  for (i = 0; i < h->blocks; ++i) {
    uint32_t entry = vdi_image_map_entry (img, i);

    if (entry == VDI_BLOCK_FREE)
      free_++;
    else if (entry == VDI_BLOCK_ZERO)
      zero++;
    else
      data++;
  }

  nbdkit_debug ("%s: VDI %" PRIu32 ".%" PRIu32 ", header %" PRIu32
                " bytes, %s, flags 0x%" PRIx32 ", \"%s\"",
                vdi_image_filename (img),
                VDI_VERSION_MAJOR (h->version), h->version & 0xffff,
                h->header_size, vdi_type_name (h->type), h->flags,
                h->comment);
  nbdkit_debug ("%s: disk size %" PRIu64 ", block size %" PRIu32
                " + %" PRIu32 " extra, %" PRIu32 " blocks, %" PRIu32
                " allocated, map at %" PRIu32 ", data at %" PRIu32,
                vdi_image_filename (img), h->disk_size, h->block_size,
                h->block_extra, h->blocks, h->blocks_allocated,
                h->blocks_offset, h->data_offset);
  nbdkit_debug ("%s: uuid create %s modify %s linkage %s parent-modify %s",
                vdi_image_filename (img),
                vdi_uuid_format (&h->uuid_create, create),
                vdi_uuid_format (&h->uuid_modify, modify),
                vdi_uuid_format (&h->uuid_linkage, linkage),
                vdi_uuid_format (&h->uuid_parent_modify, parent_modify));
  nbdkit_debug ("%s: block map: %" PRIu32 " data, %" PRIu32 " zero, %"
                PRIu32 " free", vdi_image_filename (img), data, zero, free_);
}

/* Print what -D vdi.chain=1 asks for. */
static void
debug_chain (void)
{
  size_t i, depth = vdi_chain_depth (chain);
  char uuid[VDI_UUID_STRLEN];

  nbdkit_debug ("chain of %zu image%s, top to base:",
                depth, depth == 1 ? "" : "s");
  for (i = 0; i < depth; ++i) {
    const struct vdi_image *img = vdi_chain_image (chain, i);
    const struct vdi_header *h = vdi_image_header (img);

    nbdkit_debug ("  [%zu] %s %s %s (%" PRIu64 " bytes, block size %"
                  PRIu32 ")", i, vdi_uuid_format (&h->uuid_create, uuid),
                  vdi_type_name (h->type), vdi_image_filename (img),
                  vdi_header_virtual_size (h), h->block_size);
  }
}

/* The registry files, for messages. */
static const char *
registry_name (void)
{
  return nr_registry_files == 1 ? registry_files[0] : "the media registries";
}

/* The snapshot of the machine (if any) named text or whose UUID is
 * text, or NULL; quiet.
 */
static const struct vbox_snapshot *
snapshot_named (const struct vbox_machine *machine, const char *text)
{
  struct vdi_uuid uuid;
  bool is_uuid = vdi_uuid_parse (text, &uuid) == 0;
  size_t i;

  for (i = 0; machine && i < machine->nr_snapshots; ++i)
    if (strcmp (machine->snapshots[i].name, text) == 0 ||
        (is_uuid && vdi_uuid_equal (&machine->snapshots[i].uuid, &uuid)))
      return &machine->snapshots[i];
  return NULL;
}

/* uuid= names no medium: say what it names instead, if the machine
 * knows it.
 */
static void
no_such_medium (const struct vbox_machine *machine,
                const struct vdi_uuid *uuid)
{
  const struct vbox_snapshot *snapshot = snapshot_named (machine, uuid_param);
  char uuid_str[VDI_UUID_STRLEN];

  vdi_uuid_format (uuid, uuid_str);
  if (snapshot)
    nbdkit_error ("%s: %s is the UUID of snapshot \"%s\" of machine "
                  "\"%s\", not of a medium: choose a snapshot with "
                  "snapshot=", machine->filename, uuid_str, snapshot->name,
                  machine->name);
  else if (machine && vdi_uuid_equal (&machine->uuid, uuid))
    nbdkit_error ("%s: %s is the UUID of machine \"%s\", not of a "
                  "medium: choose its disk with disk=",
                  machine->filename, uuid_str, machine->name);
  else
    nbdkit_error ("medium %s is not in %s", uuid_str, registry_name ());
}

/* Choose the medium to serve from the registry: uuid=, or the
 * machine's disk=N (default the first hard disk), now or at
 * snapshot=.
 */
static const struct vbox_medium *
select_medium (void)
{
  const struct vbox_machine *machine = vbox_registry_machine (registry);
  const struct vbox_medium *medium;
  const struct vdi_uuid *disks;
  const char *state;
  char uuid_str[VDI_UUID_STRLEN];
  size_t nr_disks;

  if (uuid_param) {
    struct vdi_uuid uuid;

    vdi_uuid_parse (uuid_param, &uuid);
    medium = vbox_registry_find_uuid (registry, &uuid);
    if (medium == NULL)
      no_such_medium (machine, &uuid);
    return medium;
  }

  if (machine == NULL) {
    nbdkit_error ("%s holds no machine: choose a disk with uuid= or file=",
                  registry_name ());
    return NULL;
  }
  if (snapshot_param) {
    const struct vbox_snapshot *snapshot;
    struct vdi_uuid uuid;

    /* A medium's UUID where a snapshot's was meant. */
    if (snapshot_named (machine, snapshot_param) == NULL &&
        vdi_uuid_parse (snapshot_param, &uuid) == 0 &&
        (medium = vbox_registry_find_uuid (registry, &uuid)) != NULL) {
      nbdkit_error ("%s: %s is the UUID of medium %s, not of a snapshot "
                    "of machine \"%s\": choose a medium with uuid=",
                    machine->filename, vdi_uuid_format (&uuid, uuid_str),
                    medium->location, machine->name);
      return NULL;
    }
    snapshot = vbox_machine_find_snapshot (machine, snapshot_param);
    if (snapshot == NULL)
      return NULL;
    disks = snapshot->disks;
    nr_disks = snapshot->nr_disks;
    state = "that snapshot";
  }
  else {
    disks = machine->disks;
    nr_disks = machine->nr_disks;
    state = "its current state";
  }
  if (disk_index >= nr_disks) {
    nbdkit_error ("%s: machine \"%s\" has %zu hard disk%s attached in %s, "
                  "so disk=%u does not exist",
                  machine->filename, machine->name, nr_disks,
                  nr_disks == 1 ? "" : "s", state, disk_index);
    return NULL;
  }
  medium = vbox_registry_find_uuid (registry, &disks[disk_index]);
  if (medium == NULL)
    nbdkit_error ("%s: medium %s attached to machine \"%s\" is not in %s",
                  machine->filename,
                  vdi_uuid_format (&disks[disk_index], uuid_str),
                  machine->name, registry_name ());
  return medium;
}

/* Load the registries and work out which file is the top image. */
static int
select_top_image (char **top, const struct vbox_medium **medium)
{
  size_t i;

  *medium = NULL;
  if (nr_registry_files > 0) {
    registry = vbox_registry_new ();
    if (registry == NULL)
      return -1;
    for (i = 0; i < nr_registry_files; ++i)
      if (vbox_registry_load (registry, registry_files[i]) == -1)
        return -1;
  }

  if (filename) {
    if (registry)
      *medium = vbox_registry_find_location (registry, filename);
  }
  else {
    *medium = select_medium ();
    if (*medium == NULL)
      return -1;
  }

  if (*medium && strcasecmp ((*medium)->format, "VDI") != 0) {
    char uuid[VDI_UUID_STRLEN];

    nbdkit_error ("%s: medium %s (%s) has format %s, which is not "
                  "supported (only VDI)", (*medium)->registry_file,
                  vdi_uuid_format (&(*medium)->uuid, uuid),
                  (*medium)->location, (*medium)->format);
    return -1;
  }

  /* Say which medium of which registry names a file that is not
   * there, not only which file (its parents get the same from
   * vdi_chain_open).
   */
  if (filename == NULL && access ((*medium)->location, R_OK) == -1) {
    char uuid[VDI_UUID_STRLEN];

    nbdkit_error ("%s: medium %s is at %s, which cannot be opened: %m",
                  (*medium)->registry_file,
                  vdi_uuid_format (&(*medium)->uuid, uuid),
                  (*medium)->location);
    return -1;
  }

  *top = strdup (filename ? filename : (*medium)->location);
  if (*top == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  return 0;
}

/* Whether the disk served is the one the machine's current state
 * attaches (registry= with disk= or its default): what VirtualBox
 * powers on.
 */
static bool
is_current_state (void)
{
  return nr_registry_files > 0 && filename == NULL && uuid_param == NULL &&
    snapshot_param == NULL;
}

static bool
is_type (const struct vbox_medium *medium, const char *type)
{
  return strcmp (medium->type, type) == 0;
}

/* VirtualBox attaches an Immutable or MultiAttach medium through a
 * differencing image of it, always: a current state that attaches one
 * directly was not written by VirtualBox, and what to write where is
 * anybody's guess.
 */
static int
check_attachment (const struct vbox_medium *medium)
{
  const struct vbox_machine *machine = vbox_registry_machine (registry);
  char uuid[VDI_UUID_STRLEN];

  if (!is_current_state () || medium->parent != NULL ||
      !(is_type (medium, "Immutable") || is_type (medium, "MultiAttach")))
    return 0;
  nbdkit_error ("%s: machine \"%s\" attaches the %s medium %s (%s) "
                "directly, which VirtualBox never does (it attaches a "
                "differencing image of it); to read the medium itself, "
                "choose it with uuid=",
                machine->filename, machine->name, medium->type,
                vdi_uuid_format (&medium->uuid, uuid), medium->location);
  return -1;
}

/* Why the disk must be served read-only whatever the client asks, or
 * NULL.  VirtualBox never writes to a snapshot's images or to an
 * Immutable, MultiAttach or Readonly base medium: writes to those go
 * to a differencing image (which is what the vdidiff filter
 * provides), and such a differencing image is written like any other.
 * VirtualBox cannot write version 0 images either.
 */
static const char *
readonly_reason (const struct vbox_medium *medium)
{
  static const char *const readonly_types[] =
    { "Immutable", "MultiAttach", "Readonly" };
  const struct vdi_header *h = vdi_image_header (vdi_chain_image (chain, 0));
  size_t i;

  if (snapshot_param)
    return "it is the state of a snapshot";
  if (h->version == VDI_VERSION_0)
    return "version 0 images are only read";
  /* Writing to a parent would change what every child shows. */
  if (medium && vbox_registry_nr_children (registry, medium) > 0)
    return "it has differencing images in the media registry";
  if (medium && medium->parent == NULL)
    for (i = 0; i < sizeof readonly_types / sizeof readonly_types[0]; ++i)
      if (is_type (medium, readonly_types[i]))
        return nbdkit_printf_intern ("it is %s %s medium",
                                     i == 0 ? "an" : "a", medium->type);
  /* As nbdkit's file plugin does, a file that this process may not
   * write is served read-only rather than refused.
   */
  if (faccessat (AT_FDCWD, vdi_image_filename (vdi_chain_image (chain, 0)),
                 W_OK, AT_EACCESS) == -1 &&
      (errno == EACCES || errno == EPERM || errno == EROFS))
    return nbdkit_printf_intern ("the file cannot be written (%m)");
  return NULL;
}

/* What VirtualBox does to the disk when it powers the machine on
 * (Console::i_powerUp): a hard disk attached in the current state
 * whose medium has autoReset is emptied first (IMedium::reset),
 * unless the machine is saved or its current snapshot is online,
 * whose saved memory expects the disk as it is.  The plugin serves
 * such a disk as it will be (vdi_chain_hide_top) and empties the file
 * only at the first write (begin_write): every NBD client connects
 * read-write, and one that only reads must not lose the image.  With
 * autoreset=false the image is served as it is.
 *
 * Prints one note for each such decision (and for the media that
 * VirtualBox writes directly, and differencing images of Immutable or
 * MultiAttach media that it never empties), saying what is done and
 * why.
 */
static int
poweron (const struct vbox_medium *medium)
{
  const struct vbox_machine *machine;
  const struct vbox_snapshot *current;
  const size_t depth = vdi_chain_depth (chain);
  const char *top = vdi_image_filename (vdi_chain_image (chain, 0));
  const char *base = vdi_image_filename (vdi_chain_image (chain, depth - 1));
  CLEANUP_FREE char *subject = NULL, *shown = NULL;
  int r;

  /* A snapshot state is read-only as it is: its note says so. */
  if (medium == NULL || snapshot_param)
    return 0;

  if (medium->parent == NULL) {
    if (writable &&
        (is_type (medium, "Writethrough") || is_type (medium, "Shareable")))
      vdi_nbdkit_tell ("note", "%s is a %s medium: written directly, as "
                       "VirtualBox writes it (it never gets a differencing "
                       "image, and snapshots leave it alone)",
                       top, medium->type);
    return 0;
  }

  if (!medium->auto_reset) {
    if (is_type (medium, "Immutable") || is_type (medium, "MultiAttach"))
      vdi_nbdkit_tell ("note", "%s is a differencing image of %s %s "
                       "without autoReset: served as it is, and never "
                       "emptied, as VirtualBox does", top, medium->type, base);
    return 0;
  }

  if (is_type (medium, "Immutable"))
    r = asprintf (&subject, "%s is the autoreset differencing image of "
                  "Immutable %s", top, base);
  else
    r = asprintf (&subject, "%s is an autoreset differencing image of %s, a "
                  "%s medium: VirtualBox empties it at power-on although "
                  "its base is not Immutable", top, base, medium->type);
  if (r == -1) {
    nbdkit_error ("asprintf: %m");
    return -1;
  }

  if (!is_current_state ()) {
    vdi_nbdkit_tell ("note", "%s; chosen by %s, it is served as it is and "
                     "not emptied (VirtualBox empties it only when it "
                     "powers on the machine that attaches it)",
                     subject, uuid_param ? "uuid=" : "file=");
    return 0;
  }
  machine = vbox_registry_machine (registry);
  current = vbox_machine_current_snapshot (machine);
  if (machine->saved) {
    vdi_nbdkit_tell ("note", "%s, but machine \"%s\" is saved (it has a "
                     "saved state): served as it is and not emptied, as "
                     "VirtualBox does", subject, machine->name);
    return 0;
  }
  if (current && current->online) {
    vdi_nbdkit_tell ("note", "%s, but the current snapshot \"%s\" is "
                     "online (it has a saved state): served as it is and "
                     "not emptied, as VirtualBox does",
                     subject, current->name);
    return 0;
  }
  if (!autoreset) {
    vdi_nbdkit_tell ("note", "%s: served as it is and not emptied "
                     "(autoreset=false)", subject);
    return 0;
  }

  if (vdi_chain_hide_top (chain) == -1)
    return -1;
  reset_pending = true;
  if (depth == 2)
    shown = strdup ("the base");
  else if (asprintf (&shown, "its parent %s",
                     vdi_image_filename (vdi_chain_image (chain, 1))) == -1)
    shown = NULL;
  if (shown == NULL) {
    nbdkit_error ("strdup: %m");
    return -1;
  }
  if (writable)
    vdi_nbdkit_tell ("note", "%s: served as %s shows it, and emptied at "
                     "the first write, as VirtualBox does at power-on",
                     subject, shown);
  else
    vdi_nbdkit_tell ("note", "%s: served as %s shows it, as VirtualBox "
                     "does at power-on, and never emptied (read-only)",
                     subject, shown);
  return 0;
}

/* Whether this server will never ask the plugin to write: nbdkit -r,
 * or a filter that opens the plugin read-only and keeps the writes
 * itself (vdidiff, and nbdkit's cow).  nbdkit says so only per
 * connection, too late to choose the lock.
 */
static bool
server_never_writes (void)
{
  return vdi_nbdkit_server_read_only () ||
    vdi_nbdkit_filter_stacked ("vdidiff") ||
    vdi_nbdkit_filter_stacked ("cow");
}

static int
vdi_get_ready (void)
{
  struct vdi_parent_search search = {
    .dirs = (const char *const *) parent_dirs,
    .nr_dirs = nr_parent_dirs,
    .dirs_option = "parent-dir=",
    .registry_option = "registry=",
  };
  const struct vbox_medium *medium;
  const struct vdi_header *h;
  const char *reason;
  struct vdi_image *top;
  char *top_file;
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];
  bool read_only;
  size_t i;

  if (select_top_image (&top_file, &medium) == -1)
    return -1;
  if (medium && check_attachment (medium) == -1) {
    free (top_file);
    return -1;
  }
  search.registry = registry;
  chain = vdi_chain_open (top_file, 0, &search);
  free (top_file);
  if (chain == NULL)
    return -1;

  top = vdi_chain_image (chain, 0);
  h = vdi_image_header (top);
  if (medium && !vdi_uuid_equal (&h->uuid_create, &medium->uuid)) {
    nbdkit_error ("%s: UUID %s of the image does not match the UUID %s "
                  "of the medium in %s", medium->location,
                  vdi_uuid_format (&h->uuid_create, a),
                  vdi_uuid_format (&medium->uuid, b), medium->registry_file);
    return -1;
  }

  /* A copy of a registered medium is that medium, for what may be
   * written: the registry finds it by its UUID too.
   */
  reason = readonly_reason (medium ? medium : registry
                            ? vbox_registry_find_uuid (registry,
                                                       &h->uuid_create)
                            : NULL);
  read_only = force_readonly || server_never_writes ();
  writable = !read_only && reason == NULL;
  if (reason && !read_only)
    vdi_nbdkit_tell ("note", "serving %s read-only because %s; "
                     "to write, stack the vdidiff filter (--filter=vdidiff)",
                     vdi_image_filename (top), reason);
  /* Refuse to start, before any note on what writes would do, if
   * another process has the image open.
   */
  if (writable && vdi_image_lock_exclusive (top) == -1)
    return -1;

  /* The images as they are on disk, before poweron may hide the top. */
  if (vdi_debug_chain)
    debug_chain ();
  if (vdi_debug_header)
    for (i = 0; i < vdi_chain_depth (chain); ++i)
      debug_image (vdi_chain_image (chain, i));

  if (poweron (medium) == -1)
    return -1;
  /* Only now: poweron hides the top image only while it is read-only. */
  if (writable && vdi_image_make_writable (top) == -1)
    return -1;

  description = vdi_chain_description (chain);
  if (description == NULL)
    return -1;
  return 0;
}

static void *
vdi_open (int readonly)
{
  return NBDKIT_HANDLE_NOT_NEEDED;
}

/* Before every change: at the first, empty an autoreset differencing
 * image (the power-on reset, see poweron).  Reads do not wait: while
 * the file is emptied they read the parent, as before.
 */
static int
begin_write (void)
{
  if (!__atomic_load_n (&reset_pending, __ATOMIC_ACQUIRE))
    return 0;
  ACQUIRE_LOCK_FOR_CURRENT_SCOPE (&reset_lock);
  if (!reset_pending)
    return 0;
  if (vdi_chain_reset_top (chain) == -1)
    return -1;
  __atomic_store_n (&reset_pending, false, __ATOMIC_RELEASE);
  nbdkit_debug ("%s: emptied before the first write (power-on reset)",
                vdi_image_filename (vdi_chain_image (chain, 0)));
  return 0;
}

/* Reads are pread on file descriptors shared by every connection and
 * a lookup of a table whose entries change atomically; writes into
 * allocated blocks are pwrite; only allocation takes a lock (in
 * libvdi).  So requests can run in parallel.
 */
#define THREAD_MODEL NBDKIT_THREAD_MODEL_PARALLEL

static const char *
vdi_export_description (void *handle)
{
  return description;
}

static int64_t
vdi_get_size (void *handle)
{
  return vdi_chain_size (chain);
}

static int
vdi_can_write (void *handle)
{
  return writable;
}

/* Every connection reads and writes the same files through the same
 * table, and flush syncs the files for all of them.
 */
static int
vdi_can_multi_conn (void *handle)
{
  return 1;
}

/* Any size and alignment works. */
static int
vdi_block_size (void *handle,
                uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
  *minimum = 1;
  *preferred = vdi_nbdkit_preferred_block_size (chain);
  *maximum = 0xffffffff;
  return 0;
}

static int
vdi_can_flush (void *handle)
{
  return 1;
}

static int
vdi_can_fua (void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
vdi_can_trim (void *handle)
{
  return 1;
}

/* Zeroing whole blocks only writes map entries; zeroing part of an
 * unallocated block must copy data up, and is refused when the client
 * asks for a fast zero.
 */
static int
vdi_can_zero (void *handle)
{
  return 1;
}

static int
vdi_can_fast_zero (void *handle)
{
  return 1;
}

static int
vdi_can_extents (void *handle)
{
  return 1;
}

static int
vdi_pread (void *handle, void *buf, uint32_t count, uint64_t offset,
           uint32_t flags)
{
  return vdi_chain_pread (chain, buf, count, offset, NULL);
}

static int
vdi_pwrite (void *handle, const void *buf, uint32_t count, uint64_t offset,
            uint32_t flags)
{
  if (begin_write () == -1)
    return -1;
  return vdi_chain_pwrite (chain, buf, count, offset,
                           vdi_nbdkit_write_flags (flags), NULL);
}

static int
vdi_zero (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (begin_write () == -1)
    return -1;
  return vdi_chain_zero (chain, count, offset,
                         vdi_nbdkit_write_flags (flags), NULL);
}

/* Trimmed ranges read back as zeros: trim is zero without the promise
 * of speed.
 */
static int
vdi_trim (void *handle, uint32_t count, uint64_t offset, uint32_t flags)
{
  if (begin_write () == -1)
    return -1;
  return vdi_chain_zero (chain, count, offset,
                         vdi_nbdkit_write_flags (flags & NBDKIT_FLAG_FUA),
                         NULL);
}

static int
vdi_flush (void *handle, uint32_t flags)
{
  return vdi_chain_flush (chain);
}

static int
add_extent (void *extents, uint64_t offset, uint64_t length,
            enum vdi_extent_type type)
{
  return nbdkit_add_extent (extents, offset, length,
                            vdi_nbdkit_extent_type (type));
}

static int
vdi_extents (void *handle, uint32_t count, uint64_t offset, uint32_t flags,
             struct nbdkit_extents *extents)
{
  return vdi_chain_extents (chain, offset, count,
                            flags & NBDKIT_FLAG_REQ_ONE,
                            add_extent, extents);
}

static struct nbdkit_plugin plugin = {
  .name               = "vdi",
  .longname           = "nbdkit VirtualBox VDI plugin",
  .version            = PACKAGE_VERSION,
  .load               = vdi_load,
  .unload             = vdi_unload,
  .config             = vdi_config,
  .config_complete    = vdi_config_complete,
  .config_help        = vdi_config_help,
  .magic_config_key   = "file",
  .dump_plugin        = vdi_dump_plugin,
  .get_ready          = vdi_get_ready,
  .open               = vdi_open,
  .export_description = vdi_export_description,
  .get_size           = vdi_get_size,
  .can_write          = vdi_can_write,
  .can_multi_conn     = vdi_can_multi_conn,
  .block_size         = vdi_block_size,
  .can_flush          = vdi_can_flush,
  .can_fua            = vdi_can_fua,
  .can_trim           = vdi_can_trim,
  .can_zero           = vdi_can_zero,
  .can_fast_zero      = vdi_can_fast_zero,
  .can_extents        = vdi_can_extents,
  .pread              = vdi_pread,
  .pwrite             = vdi_pwrite,
  .zero               = vdi_zero,
  .trim               = vdi_trim,
  .flush              = vdi_flush,
  .extents            = vdi_extents,
  .errno_is_preserved = 1,
};

NBDKIT_REGISTER_PLUGIN (plugin)
