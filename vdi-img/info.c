/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* vdi-img info: what the header says, how the blocks are used and,
 * with --chain, every image of the chain, for people or as JSON in
 * the style of "qemu-img info --output=json".
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <getopt.h>
#include <sys/stat.h>

#include "libvdi.h"

#include "vdi-img.h"

/* What info prints about one image. */
struct image_info {
  const struct vdi_image *img;
  const char *backing;          /* the parent's file (--chain), or NULL */
  uint32_t blocks_data, blocks_zero, blocks_free;
  uint64_t file_size;           /* st_size */
  uint64_t actual_size;         /* the space it takes on disk */
};

static int
get_image_info (const struct vdi_image *img, const char *backing,
                struct image_info *info)
{
  const struct vdi_header *h = vdi_image_header (img);
  struct stat st;
  uint32_t i;

  memset (info, 0, sizeof *info);
  info->img = img;
  info->backing = backing;
  for (i = 0; i < h->blocks; ++i) {
    const uint32_t entry = vdi_image_map_entry (img, i);

    if (entry == VDI_BLOCK_FREE)
      info->blocks_free++;
    else if (entry == VDI_BLOCK_ZERO)
      info->blocks_zero++;
    else
      info->blocks_data++;
  }
  if (fstat (vdi_image_fd (img), &st) == -1) {
    fprintf (stderr, "vdi-img: %s: fstat: %m\n", vdi_image_filename (img));
    return -1;
  }
  info->file_size = st.st_size;
  info->actual_size = (uint64_t) st.st_blocks * 512;
  return 0;
}

/* Human output. */

static void
print_size (const char *label, uint64_t n)
{
  char buf[32];

  printf ("%s: %s (%" PRIu64 " bytes)\n",
          label, vdi_human_size (n, buf, sizeof buf), n);
}

/* Text from the header, with control characters and backslashes
 * escaped so that it stays on its line.
 */
static void
print_text (const char *label, const char *s)
{
  printf ("%s:%s", label, *s ? " " : "");
  for (; *s; ++s) {
    const unsigned char c = *s;

    if (c == '\\')
      printf ("\\\\");
    else if (c == '\n')
      printf ("\\n");
    else if (c == '\t')
      printf ("\\t");
    else if (c < 0x20 || c == 0x7f)
      printf ("\\x%02x", c);
    else
      putchar (c);
  }
  putchar ('\n');
}

static void
print_uuid (const char *label, const struct vdi_uuid *uuid)
{
  char buf[VDI_UUID_STRLEN];

  printf ("%s: %s\n", label, vdi_uuid_format (uuid, buf));
}

static void
print_human (const struct image_info *info)
{
  const struct vdi_header *h = vdi_image_header (info->img);
  const uint64_t virtual_size = vdi_header_virtual_size (h);

  printf ("image: %s\n", vdi_image_filename (info->img));
  printf ("file format: vdi\n");
  print_size ("virtual size", virtual_size);
  if (h->disk_size != virtual_size)
    printf ("disk size in the header: %" PRIu64 " bytes "
            "(rounded down to a sector)\n", h->disk_size);
  print_size ("file size", info->file_size);
  print_size ("actual size", info->actual_size);
  printf ("VDI version: %" PRIu32 ".%" PRIu32 "\n",
          VDI_VERSION_MAJOR (h->version), h->version & 0xffff);
  printf ("image type: %s\n", vdi_type_name (h->type));
  printf ("header size: %" PRIu32 "\n", h->header_size);
  print_size ("block size", h->block_size);
  printf ("block extra: %" PRIu32 "\n", h->block_extra);
  printf ("blocks: %" PRIu32 "\n", h->blocks);
  printf ("blocks allocated: %" PRIu32 "\n", h->blocks_allocated);
  printf ("block map offset: %" PRIu32 "\n", h->blocks_offset);
  printf ("data offset: %" PRIu32 "\n", h->data_offset);
  print_text ("comment", h->comment);
  print_uuid ("UUID", &h->uuid_create);
  print_uuid ("modify UUID", &h->uuid_modify);
  print_uuid ("parent UUID", &h->uuid_linkage);
  print_uuid ("parent modify UUID", &h->uuid_parent_modify);
  printf ("blocks with data: %" PRIu32 "\n", info->blocks_data);
  printf ("blocks zero: %" PRIu32 "\n", info->blocks_zero);
  printf ("blocks free: %" PRIu32 "\n", info->blocks_free);
  if (info->backing)
    printf ("backing file: %s\n", info->backing);
}

/* JSON output. */

/* The length of the valid UTF-8 sequence that starts at s (whose
 * first byte is 0x80 or above), or 0 if it is not one.  The NUL at
 * the end is not a continuation byte, so this never reads past it.
 */
static size_t
utf8_sequence_length (const unsigned char *s)
{
  uint32_t c;
  size_t n, i;

  if (s[0] >= 0xc2 && s[0] <= 0xdf) {
    n = 2;
    c = s[0] & 0x1f;
  }
  else if (s[0] >= 0xe0 && s[0] <= 0xef) {
    n = 3;
    c = s[0] & 0x0f;
  }
  else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
    n = 4;
    c = s[0] & 0x07;
  }
  else
    return 0;
  for (i = 1; i < n; ++i) {
    if ((s[i] & 0xc0) != 0x80)
      return 0;
    c = (c << 6) | (s[i] & 0x3f);
  }
  /* Overlong forms, surrogates and code points past Unicode. */
  if ((n == 3 && c < 0x800) || (n == 4 && c < 0x10000) ||
      (c >= 0xd800 && c <= 0xdfff) || c > 0x10ffff)
    return 0;
  return n;
}

/* A JSON string.  Header text and file names are bytes, not always
 * UTF-8: a byte that is not part of valid UTF-8 becomes U+FFFD.
 */
static void
json_string (const char *str)
{
  const unsigned char *s = (const unsigned char *) str;

  putchar ('"');
  while (*s) {
    size_t n;

    switch (*s) {
    case '"':  printf ("\\\""); break;
    case '\\': printf ("\\\\"); break;
    case '\b': printf ("\\b"); break;
    case '\f': printf ("\\f"); break;
    case '\n': printf ("\\n"); break;
    case '\r': printf ("\\r"); break;
    case '\t': printf ("\\t"); break;
    default:
      if (*s < 0x20 || *s == 0x7f)
        printf ("\\u%04x", *s);
      else if (*s < 0x80)
        putchar (*s);
      else if ((n = utf8_sequence_length (s)) > 0) {
        fwrite (s, 1, n, stdout);
        s += n;
        continue;
      }
      else
        printf ("\\ufffd");
    }
    s++;
  }
  putchar ('"');
}

/* The members of one object, each on its line after indent. */
struct json_object {
  const char *indent;
  bool first;
};

static void
json_key (struct json_object *o, const char *key)
{
  printf ("%s\n%s    \"%s\": ", o->first ? "" : ",", o->indent, key);
  o->first = false;
}

static void
json_uint (struct json_object *o, const char *key, uint64_t v)
{
  json_key (o, key);
  printf ("%" PRIu64, v);
}

static void
json_str (struct json_object *o, const char *key, const char *v)
{
  json_key (o, key);
  json_string (v);
}

static void
json_uuid (struct json_object *o, const char *key, const struct vdi_uuid *u)
{
  char buf[VDI_UUID_STRLEN];

  json_str (o, key, vdi_uuid_format (u, buf));
}

static void
print_json (const struct image_info *info, const char *indent)
{
  const struct vdi_header *h = vdi_image_header (info->img);
  struct json_object o = { .indent = indent, .first = true };
  char version[32];

  snprintf (version, sizeof version, "%" PRIu32 ".%" PRIu32,
            VDI_VERSION_MAJOR (h->version), h->version & 0xffff);

  printf ("%s{", indent);
  json_uint (&o, "virtual-size", vdi_header_virtual_size (h));
  json_str (&o, "filename", vdi_image_filename (info->img));
  json_uint (&o, "cluster-size", h->block_size);
  json_str (&o, "format", "vdi");
  json_uint (&o, "actual-size", info->actual_size);
  if (info->backing)
    json_str (&o, "backing-filename", info->backing);
  json_str (&o, "vdi-version", version);
  json_str (&o, "image-type", vdi_type_name (h->type));
  json_uint (&o, "file-size", info->file_size);
  json_uint (&o, "block-extra", h->block_extra);
  json_uint (&o, "map-offset", h->blocks_offset);
  json_uint (&o, "data-offset", h->data_offset);
  json_uuid (&o, "uuid", &h->uuid_create);
  json_uuid (&o, "modify-uuid", &h->uuid_modify);
  json_uuid (&o, "parent-uuid", &h->uuid_linkage);
  json_uuid (&o, "parent-modify-uuid", &h->uuid_parent_modify);
  json_uint (&o, "blocks", h->blocks);
  json_uint (&o, "blocks-allocated", h->blocks_allocated);
  json_uint (&o, "blocks-data", info->blocks_data);
  json_uint (&o, "blocks-zero", info->blocks_zero);
  json_uint (&o, "blocks-free", info->blocks_free);
  json_str (&o, "comment", h->comment);
  printf ("\n%s}", indent);
}

/* The command. */

enum output { OUTPUT_HUMAN, OUTPUT_JSON };

/* Print the images top to base; with as_array, as a JSON array. */
static int
print_images (struct vdi_image *const *images, size_t n,
              enum output output, bool as_array)
{
  struct image_info info;
  size_t i;

  if (as_array)
    printf ("[\n");
  for (i = 0; i < n; ++i) {
    const char *backing =
      i + 1 < n ? vdi_image_filename (images[i + 1]) : NULL;

    if (get_image_info (images[i], backing, &info) == -1)
      return -1;
    if (output == OUTPUT_HUMAN) {
      if (i > 0)
        printf ("\n");
      print_human (&info);
    }
    else {
      print_json (&info, as_array ? "    " : "");
      printf ("%s\n", as_array && i + 1 < n ? "," : "");
    }
  }
  if (as_array)
    printf ("]\n");
  return 0;
}

enum {
  CHAIN_OPTION = 256,
  OUTPUT_OPTION,
  PARENT_DIR_OPTION,
};

static int
info_run (int argc, char *argv[])
{
  static const char short_options[] = "hv";
  static const struct option long_options[] = {
    { "chain",      no_argument,       NULL, CHAIN_OPTION },
    { "help",       no_argument,       NULL, 'h' },
    { "output",     required_argument, NULL, OUTPUT_OPTION },
    { "parent-dir", required_argument, NULL, PARENT_DIR_OPTION },
    { "verbose",    no_argument,       NULL, 'v' },
    { NULL }
  };
  struct option_list parent_dirs = { NULL, 0 };
  enum output output = OUTPUT_HUMAN;
  bool chain = false;
  const char *filename;
  int c, r;

  while ((c = getopt_long (argc, argv, short_options, long_options,
                           NULL)) != -1) {
    switch (c) {
    case CHAIN_OPTION:
      chain = true;
      break;
    case OUTPUT_OPTION:
      if (strcmp (optarg, "human") == 0)
        output = OUTPUT_HUMAN;
      else if (strcmp (optarg, "json") == 0)
        output = OUTPUT_JSON;
      else
        usage_error (&info_command,
                             "unknown output format '%s' "
                             "(it can be 'human' or 'json')", optarg);
      break;
    case PARENT_DIR_OPTION:
      option_list_add (&parent_dirs, optarg);
      break;
    default:
      command_common_option (&info_command, c);
    }
  }
  if (optind != argc - 1)
    usage_error (&info_command, "expected one IMAGE, got %d",
                         argc - optind);
  if (parent_dirs.n > 0 && !chain)
    usage_error (&info_command, "--parent-dir needs --chain");
  filename = argv[optind];

  if (chain) {
    const struct vdi_parent_search search = {
      .dirs = parent_dirs.values,
      .nr_dirs = parent_dirs.n,
      .dirs_option = "--parent-dir",
    };
    struct vdi_chain *ch = vdi_chain_open (filename, 0, &search);
    struct vdi_image **images;
    size_t i, depth;

    option_list_free (&parent_dirs);
    if (ch == NULL)
      return EXIT_FAILURE;
    depth = vdi_chain_depth (ch);
    images = malloc (depth * sizeof *images);
    if (images == NULL) {
      perror ("malloc");
      vdi_chain_free (ch);
      return EXIT_FAILURE;
    }
    for (i = 0; i < depth; ++i)
      images[i] = vdi_chain_image (ch, i);
    r = print_images (images, depth, output, output == OUTPUT_JSON);
    free (images);
    vdi_chain_free (ch);
  }
  else {
    struct vdi_image *img = vdi_image_open (filename, 0);

    if (img == NULL)
      return EXIT_FAILURE;
    r = print_images (&img, 1, output, false);
    vdi_image_close (img);
  }
  if (fflush (stdout) == EOF) {
    perror ("vdi-img: stdout");
    return EXIT_FAILURE;
  }
  return r == -1 ? EXIT_FAILURE : EXIT_SUCCESS;
}

const struct command info_command = {
  .name = "info",
  .synopsis = "info [--chain] [--output=human|json] "
  "[--parent-dir DIR]... IMAGE",
  .summary = "Print what the header of IMAGE says and how its blocks "
  "are used.",
  .help =
  "Options:\n"
  "  --chain             Also describe each parent of a differencing\n"
  "                      image, top to base, as a VDI chain is opened.\n"
  "  --output=human      Text for people (the default).\n"
  "  --output=json       JSON, in the style of qemu-img info; an array\n"
  "                      top to base with --chain.\n"
  "  --parent-dir DIR    With --chain, also look for parents in DIR\n"
  "                      (repeatable).\n"
  "  -h, --help          Print this help and exit.\n"
  "  -v, --verbose       Print libvdi's debug messages.\n"
  "\n"
  "Exit status: 0 on success, 1 on failure.\n",
  .run = info_run,
};
