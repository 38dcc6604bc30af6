/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* nbdkit vdidiff filter: what lies below becomes an immutable base,
 * and every write goes into a differencing layer, a real VirtualBox
 * differencing VDI on disk.
 *
 * The layer is a libvdi chain of one image whose FREE blocks read
 * from the plugin below (struct vdi_below), so reads, writes, zeroing
 * and extents are libvdi's, the same code the vdi plugin runs.  The
 * plugin below is always opened read-only.
 *
 * With vdidiff=FILE there is one layer for the whole server, opened
 * (or created) before the first client connects.  With
 * vdidiff-dir=DIR each export name has its own layer DIR/NAME.vdi,
 * open while connections use it: opened by the first, closed (and so
 * flushed and unlocked) by the last, at most vdidiff-max-open at once.
 *
 * Under nbdkit -r nothing is created or changed: a layer that exists
 * is opened read-only (an autoreset one is not even read), and where
 * there is none the plugin below is served as it is.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <unistd.h>
#include <libgen.h>
#include <search.h>
#include <limits.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/resource.h>

#define NBDKIT_API_VERSION 2
#include <nbdkit-filter.h>

#include "cleanup.h"
#include "ispowerof2.h"

#include "libvdi.h"
#include "vdi-nbdkit.h"

/* -D vdidiff.verbose=1: say how each layer was opened. */
NBDKIT_DLL_PUBLIC int vdidiff_debug_verbose;

/* Configuration. */
static char *diff_file;                 /* vdidiff= */
static char *diff_dir;                  /* vdidiff-dir= */
static bool autoreset;                  /* vdidiff-autoreset= */
static uint32_t block_size = 1024 * 1024; /* vdidiff-block-size= */
static struct vdi_uuid parent_uuid;     /* vdidiff-parent-uuid= */
static bool parent_uuid_set;
static unsigned max_open;               /* vdidiff-max-open=, or 0 */
static bool read_only;                  /* nbdkit -r */

/* nbdkit's pid file and Unix socket (absolute), which nbdkit leaves
 * behind when it exits: removed if vdidiff= is refused after the fork.
 */
static char *pidfile;
static char *unix_socket;
/* vdidiff= was refused after the fork, under --run: every client is
 * refused (see refuse_to_serve).
 */
static bool refused;

/* One differencing layer.  chain is NULL where nbdkit -r serves the
 * plugin below as it is: no layer file, or an autoreset one.
 */
struct layer {
  char *path;
  struct vdi_chain *chain;
};

/* vdidiff-dir=: an export in the table of open layers, from the
 * first connection to it until its last one has closed the layer.
 * While layer is NULL (being opened) or closing is set (being
 * flushed and closed, its file still locked), a connection to the
 * export waits for that to end rather than use the layer or open the
 * file a second time.
 */
struct export {
  char *name;                   /* the key: NAME of DIR/NAME.vdi */
  struct layer *layer;
  unsigned users;               /* connections using the layer */
  bool closing;
};

/* The layer of vdidiff=, or the exports of vdidiff-dir= in a binary
 * tree (tsearch) by name.  layers_lock guards the tree and the
 * fields of every struct export but its layer, which is opened and
 * closed without the lock so that other exports keep opening;
 * layers_changed is signalled when an export's layer is opened or
 * closed, or fails to open.
 */
static struct layer *single_layer;
static struct vdi_image *early_image;   /* vdidiff= until after_fork */
static void *exports;
static unsigned nr_exports;             /* open, opening or closing */
static unsigned nr_closing;             /* of which closing */
static pthread_mutex_t layers_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t layers_changed = PTHREAD_COND_INITIALIZER;
/* vdidiff-autoreset=true: the names of the exports whose layer this
 * run has reset or created, so that reopening a layer keeps what was
 * written since nbdkit started.  Guarded by layers_lock.
 */
static void *reset_exports;

struct handle {
  char *exportname;
  struct layer *layer;
  struct export *export;        /* vdidiff-dir=, until released */
};

static void
vdidiff_load (void)
{
  vdi_nbdkit_load ("vdidiff");
}

static void
layer_free (struct layer *layer)
{
  if (layer) {
    vdi_chain_free (layer->chain);
    free (layer->path);
    free (layer);
  }
}

static void
export_free (void *opaque)
{
  struct export *export = opaque;

  layer_free (export->layer);
  free (export->name);
  free (export);
}

static int
export_compare (const void *a, const void *b)
{
  const struct export *x = a, *y = b;

  return strcmp (x->name, y->name);
}

static int
name_compare (const void *a, const void *b)
{
  return strcmp (a, b);
}

/* nbdkit calls no .finalize or .close for the connections that are
 * still open when it exits: their layers are closed here.
 */
static void
vdidiff_unload (void)
{
  vdi_image_close (early_image);
  layer_free (single_layer);
  tdestroy (exports, export_free);
  tdestroy (reset_exports, free);
  free (diff_file);
  free (diff_dir);
  free (pidfile);
  free (unix_socket);
}

static int
vdidiff_config (nbdkit_next_config *next, nbdkit_backend *nxdata,
                const char *key, const char *value)
{
  if (strcmp (key, "vdidiff") == 0) {
    free (diff_file);
    diff_file = nbdkit_absolute_path (value);
    return diff_file ? 0 : -1;
  }
  else if (strcmp (key, "vdidiff-dir") == 0) {
    free (diff_dir);
    diff_dir = nbdkit_realpath (value);
    return diff_dir ? 0 : -1;
  }
  else if (strcmp (key, "vdidiff-autoreset") == 0) {
    int r = nbdkit_parse_bool (value);

    if (r == -1)
      return -1;
    autoreset = r;
    return 0;
  }
  else if (strcmp (key, "vdidiff-block-size") == 0) {
    int64_t r = nbdkit_parse_size (value);

    if (r == -1)
      return -1;
    if (!is_power_of_2 (r) || r < VDI_MIN_BLOCK_SIZE ||
        r > VDI_MAX_BLOCK_SIZE) {
      nbdkit_error ("vdidiff-block-size must be a power of 2 "
                    "between 128K and 128M");
      return -1;
    }
    block_size = r;
    return 0;
  }
  else if (strcmp (key, "vdidiff-parent-uuid") == 0) {
    if (vdi_uuid_parse (value, &parent_uuid) == -1 ||
        vdi_uuid_is_null (&parent_uuid)) {
      nbdkit_error ("vdidiff-parent-uuid: '%s' is not a UUID", value);
      return -1;
    }
    parent_uuid_set = true;
    return 0;
  }
  else if (strcmp (key, "vdidiff-max-open") == 0) {
    if (nbdkit_parse_unsigned ("vdidiff-max-open", value, &max_open) == -1)
      return -1;
    if (max_open == 0) {
      nbdkit_error ("vdidiff-max-open must be at least 1");
      return -1;
    }
    return 0;
  }
  else
    return next (nxdata, key, value);
}

/* The server's pid file and socket as absolute paths: nbdkit may
 * change its folder when it forks.  "-U -" is nbdkit's own.
 */
static int
note_server_files (void)
{
  const char *p = vdi_nbdkit_server_option ("pidfile", 'P');
  const char *u = vdi_nbdkit_server_option ("unix", 'U');

  if (p && (pidfile = nbdkit_absolute_path (p)) == NULL)
    return -1;
  if (u && strcmp (u, "-") != 0 &&
      (unix_socket = nbdkit_absolute_path (u)) == NULL)
    return -1;
  return 0;
}

static int
vdidiff_config_complete (nbdkit_next_config_complete *next,
                         nbdkit_backend *nxdata)
{
  if ((diff_file == NULL) == (diff_dir == NULL)) {
    nbdkit_error ("the vdidiff filter needs exactly one of "
                  "vdidiff=<FILE.vdi> or vdidiff-dir=<DIR>");
    return -1;
  }
  if (max_open && diff_dir == NULL) {
    nbdkit_error ("vdidiff-max-open is for vdidiff-dir=<DIR>, "
                  "not vdidiff=<FILE.vdi>");
    return -1;
  }
  read_only = vdi_nbdkit_server_read_only ();
  if (diff_file && note_server_files () == -1)
    return -1;
  return next (nxdata);
}

#define vdidiff_config_help \
  "vdidiff=<FILE.vdi>          The differencing image (created if missing).\n" \
  "vdidiff-dir=<DIR>           One differencing image per export: DIR/NAME.vdi.\n" \
  "vdidiff-autoreset=true      Empty the differencing image at every start.\n" \
  "vdidiff-block-size=<SIZE>   Block size of new images (default 1M).\n" \
  "vdidiff-parent-uuid=<UUID>  Parent UUID of new images over a plugin other than vdi.\n" \
  "vdidiff-max-open=<N>        With vdidiff-dir: most images open at once\n" \
  "                            (default: from the descriptor limit, ulimit -n).\n" \
  "Debug flag (with -v):\n" \
  "-D vdidiff.verbose=1        Say how each layer was opened, created or reset,\n" \
  "                            and when one of vdidiff-dir is closed."

/* What the differencing image must link to: the top image of the vdi
 * plugin below (read back from its export description), else
 * vdidiff-parent-uuid=.  Returns false if nothing says.
 */
static bool
expected_parent (nbdkit_next *next, struct vdi_uuid *linkage,
                 struct vdi_uuid *parent_modify)
{
  const char *description = next->export_description (next);

  if (description &&
      vdi_description_parse (description, linkage, parent_modify) == 0)
    return true;
  memset (parent_modify, 0, sizeof *parent_modify);
  *linkage = parent_uuid;
  return parent_uuid_set;
}

static int
create_image (const char *path, uint64_t size, bool known_parent,
              const struct vdi_uuid *linkage,
              const struct vdi_uuid *parent_modify)
{
  struct vdi_header h;

  if (size % VDI_SECTOR_SIZE != 0) {
    nbdkit_error ("%s: cannot create a differencing image for a disk of "
                  "%" PRIu64 " bytes: VDI sizes are multiples of %d",
                  path, size, VDI_SECTOR_SIZE);
    return -1;
  }
  vdi_header_init_dynamic (&h, VDI_TYPE_DIFF, size, block_size);
  snprintf (h.comment, sizeof h.comment, "%s", VDI_VDIDIFF_COMMENT);
  if (vdi_uuid_generate (&h.uuid_create) == -1 ||
      vdi_uuid_generate (&h.uuid_modify) == -1)
    return -1;
  /* A differencing image must name a parent.  Over a plugin that
   * cannot tell us one, make one up: only this filter will open it.
   */
  if (known_parent) {
    h.uuid_linkage = *linkage;
    h.uuid_parent_modify = *parent_modify;
  }
  else if (vdi_uuid_generate (&h.uuid_linkage) == -1)
    return -1;
  return vdi_image_create (path, &h);
}

static int
check_differencing (const struct vdi_image *img, const char *path)
{
  const struct vdi_header *h = vdi_image_header (img);

  if (h->type != VDI_TYPE_DIFF) {
    nbdkit_error ("%s: is a %s image, not a differencing image",
                  path, vdi_type_name (h->type));
    return -1;
  }
  return 0;
}

/* Is img fit to be the layer over next: a differencing image of the
 * disk below (when known) and of its size?
 */
static int
check_layer_image (const struct vdi_image *img, const char *path,
                   bool known_parent, const struct vdi_uuid *linkage,
                   int64_t size)
{
  const struct vdi_header *h = vdi_image_header (img);
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];

  if (check_differencing (img, path) == -1)
    return -1;
  if (known_parent && !vdi_uuid_equal (&h->uuid_linkage, linkage)) {
    nbdkit_error ("%s: differencing image of parent %s, but the disk "
                  "below is %s", path, vdi_uuid_format (&h->uuid_linkage, a),
                  vdi_uuid_format (linkage, b));
    return -1;
  }
  if (vdi_header_virtual_size (h) != (uint64_t) size) {
    nbdkit_error ("%s: its size %" PRIu64 " differs from the size %"
                  PRIi64 " of the disk below",
                  path, vdi_header_virtual_size (h), size);
    return -1;
  }
  return 0;
}

/* Open (creating it if missing) the layer in path over next.  img is
 * the image if the caller has opened it already, or NULL; either way
 * it is the layer's, or closed on error.  With reset, an existing
 * layer is emptied (vdidiff-autoreset=).  Under -r a missing layer is
 * not created and an autoreset one is checked but not used, as once
 * reset it would read as the disk below: the layer has no chain then.
 */
static struct layer *
layer_open_reset (nbdkit_next *next, const char *path,
                  struct vdi_image *img, bool reset)
{
  struct vdi_uuid linkage, parent_modify;
  bool known_parent = expected_parent (next, &linkage, &parent_modify);
  int64_t size = next->get_size (next);
  struct layer *layer = NULL;
  const struct vdi_header *h;
  char a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];
  bool created = false;
  const bool hidden = autoreset && read_only;

  if (size == -1)
    goto err;
  if (img == NULL && access (path, F_OK) == -1) {
    if (read_only) {
      if (vdidiff_debug_verbose)
        nbdkit_debug ("%s: no differencing image: the disk below is "
                      "served as it is (read-only)", path);
      goto layer;
    }
    if (create_image (path, size, known_parent, &linkage, &parent_modify)
        == -1)
      goto err;
    created = true;
  }
  if (img == NULL) {
    img = vdi_image_open (path, read_only ? 0 : VDI_OPEN_WRITE);
    if (img == NULL)
      goto err;
  }
  if (check_layer_image (img, path, known_parent, &linkage, size) == -1)
    goto err;
  if (reset && !created && !read_only &&
      vdi_image_reset (img, known_parent ? &parent_modify : NULL) == -1)
    goto err;
  h = vdi_image_header (img);
  if (vdidiff_debug_verbose)
    nbdkit_debug ("%s: %s differencing image %s over parent %s%s", path,
                  created ? "created" : reset && !read_only ? "reset"
                  : "opened",
                  vdi_uuid_format (&h->uuid_create, a),
                  vdi_uuid_format (&h->uuid_linkage, b),
                  hidden ? ", served as if reset: the disk below "
                  "(read-only, so the file is not reset)" : "");
  if (hidden) {
    vdi_image_close (img);
    img = NULL;
  }

 layer:
  layer = calloc (1, sizeof *layer);
  if (layer == NULL) {
    nbdkit_error ("calloc: %m");
    goto err;
  }
  layer->path = strdup (path);
  if (layer->path == NULL) {
    nbdkit_error ("strdup: %m");
    goto err;
  }
  if (img) {
    layer->chain = vdi_layer_new (img);
    img = NULL;                 /* the chain's now, also on error */
    if (layer->chain == NULL)
      goto err;
  }
  return layer;

 err:
  layer_free (layer);
  vdi_image_close (img);
  return NULL;
}

static struct layer *
layer_open (nbdkit_next *next, const char *path, struct vdi_image *img)
{
  return layer_open_reset (next, path, img, autoreset);
}

/* Can differencing images be created in dir (under -r: read from
 * it)?  Sets errno if not.
 */
static int
usable_folder (const char *dir)
{
  struct stat st;

  if (stat (dir, &st) == -1)
    return -1;
  if (!S_ISDIR (st.st_mode)) {
    errno = ENOTDIR;
    return -1;
  }
  return read_only ? 0 : access (dir, W_OK | X_OK);
}

/* What an open layer of vdidiff-dir= costs in file descriptors: its
 * own, and those of the connection using it, the socket and the pair
 * of pipes that nbdkit opens for a connection served by several
 * threads.
 */
#define FDS_PER_LAYER 4
/* What the server keeps besides: stdio, listening sockets, the
 * plugin's images, a log, and the two descriptors that creating a
 * layer takes for a moment.
 */
#define FDS_RESERVED 64

/* The soft limit on descriptors (ulimit -n) as an unsigned. */
static unsigned
fd_limit (void)
{
  struct rlimit rl;

  if (getrlimit (RLIMIT_NOFILE, &rl) == -1 || rl.rlim_cur > UINT_MAX)
    return UINT_MAX;
  return rl.rlim_cur;
}

/* vdidiff-max-open's default: as many layers as the descriptor limit
 * serves, each with one connection.
 */
static unsigned
default_max_open (void)
{
  unsigned limit = fd_limit ();

  if (limit < FDS_RESERVED + FDS_PER_LAYER)
    return 1;
  return (limit - FDS_RESERVED) / FDS_PER_LAYER;
}

/* Everything that does not need the plugin below is checked here,
 * before nbdkit forks, so that a mistake stops nbdkit with an error
 * before it serves or starts a --run command: the folders, and an
 * existing layer of vdidiff=, which is opened (and locked) now.
 * Checking it against the plugin below has to wait for after_fork.
 */
static int
vdidiff_get_ready (int thread_model)
{
  CLEANUP_FREE char *dir = NULL;

  if (diff_dir) {
    if (usable_folder (diff_dir) == -1) {
      nbdkit_error ("%s: cannot keep differencing images in this "
                    "folder: %m", diff_dir);
      return -1;
    }
    if (max_open == 0)
      max_open = default_max_open ();
    nbdkit_debug ("vdidiff-dir: at most %u differencing images open at "
                  "once (vdidiff-max-open)", max_open);
    return 0;
  }

  if (access (diff_file, F_OK) == -1) {
    if (read_only)
      return 0;
    dir = strdup (diff_file);
    if (dir == NULL) {
      nbdkit_error ("strdup: %m");
      return -1;
    }
    if (usable_folder (dirname (dir)) == -1) {
      nbdkit_error ("%s: cannot create the differencing image: %s: %m",
                    diff_file, dir);
      return -1;
    }
    return 0;
  }
  early_image = vdi_image_open (diff_file, read_only ? 0 : VDI_OPEN_WRITE);
  if (early_image == NULL)
    return -1;
  if (check_differencing (early_image, diff_file) == -1) {
    vdi_image_close (early_image);
    early_image = NULL;
    return -1;
  }
  return 0;
}

/* The layer of vdidiff= was refused after nbdkit forked, when nbdkit
 * has already said it started.
 *
 * Under --run, the command may already be waiting in the socket's
 * queue, which the command's parent process keeps open: if nbdkit
 * exited, the command would wait for ever.  So nbdkit keeps serving,
 * and refuses every client (see vdidiff_prepare): the command fails
 * and --run exits with its status.
 *
 * Otherwise nbdkit exits with the error.  It leaves its pid file and
 * socket behind: remove them, so that nothing looks like a live
 * server.
 */
static int
refuse_to_serve (void)
{
  if (vdi_nbdkit_server_option ("run", 0)) {
    refused = true;
    return 0;
  }
  if (unix_socket)
    unlink (unix_socket);
  if (pidfile)
    unlink (pidfile);
  return -1;
}

static int
vdidiff_after_fork (nbdkit_backend *backend)
{
  nbdkit_next *next;

  if (diff_file == NULL)
    return 0;
  next = nbdkit_next_context_open (backend, 1, "", 1);
  if (next == NULL)
    return refuse_to_serve ();
  if (next->prepare (next) == -1) {
    nbdkit_next_context_close (next);
    return refuse_to_serve ();
  }
  single_layer = layer_open (next, diff_file, early_image);
  early_image = NULL;
  next->finalize (next);
  nbdkit_next_context_close (next);
  return single_layer ? 0 : refuse_to_serve ();
}

/* Say why a layer could not be opened when the cause is a lack of
 * file descriptors, and what to do (libvdi has said which call
 * failed).
 */
static void
explain_fd_shortage (const char *path, int err, unsigned open_layers)
{
  if (err == EMFILE)
    nbdkit_error ("%s: nbdkit has no file descriptor left (ulimit -n "
                  "is %u; differencing images open: %u, "
                  "vdidiff-max-open=%u): raise ulimit -n or lower "
                  "vdidiff-max-open", path, fd_limit (), open_layers,
                  max_open);
  else if (err == ENFILE)
    nbdkit_error ("%s: the system has no file descriptor left "
                  "(fs.file-max; differencing images open: %u): raise "
                  "fs.file-max or lower vdidiff-max-open", path,
                  open_layers);
}

/* Note that the layer of export name has been reset: without the
 * note, its next opening would empty it again, losing what this run
 * wrote.  Called with layers_lock held.
 */
static int
note_reset (const char *path, const char *name)
{
  char *copy = strdup (name);

  if (copy == NULL || tsearch (copy, &reset_exports, name_compare) == NULL) {
    nbdkit_error ("%s: cannot note that it was reset: %m", path);
    free (copy);
    return -1;
  }
  return 0;
}

/* Take the layer of export name for one connection with vdidiff-dir=,
 * opening it if this is the first.  Returns the export, with its
 * layer, or NULL after an error.
 */
static struct export *
export_acquire (nbdkit_next *next, const char *name)
{
  CLEANUP_FREE char *path = NULL;
  struct export key = { .name = (char *) name };
  struct export *export, **found;
  struct layer *layer;
  unsigned open_layers;
  bool reset;
  int err;

  if (strchr (name, '/') || name[0] == '.') {
    nbdkit_error ("export name '%s' cannot name a file in %s",
                  name, diff_dir);
    return NULL;
  }
  if (asprintf (&path, "%s/%s.vdi", diff_dir, name) == -1) {
    nbdkit_error ("asprintf: %m");
    return NULL;
  }

  pthread_mutex_lock (&layers_lock);
  for (;;) {
    found = tfind (&key, &exports, export_compare);
    if (found && (*found)->layer && !(*found)->closing) {
      export = *found;
      export->users++;
      pthread_mutex_unlock (&layers_lock);
      return export;
    }
    if (found == NULL && nr_exports < max_open)
      break;
    /* At the bound, a layer that is closing is about to make room. */
    if (found == NULL && nr_closing == 0) {
      open_layers = nr_exports;
      pthread_mutex_unlock (&layers_lock);
      nbdkit_error ("%s: not opened: %u differencing images are open at "
                    "once (vdidiff-max-open=%u), each for a client still "
                    "connected", path, open_layers, max_open);
      return NULL;
    }
    /* This export is opening or closing: wait for the end of it. */
    pthread_cond_wait (&layers_changed, &layers_lock);
  }

  /* The first connection: enter the export, then open its layer
   * without the lock.
   */
  export = calloc (1, sizeof *export);
  if (export == NULL || (export->name = strdup (name)) == NULL ||
      tsearch (export, &exports, export_compare) == NULL) {
    pthread_mutex_unlock (&layers_lock);
    nbdkit_error ("%s: out of memory: %m", path);
    if (export)
      free (export->name);
    free (export);
    return NULL;
  }
  export->users = 1;
  nr_exports++;
  reset = autoreset && !read_only &&
    tfind (name, &reset_exports, name_compare) == NULL;
  pthread_mutex_unlock (&layers_lock);

  errno = 0;
  layer = layer_open_reset (next, path, NULL, reset);
  err = errno;

  pthread_mutex_lock (&layers_lock);
  if (layer && reset && note_reset (path, name) == -1) {
    layer_free (layer);
    layer = NULL;
  }
  if (layer == NULL) {
    /* Forget the failure: the next connection tries again. */
    tdelete (export, &exports, export_compare);
    open_layers = --nr_exports;
  }
  else
    export->layer = layer;
  pthread_cond_broadcast (&layers_changed);
  pthread_mutex_unlock (&layers_lock);

  if (layer == NULL) {
    explain_fd_shortage (path, err, open_layers);
    export_free (export);
    return NULL;
  }
  return export;
}

/* A connection no longer uses the layer: the last one closes it,
 * which flushes it and drops its lock.
 */
static void
export_release (struct export *export)
{
  bool idle;

  pthread_mutex_lock (&layers_lock);
  if (--export->users > 0) {
    pthread_mutex_unlock (&layers_lock);
    return;
  }
  export->closing = true;
  nr_closing++;
  pthread_mutex_unlock (&layers_lock);

  if (vdidiff_debug_verbose)
    nbdkit_debug ("%s: closing: its last connection has ended",
                  export->layer->path);
  layer_free (export->layer);
  export->layer = NULL;

  pthread_mutex_lock (&layers_lock);
  tdelete (export, &exports, export_compare);
  idle = --nr_exports == 0;
  nr_closing--;
  pthread_cond_broadcast (&layers_changed);
  pthread_mutex_unlock (&layers_lock);
  export_free (export);

  /* The last clone is closed: give back the memory its clients used,
   * so that a server between bursts of clients is back near its size
   * at start.
   */
  if (idle)
    vdi_release_memory ();
}

static void
handle_release_layer (struct handle *h)
{
  if (h->export) {
    export_release (h->export);
    h->export = NULL;
    h->layer = NULL;
  }
}

static void *
vdidiff_open (nbdkit_next_open *next, nbdkit_context *context,
              int readonly, const char *exportname, int is_tls)
{
  struct handle *h;

  /* The plugin below is only ever read. */
  if (next (context, 1, exportname) == -1)
    return NULL;
  h = calloc (1, sizeof *h);
  if (h == NULL) {
    nbdkit_error ("calloc: %m");
    return NULL;
  }
  h->exportname = strdup (exportname);
  if (h->exportname == NULL) {
    nbdkit_error ("strdup: %m");
    free (h);
    return NULL;
  }
  return h;
}

/* A connection that was never prepared, or failed to, or was not
 * finalized, releases its layer here.
 */
static void
vdidiff_close (void *handle)
{
  struct handle *h = handle;

  handle_release_layer (h);
  free (h->exportname);
  free (h);
}

static int
vdidiff_prepare (nbdkit_next *next, void *handle, int readonly)
{
  struct handle *h = handle;
  int64_t size;

  if (refused) {
    nbdkit_error ("%s: nothing is served: the differencing image was "
                  "refused when nbdkit started", diff_file);
    return -1;
  }
  if (diff_file)
    h->layer = single_layer;
  else {
    h->export = export_acquire (next, *h->exportname ? h->exportname
                                : "default");
    if (h->export == NULL)
      return -1;
    h->layer = h->export->layer;
  }
  /* Every connection asks the plugin below for its size, also when
   * its layer was opened by an earlier connection: nbdkit checks the
   * reads of this connection against the size it learnt here (and
   * aborts on an assertion if it never learnt it).
   */
  size = next->get_size (next);
  if (size == -1)
    return -1;
  if (h->layer->chain &&
      (uint64_t) size != vdi_chain_size (h->layer->chain)) {
    nbdkit_error ("%s: the disk below is %" PRIi64 " bytes, "
                  "the differencing image %" PRIu64,
                  h->layer->path, size, vdi_chain_size (h->layer->chain));
    return -1;
  }
  return 0;
}

/* The layer is released as soon as the connection ends, before
 * nbdkit closes the client's socket: a client that waits for the
 * server to hang up knows that its layer has been flushed and closed.
 */
static int
vdidiff_finalize (nbdkit_next *next, void *handle)
{
  handle_release_layer (handle);
  return 0;
}

static int64_t
vdidiff_get_size (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;

  if (h->layer->chain == NULL)
    return next->get_size (next);
  return vdi_chain_size (h->layer->chain);
}

static const char *
vdidiff_export_description (nbdkit_next *next, void *handle)
{
  struct handle *h = handle;
  const char *below = next->export_description (next);

  if (h->layer->chain == NULL)
    return below;
  return nbdkit_printf_intern ("differencing layer %s over: %s",
                               h->layer->path, below ? below : "(plugin)");
}

/* Writes never reach the plugin, which may be read-only. */
static int
vdidiff_can_write (nbdkit_next *next, void *handle)
{
  return !read_only;
}

static int
vdidiff_can_flush (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
vdidiff_can_fua (nbdkit_next *next, void *handle)
{
  return NBDKIT_FUA_NATIVE;
}

static int
vdidiff_can_trim (nbdkit_next *next, void *handle)
{
  return 1;
}

static int
vdidiff_can_zero (nbdkit_next *next, void *handle)
{
  return NBDKIT_ZERO_NATIVE;
}

/* Zeroing whole blocks only writes map entries; requests that would
 * copy data up are refused when the client asks for a fast zero.
 */
static int
vdidiff_can_fast_zero (nbdkit_next *next, void *handle)
{
  return 1;
}

/* The layer's map says where data is; the plugin below is asked only
 * about the rest, so nbdkit must have asked it what it can do.
 */
static int
vdidiff_can_extents (nbdkit_next *next, void *handle)
{
  if (next->can_extents (next) == -1)
    return -1;
  return 1;
}

/* All connections share one layer per export. */
static int
vdidiff_can_multi_conn (nbdkit_next *next, void *handle)
{
  return 1;
}

/* The layer takes any size and alignment, but reads of FREE blocks
 * go to the plugin below with the client's offsets: keep its limits.
 */
static int
vdidiff_block_size (nbdkit_next *next, void *handle,
                    uint32_t *minimum, uint32_t *preferred, uint32_t *maximum)
{
  struct handle *h = handle;
  uint32_t layer_preferred;

  if (next->block_size (next, minimum, preferred, maximum) == -1)
    return -1;
  if (*minimum == 0) {          /* the plugin below has no limits */
    *minimum = 1;
    *preferred = 512;
    *maximum = 0xffffffff;
  }
  if (h->layer->chain == NULL)
    return 0;
  layer_preferred = vdi_nbdkit_preferred_block_size (h->layer->chain);
  if (layer_preferred > *preferred && layer_preferred <= *maximum)
    *preferred = layer_preferred;
  return 0;
}

static int
below_pread (void *opaque, void *buf, uint32_t count, uint64_t offset)
{
  nbdkit_next *next = opaque;
  int err = 0;

  if (next->pread (next, buf, count, offset, 0, &err) == -1) {
    errno = err;
    return -1;
  }
  return 0;
}

#define BELOW(next) (&(struct vdi_below) { below_pread, (next) })

static int
vdidiff_pread (nbdkit_next *next, void *handle,
               void *buf, uint32_t count, uint64_t offset,
               uint32_t flags, int *err)
{
  struct handle *h = handle;

  if (h->layer->chain == NULL)
    return next->pread (next, buf, count, offset, flags, err);
  if (vdi_chain_pread (h->layer->chain, buf, count, offset, BELOW (next))
      == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

static int
vdidiff_pwrite (nbdkit_next *next, void *handle,
                const void *buf, uint32_t count, uint64_t offset,
                uint32_t flags, int *err)
{
  struct handle *h = handle;

  if (vdi_chain_pwrite (h->layer->chain, buf, count, offset,
                        vdi_nbdkit_write_flags (flags), BELOW (next)) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

static int
vdidiff_zero (nbdkit_next *next, void *handle,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  struct handle *h = handle;

  if (vdi_chain_zero (h->layer->chain, count, offset,
                      vdi_nbdkit_write_flags (flags), BELOW (next)) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

/* Trimmed ranges read back as zeros, never as the base's data. */
static int
vdidiff_trim (nbdkit_next *next, void *handle,
              uint32_t count, uint64_t offset, uint32_t flags, int *err)
{
  return vdidiff_zero (next, handle, count, offset,
                       flags & NBDKIT_FLAG_FUA, err);
}

static int
vdidiff_flush (nbdkit_next *next, void *handle, uint32_t flags, int *err)
{
  struct handle *h = handle;

  if (h->layer->chain && vdi_chain_flush (h->layer->chain) == -1) {
    *err = errno;
    return -1;
  }
  return 0;
}

struct extents_data {
  nbdkit_next *next;
  struct nbdkit_extents *extents;
  int *err;
};

/* Add one run of the layer's map; ask the plugin below about runs
 * that are FREE in the layer.
 */
static int
add_extent (void *opaque, uint64_t offset, uint64_t length,
            enum vdi_extent_type type)
{
  struct extents_data *d = opaque;
  struct nbdkit_extents *below;
  size_t i;
  int r = 0;

  if (type != VDI_EXTENT_BELOW)
    return nbdkit_add_extent (d->extents, offset, length,
                              vdi_nbdkit_extent_type (type));

  below = nbdkit_extents_full (d->next, length, offset, 0, d->err);
  if (below == NULL)
    return -1;
  for (i = 0; r == 0 && i < nbdkit_extents_count (below); ++i) {
    struct nbdkit_extent e = nbdkit_get_extent (below, i);

    r = nbdkit_add_extent (d->extents, e.offset, e.length, e.type);
  }
  nbdkit_extents_free (below);
  return r;
}

static int
vdidiff_extents (nbdkit_next *next, void *handle,
                 uint32_t count, uint64_t offset, uint32_t flags,
                 struct nbdkit_extents *extents, int *err)
{
  struct handle *h = handle;
  struct extents_data d = { .next = next, .extents = extents, .err = err };
  int r;

  *err = 0;
  if (h->layer->chain == NULL)
    r = add_extent (&d, offset, count, VDI_EXTENT_BELOW);
  else
    r = vdi_chain_extents (h->layer->chain, offset, count,
                           flags & NBDKIT_FLAG_REQ_ONE, add_extent, &d);
  if (r == -1) {
    if (*err == 0)
      *err = errno;
    return -1;
  }
  return 0;
}

static struct nbdkit_filter filter = {
  .name               = "vdidiff",
  .longname           = "nbdkit VirtualBox differencing image filter",
  .load               = vdidiff_load,
  .unload             = vdidiff_unload,
  .config             = vdidiff_config,
  .config_complete    = vdidiff_config_complete,
  .config_help        = vdidiff_config_help,
  .get_ready          = vdidiff_get_ready,
  .after_fork         = vdidiff_after_fork,
  .open               = vdidiff_open,
  .close              = vdidiff_close,
  .prepare            = vdidiff_prepare,
  .finalize           = vdidiff_finalize,
  .get_size           = vdidiff_get_size,
  .export_description = vdidiff_export_description,
  .can_write          = vdidiff_can_write,
  .can_flush          = vdidiff_can_flush,
  .can_fua            = vdidiff_can_fua,
  .can_trim           = vdidiff_can_trim,
  .can_zero           = vdidiff_can_zero,
  .can_fast_zero      = vdidiff_can_fast_zero,
  .can_extents        = vdidiff_can_extents,
  .can_multi_conn     = vdidiff_can_multi_conn,
  .block_size         = vdidiff_block_size,
  .pread              = vdidiff_pread,
  .pwrite             = vdidiff_pwrite,
  .zero               = vdidiff_zero,
  .trim               = vdidiff_trim,
  .flush              = vdidiff_flush,
  .extents            = vdidiff_extents,
};

NBDKIT_REGISTER_FILTER (filter)
