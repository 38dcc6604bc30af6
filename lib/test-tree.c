/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Folder trees of small images for the unit tests of chains and
 * merges (see test-tree.h).
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "test-common.h"
#include "test-tree.h"

/* The folder tree of the current test. */
char *top_dir;

void
dir_make (void)
{
  const char *tmp = getenv ("TMPDIR");

  if (tmp == NULL || *tmp == '\0')
    tmp = "/tmp";
  free (top_dir);
  if (asprintf (&top_dir, "%s/test-vdi-tree-XXXXXX", tmp) == -1 ||
      mkdtemp (top_dir) == NULL) {
    perror ("mkdtemp");
    exit (EXIT_FAILURE);
  }
  /* The scanner reports folders through realpath: use that form. */
  {
    char *real = realpath (top_dir, NULL);

    assert (real != NULL);
    free (top_dir);
    top_dir = real;
  }
}

static int
remove_one (const char *path, const struct stat *st, int flag,
            struct FTW *ftw)
{
  remove (path);
  return 0;
}

void
dir_remove (void)
{
  if (top_dir) {
    nftw (top_dir, remove_one, 16, FTW_DEPTH | FTW_PHYS);
    free (top_dir);
    top_dir = NULL;
  }
}

/* top_dir/rel, in a static buffer (one of a few in turn). */
const char *
at (const char *rel)
{
  static char bufs[8][PATH_MAX];
  static unsigned next;
  char *buf = bufs[next++ % 8];

  snprintf (buf, PATH_MAX, "%s/%s", top_dir, rel);
  return buf;
}

void
mkdirs (const char *rel)
{
  char path[PATH_MAX], *p;

  snprintf (path, sizeof path, "%s/%s", top_dir, rel);
  for (p = path + strlen (top_dir) + 1; *p; ++p) {
    if (*p == '/') {
      *p = '\0';
      mkdir (path, 0755);
      *p = '/';
    }
  }
  mkdir (path, 0755);
}

/* A UUID made from a number (never null). */
void
uuid_n (struct vdi_uuid *u, unsigned n)
{
  unsigned i;

  for (i = 0; i < 16; ++i)
    u->bytes[i] = 0x40 + i;
  u->bytes[12] = n >> 24;
  u->bytes[13] = n >> 16;
  u->bytes[14] = n >> 8;
  u->bytes[15] = n;
}

/* A base image number n of blocks blocks of block_size bytes: create
 * UUID n, modify UUID n + 100000.
 */
void
img_init (struct img *im, unsigned n, uint32_t block_size, uint32_t blocks,
          const char *pattern)
{
  test_header_init (&im->h, (uint64_t) blocks * block_size, block_size, n);
  uuid_n (&im->h.uuid_create, n);
  uuid_n (&im->h.uuid_modify, n + 100000);
  im->pattern = pattern;
  assert (strlen (pattern) == blocks);
}

void
img_base (struct img *im, unsigned n, uint32_t blocks, const char *pattern)
{
  img_init (im, n, BS, blocks, pattern);
}

/* A differencing child, number n, of parent. */
void
img_child (struct img *im, unsigned n, const struct img *parent,
           const char *pattern)
{
  img_base (im, n, parent->h.blocks, pattern);
  im->h.type = VDI_TYPE_DIFF;
  im->h.uuid_linkage = parent->h.uuid_create;
  im->h.uuid_parent_modify = parent->h.uuid_modify;
}

/* Write the image at top_dir/rel (its folders made as needed).  Data
 * blocks get slots in order, filled with the low byte of the create
 * UUID (the image number).
 */
void
img_write (struct img *im, const char *rel)
{
  uint32_t *map = malloc ((im->h.blocks + 1) * sizeof *map);
  uint8_t *slots;
  uint32_t i, n = 0;
  char *tmp, dir[PATH_MAX], *slash;

  assert (map != NULL);
  for (i = 0; i < im->h.blocks; ++i) {
    switch (im->pattern[i]) {
    case 'F': map[i] = VDI_BLOCK_FREE; break;
    case 'Z': map[i] = VDI_BLOCK_ZERO; break;
    case 'D': map[i] = n++; break;
    default: abort ();
    }
  }
  im->h.blocks_allocated = n;
  slots = malloc ((size_t) n * im->h.block_size + 1);
  assert (slots != NULL);
  memset (slots, im->h.uuid_create.bytes[15], (size_t) n * im->h.block_size);

  snprintf (dir, sizeof dir, "%s", rel);
  slash = strrchr (dir, '/');
  if (slash) {
    *slash = '\0';
    mkdirs (dir);
  }
  tmp = test_write_image (&im->h, map, slots, n, 0);
  assert (tmp != NULL);
  if (rename (tmp, at (rel)) == -1) {
    fprintf (stderr, "rename %s %s: %m\n", tmp, at (rel));
    abort ();
  }
  free (map);
  free (slots);
}

struct vdi_image *
open_img (const char *rel)
{
  struct vdi_image *img = vdi_image_open (at (rel), 0);

  CU_ASSERT_PTR_NOT_NULL_FATAL (img);
  return img;
}

/* Read block b through the chain and return its first byte, after
 * checking that the whole block holds that byte.
 */
int
block_byte (struct vdi_chain *chain, uint32_t b)
{
  static uint8_t buf[BS];
  uint32_t i;

  CU_ASSERT_EQUAL_FATAL (vdi_chain_pread (chain, buf, BS, (uint64_t) b * BS,
                                          NULL), 0);
  for (i = 1; i < BS; ++i)
    if (buf[i] != buf[0])
      return -1;
  return buf[0];
}

uint8_t *
slurp (const char *rel, size_t *len)
{
  FILE *fp = fopen (at (rel), "r");
  uint8_t *buf;
  long size;

  CU_ASSERT_PTR_NOT_NULL_FATAL (fp);
  CU_ASSERT_EQUAL_FATAL (fseek (fp, 0, SEEK_END), 0);
  size = ftell (fp);
  CU_ASSERT_FATAL (size >= 0);
  rewind (fp);
  buf = malloc (size + 1);
  CU_ASSERT_PTR_NOT_NULL_FATAL (buf);
  CU_ASSERT_EQUAL_FATAL (fread (buf, 1, size, fp), (size_t) size);
  fclose (fp);
  *len = size;
  return buf;
}

bool
same_file (const char *rel, const uint8_t *buf, size_t len)
{
  size_t now_len;
  uint8_t *now = slurp (rel, &now_len);
  bool same = now_len == len && memcmp (now, buf, len) == 0;

  free (now);
  return same;
}

void
assert_same_file (const char *rel, const uint8_t *before, size_t before_len)
{
  CU_ASSERT_TRUE (same_file (rel, before, before_len));
}

void
write_vbox (const char *rel, const char *disks)
{
  FILE *fp = fopen (at (rel), "w");

  CU_ASSERT_PTR_NOT_NULL_FATAL (fp);
  fprintf (fp,
           "<?xml version=\"1.0\"?>\n"
           "<VirtualBox xmlns=\"http://www.virtualbox.org/\" "
           "version=\"1.19-linux\">\n"
           " <Machine uuid=\"{5eed0000-0000-4000-8000-000000000001}\" "
           "name=\"M\">\n"
           "  <MediaRegistry><HardDisks>\n%s\n"
           "  </HardDisks></MediaRegistry>\n"
           " </Machine>\n"
           "</VirtualBox>\n", disks);
  fclose (fp);
}
