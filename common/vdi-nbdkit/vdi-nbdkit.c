/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* What the vdi plugin and the vdidiff filter both need to put libvdi
 * into nbdkit.  This is the only code outside plugin/ and filter/
 * that knows both nbdkit and libvdi.
 */

#include <config.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#ifdef HAVE_MALLOPT
#include <malloc.h>
#endif

/* The plugin header declares the server's functions and flags that
 * filters share; nothing here is particular to plugins.
 */
#define NBDKIT_API_VERSION 2
#include <nbdkit-plugin.h>

#include "minmax.h"
#include "static-assert.h"

#include "vdi-nbdkit.h"

/* The plugin's or filter's name, for messages on stderr. */
static const char *component = "vdi";

static void
tell (const char *kind, const char *msg)
{
  fprintf (stderr, "nbdkit: %s: %s: %s\n", component, kind, msg);
}

void
vdi_nbdkit_tell (const char *kind, const char *fs, ...)
{
  va_list args;
  char *msg;

  va_start (args, fs);
  if (vasprintf (&msg, fs, args) == -1)
    msg = NULL;
  va_end (args);
  tell (kind, msg ? msg : fs);
  free (msg);
}

/* libvdi's messages: errors and debug go to nbdkit, warnings to
 * stderr (debug would hide them).
 */
static void
log_to_nbdkit (enum vdi_log_level level, const char *msg)
{
  switch (level) {
  case VDI_LOG_ERROR:
    nbdkit_error ("%s", msg);
    break;
  case VDI_LOG_WARNING:
    tell ("warning", msg);
    break;
  case VDI_LOG_DEBUG:
    nbdkit_debug ("%s", msg);
    break;
  }
}

/* nbdkit allocates a buffer for each request.  glibc gives large ones
 * their own mmap, starting 16 bytes into a page, until its threshold
 * has grown past them.  The kernel then copies page-aligned file data
 * (VDI data areas are aligned) to 16 bytes past the same page offset,
 * and on x86 that copy runs about three times slower (4K aliasing in
 * rep movsb): the first pass over a chain whose layers we made read at
 * a third of the speed of later passes.  So requests up to NBD's
 * 32 MiB come from the heap from the start.
 */
void
vdi_nbdkit_load (const char *name)
{
  component = name;
  vdi_set_log_function (log_to_nbdkit);
#ifdef HAVE_MALLOPT
  mallopt (M_MMAP_THRESHOLD, 32 * 1024 * 1024);
#endif
}

unsigned
vdi_nbdkit_write_flags (uint32_t flags)
{
  return (flags & NBDKIT_FLAG_FUA ? VDI_WRITE_FUA : 0) |
    (flags & NBDKIT_FLAG_FAST_ZERO ? VDI_ZERO_FAST : 0);
}

uint32_t
vdi_nbdkit_extent_type (enum vdi_extent_type type)
{
  return type == VDI_EXTENT_DATA ? 0
    : NBDKIT_EXTENT_HOLE | NBDKIT_EXTENT_ZERO;
}

/* A write of whole blocks of the top image never copies data up, and
 * large reads are served in one pread where the blocks lie together.
 * NBD wants a power of two between 512 bytes and 32 MiB; VDI block
 * sizes are powers of two of at least 128 KiB, but may be larger than
 * 32 MiB.
 */
uint32_t
vdi_nbdkit_preferred_block_size (const struct vdi_chain *chain)
{
  STATIC_ASSERT (VDI_MIN_BLOCK_SIZE >= 512, vdi_blocks_fit_nbd_minimum);
  return MIN (vdi_image_header (vdi_chain_image (chain, 0))->block_size,
              UINT32_C (32 * 1024 * 1024));
}

/* What the server's command line says that nbdkit 1.32 tells neither
 * plugins nor filters before the first connection: whether it serves
 * read-only (-r), and which filters are stacked.  A server that will
 * write must lock its image at start, and one that will not must
 * create nothing, so both need -r before any client comes.
 *
 * nbdkit parses its options with getopt_long, which takes them
 * anywhere up to "--", also after the plugin name and its parameters
 * ("nbdkit vdi disk.vdi -r"), unless POSIXLY_CORRECT is set; this
 * reads /proc/self/cmdline the same way.  If it cannot be read, the
 * answer is "not read-only, no filters", which is how the plugin and
 * the filter behaved before they asked.
 */
static struct {
  bool read;
  char *args;                   /* the raw command line, or NULL */
  size_t len;
} server;

/* Whether option (len bytes, as each_option gives it) is name. */
static bool
option_is (const char *option, size_t len, const char *name)
{
  return strlen (name) == len && strncmp (option, name, len) == 0;
}

/* Read once, at the first question: all come while nbdkit starts. */
static void
read_server_options (void)
{
  const size_t size = 1 << 16;
  FILE *fp;

  if (server.read)
    return;
  server.read = true;
  fp = fopen ("/proc/self/cmdline", "re");
  if (fp == NULL)
    return;
  server.args = calloc (size + 1, 1);
  if (server.args)
    server.len = fread (server.args, 1, size, fp);
  fclose (fp);
}

/* nbdkit's options that take an argument. */
static bool
short_option_takes_argument (char c)
{
  return strchr ("DegiPptuU", c) != NULL;
}

static bool
long_option_takes_argument (const char *name, size_t len)
{
  static const char *const names[] = {
    "debug", "export", "export-name", "exportname", "filter", "group",
    "ipaddr", "log", "mask-handshake", "pidfile", "port", "run",
    "selinux-label", "threads", "tls", "tls-certificates", "tls-psk",
    "unix", "user", NULL
  };
  size_t i;

  for (i = 0; names[i]; ++i)
    if (option_is (name, len, names[i]))
      return true;
  return false;
}

/* Call fn for every option, with its argument (or NULL).  Short
 * options come one at a time, as "-r".
 */
static void
each_option (void (*fn) (const char *option, size_t len, const char *arg,
                         void *opaque),
             void *opaque)
{
  const bool in_order = getenv ("POSIXLY_CORRECT") != NULL;
  const char *end, *arg;

  read_server_options ();
  if (server.args == NULL)
    return;
  end = server.args + server.len;
  /* Skip argv[0]. */
  arg = server.args + strnlen (server.args, server.len) + 1;
  while (arg < end) {
    const char *next = arg + strlen (arg) + 1;
    const char *value = next < end ? next : NULL;

    if (strcmp (arg, "--") == 0)
      return;
    if (arg[0] != '-' || arg[1] == '\0') {
      /* The plugin, or one of its parameters. */
      if (in_order)
        return;
    }
    else if (arg[1] == '-') {
      const char *name = arg + 2;
      const char *equals = strchr (name, '=');
      size_t len = equals ? (size_t) (equals - name) : strlen (name);

      if (equals)
        fn (name, len, equals + 1, opaque);
      else if (long_option_takes_argument (name, len)) {
        fn (name, len, value, opaque);
        next = value ? value + strlen (value) + 1 : end;
      }
      else
        fn (name, len, NULL, opaque);
    }
    else {
      const char *c;

      for (c = arg + 1; *c; ++c) {
        if (!short_option_takes_argument (*c)) {
          fn (c, 1, NULL, opaque);
          continue;
        }
        if (c[1])
          fn (c, 1, c + 1, opaque);
        else {
          fn (c, 1, value, opaque);
          next = value ? value + strlen (value) + 1 : end;
        }
        break;
      }
    }
    arg = next;
  }
}

static void
note_read_only (const char *option, size_t len, const char *arg, void *opaque)
{
  bool *read_only = opaque;

  if (option_is (option, len, "r") || option_is (option, len, "readonly") ||
      option_is (option, len, "read-only"))
    *read_only = true;
}

bool
vdi_nbdkit_server_read_only (void)
{
  bool read_only = false;

  each_option (note_read_only, &read_only);
  return read_only;
}

struct option_search {
  const char *long_name;
  char short_name;
  const char *arg;
};

static void
note_option (const char *option, size_t len, const char *arg, void *opaque)
{
  struct option_search *search = opaque;

  if (arg &&
      ((len == 1 && search->short_name && *option == search->short_name) ||
       option_is (option, len, search->long_name)))
    search->arg = arg;
}

const char *
vdi_nbdkit_server_option (const char *long_name, char short_name)
{
  struct option_search search = {
    .long_name = long_name, .short_name = short_name
  };

  each_option (note_option, &search);
  return search.arg;
}

struct filter_search {
  const char *name;
  bool found;
};

/* --filter=NAME, or the filter's .so path. */
static void
note_filter (const char *option, size_t len, const char *arg, void *opaque)
{
  struct filter_search *search = opaque;
  const char *base;
  char *so;

  if (arg == NULL || !option_is (option, len, "filter"))
    return;
  base = strrchr (arg, '/');
  base = base ? base + 1 : arg;
  if (strcmp (base, search->name) == 0)
    search->found = true;
  else if (asprintf (&so, "nbdkit-%s-filter.so", search->name) != -1) {
    if (strcmp (base, so) == 0)
      search->found = true;
    free (so);
  }
}

bool
vdi_nbdkit_filter_stacked (const char *name)
{
  struct filter_search search = { .name = name };

  each_option (note_filter, &search);
  return search.found;
}
