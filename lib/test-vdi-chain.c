/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of how chains are put together: the link checks of
 * vdi_chain_new (vdi-chain.c) and the parent discovery of
 * vdi_chain_open (vdi-find.c), as vdi-format.md section 2.2 and the
 * design describe them.
 *
 * Images are small folder trees made with test-tree.h.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <inttypes.h>
#include <string.h>
#include <assert.h>
#include <errno.h>
#include <unistd.h>
#include <ftw.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/resource.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "vbox-registry.h"
#include "test-common.h"
#include "test-tree.h"

static struct vdi_chain *
chain_open (const char *rel, const char *const *dirs, size_t nr_dirs,
            const struct vbox_registry *reg)
{
  struct vdi_parent_search search = {
    .registry = reg, .dirs = dirs, .nr_dirs = nr_dirs,
    .dirs_option = "parent-dir=", .registry_option = "registry=",
  };

  return vdi_chain_open (at (rel), 0, &search);
}

static bool
ends_with (const char *s, const char *suffix)
{
  const size_t len = strlen (s), suffix_len = strlen (suffix);

  return len >= suffix_len && strcmp (s + len - suffix_len, suffix) == 0;
}

static char uuid_buf[VDI_UUID_STRLEN];

static const char *
uuid_str (const struct img *im)
{
  return vdi_uuid_format (&im->h.uuid_create, uuid_buf);
}

/* vdi_chain_new: link checks ------------------------------------------ */

/* Three images linked properly: no error, reads fall through FREE. */
static void
test_chain_new_good (void)
{
  struct img base, mid, top;
  struct vdi_image *images[3];
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 4, "DDDZ");
  img_child (&mid, 2, &base, "FDZF");
  img_child (&top, 3, &mid, "FFDF");
  img_write (&base, "base.vdi");
  img_write (&mid, "mid.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("mid.vdi");
  images[2] = open_img ("base.vdi");
  chain = vdi_chain_new (images, 3);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (test_log.warnings, 0);
  CU_ASSERT_EQUAL (vdi_chain_depth (chain), 3);
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 3);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 0);
  vdi_chain_free (chain);
  dir_remove ();
}

/* The child's parent UUID is not the parent's UUID. */
static void
test_chain_new_linkage_mismatch (void)
{
  struct img base, other, top;
  struct vdi_image *images[2];
  char want[VDI_UUID_STRLEN];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_base (&other, 2, 2, "DD");
  img_child (&top, 3, &other, "FD");
  img_write (&base, "base.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("base.vdi");
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 2));
  ASSERT_ONE_ERROR (at ("top.vdi"), "does not match");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, at ("base.vdi")));
  vdi_uuid_format (&other.h.uuid_create, want);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, want));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_str (&base)));
  dir_remove ();
}

/* A fixed image may only be the base. */
static void
test_chain_new_fixed_in_middle (void)
{
  struct img base, fixed, top;
  struct vdi_image *images[3];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&fixed, 2, &base, "DD");
  fixed.h.type = VDI_TYPE_FIXED;
  img_child (&top, 3, &fixed, "FD");
  img_write (&base, "base.vdi");
  img_write (&fixed, "fixed.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("fixed.vdi");
  images[2] = open_img ("base.vdi");
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 3));
  ASSERT_ONE_ERROR (at ("fixed.vdi"), "fixed");

  /* A fixed base is fine. */
  test_log_reset ();
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("fixed.vdi");
  {
    struct vdi_chain *chain = vdi_chain_new (images, 2);

    CU_ASSERT_PTR_NOT_NULL (chain);
    ASSERT_NO_ERROR ();
    if (chain) {
      CU_ASSERT_EQUAL (block_byte (chain, 0), 2);
      CU_ASSERT_EQUAL (block_byte (chain, 1), 3);
    }
    vdi_chain_free (chain);
  }
  dir_remove ();
}

/* The same image twice: a cycle. */
static void
test_chain_new_cycle (void)
{
  struct img a, b;
  struct vdi_image *images[3];

  dir_make ();
  img_base (&a, 1, 2, "FD");
  img_base (&b, 2, 2, "DF");
  a.h.type = b.h.type = VDI_TYPE_DIFF;
  a.h.uuid_linkage = b.h.uuid_create;
  a.h.uuid_parent_modify = b.h.uuid_modify;
  b.h.uuid_linkage = a.h.uuid_create;
  b.h.uuid_parent_modify = a.h.uuid_modify;
  img_write (&a, "a.vdi");
  img_write (&b, "b.vdi");
  images[0] = open_img ("a.vdi");
  images[1] = open_img ("b.vdi");
  images[2] = open_img ("a.vdi");
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 3));
  ASSERT_ONE_ERROR (at ("a.vdi"), "cycle");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_str (&a)));
  dir_remove ();
}

/* The base is a differencing image: its parent is missing. */
static void
test_chain_new_base_is_diff (void)
{
  struct img base, top;
  struct vdi_image *images[1];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&top, 2, &base, "FD");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 1));
  ASSERT_ONE_ERROR (at ("top.vdi"), "without its parent");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_str (&base)));
  dir_remove ();
}

/* A child that is not a differencing image (null parent UUID). */
static void
test_chain_new_child_not_diff (void)
{
  struct img base, top;
  struct vdi_image *images[2];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_base (&top, 2, 2, "FD");
  img_write (&base, "base.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("base.vdi");
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 2));
  ASSERT_ONE_ERROR (at ("top.vdi"), "not a differencing image");
  dir_remove ();
}

/* A stale parent modification UUID: a warning only.  A base with a
 * leftover parent UUID (VirtualBox 3.0-3.1): ignored.
 */
static void
test_chain_new_stale_and_leftover (void)
{
  struct img base, top;
  struct vdi_image *images[2];
  struct vdi_chain *chain;
  char stale[VDI_UUID_STRLEN];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  uuid_n (&base.h.uuid_linkage, 77);       /* leftover */
  img_child (&top, 2, &base, "FD");
  uuid_n (&top.h.uuid_parent_modify, 78);  /* stale */
  img_write (&base, "base.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("base.vdi");
  chain = vdi_chain_new (images, 2);
  CU_ASSERT_PTR_NOT_NULL (chain);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (test_log.warnings, 1);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_warning, at ("top.vdi")));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_warning, at ("base.vdi")));
  vdi_uuid_format (&top.h.uuid_parent_modify, stale);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_warning, stale));
  if (chain)
    CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  vdi_chain_free (chain);
  dir_remove ();
}

/* No image at all; an image opened without its block map. */
static void
test_chain_new_empty_and_header_only (void)
{
  struct img base;
  struct vdi_image *images[1];

  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 0));
  CU_ASSERT_EQUAL (test_log.errors, 1);

  test_log_reset ();
  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_write (&base, "base.vdi");
  images[0] = vdi_image_open (at ("base.vdi"), VDI_OPEN_HEADER_ONLY);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[0]);
  CU_ASSERT_PTR_NULL (vdi_chain_new (images, 1));
  ASSERT_ONE_ERROR (at ("base.vdi"), "block map");
  dir_remove ();
}

/* Depth: 300 images are allowed, 301 are not.  Writes a chain of
 * n images, chain/0.vdi (the base) ... chain/(n-1).vdi (the top),
 * every image FREE but for the base.
 */
static void
write_tall_chain (unsigned n)
{
  struct img prev, cur;
  char rel[64];
  unsigned i;

  img_base (&prev, 1000, 1, "D");
  img_write (&prev, "chain/0.vdi");
  for (i = 1; i < n; ++i) {
    img_child (&cur, 1000 + i, &prev, "F");
    snprintf (rel, sizeof rel, "chain/%u.vdi", i);
    img_write (&cur, rel);
    prev = cur;
  }
}

static void
test_chain_new_depth (void)
{
  struct vdi_image *images[VDI_MAX_CHAIN_DEPTH + 1];
  struct vdi_chain *chain;
  char rel[64];
  unsigned i, n;

  dir_make ();
  write_tall_chain (VDI_MAX_CHAIN_DEPTH + 1);
  for (n = VDI_MAX_CHAIN_DEPTH; n <= VDI_MAX_CHAIN_DEPTH + 1; ++n) {
    test_log_reset ();
    /* Top first: image n - 1 down to 0. */
    for (i = 0; i < n; ++i) {
      snprintf (rel, sizeof rel, "chain/%u.vdi", n - 1 - i);
      images[i] = open_img (rel);
    }
    chain = vdi_chain_new (images, n);
    if (n == VDI_MAX_CHAIN_DEPTH) {
      CU_ASSERT_PTR_NOT_NULL (chain);
      ASSERT_NO_ERROR ();
      if (chain) {
        CU_ASSERT_EQUAL (vdi_chain_depth (chain), n);
        CU_ASSERT_EQUAL (block_byte (chain, 0), 1000 & 0xff);
      }
      vdi_chain_free (chain);
    }
    else {
      CU_ASSERT_PTR_NULL (chain);
      snprintf (rel, sizeof rel, "chain/%u.vdi", n - 1);
      ASSERT_ONE_ERROR (at (rel), "300");
    }
  }
  dir_remove ();
}

/* A pattern of n blocks: data first, then fill (to free). */
static char *
data_then (uint32_t n, uint32_t data, char fill)
{
  char *p = malloc (n + 1);

  assert (p != NULL);
  memset (p, fill, n);
  memset (p, 'D', data);
  p[n] = '\0';
  return p;
}

/* The lookup table is bounded by what the images hold in memory.  A
 * top image of 2 TiB in 128 MiB blocks, every one ZERO (a 64 KiB
 * map), over a parent in 128 KiB blocks would need a table of 128 MiB:
 * refused with one error naming both block sizes, before the table is
 * allocated (under an address space limit of 32 MiB more than the
 * process has).  A top of 256 TiB is refused for its directory alone
 * (32 MiB), whatever its blocks.  The same 2 TiB top holding a single
 * block opens (its table is a directory and a few pages), and so do
 * 8 MiB blocks, every one ZERO, over 512 KiB ones (the widest mix
 * VirtualBox makes), and a 2 TiB chain of equal block sizes.
 */
static void
test_chain_new_table_bound (void)
{
  static const struct {
    uint32_t top_block_size, top_blocks, base_block_size, base_blocks;
    char top_fill;              /* the top's blocks after a first D */
    const char *error;
  } cases[] = {
    { 128 * KiB * KiB, 16 * KiB, 128 * KiB, 8, 'Z',
      "the chain's lookup table would need 128 MiB (a 2 TiB disk in units "
      "of 128 KiB: block sizes 128 MiB in " },
    { 128 * KiB * KiB, 2 * KiB * KiB, 128 * KiB, 8, 'F',
      "the chain's lookup table would need 32 MiB (a 256 TiB disk in units "
      "of 128 KiB: block sizes 128 MiB in " },
    { 128 * KiB * KiB, 16 * KiB, 128 * KiB, 8, 'F', NULL },
    { 8 * KiB * KiB, 256 * KiB, 512 * KiB, 2 * KiB, 'Z', NULL },
    { 1 * KiB * KiB, 2 * KiB * KiB, 1 * KiB * KiB, 2 * KiB * KiB, 'F', NULL },
  };
  size_t i;

  for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
    char *top_pattern = data_then (cases[i].top_blocks, 1, cases[i].top_fill);
    char *base_pattern = data_then (cases[i].base_blocks, 2, 'F');
    struct img base, top;
    struct vdi_image *images[2];
    struct vdi_chain *chain;
    struct rlimit old, limit;

    dir_make ();
    img_init (&base, 1, cases[i].base_block_size, cases[i].base_blocks,
              base_pattern);
    img_init (&top, 2, cases[i].top_block_size, cases[i].top_blocks,
              top_pattern);
    top.h.type = VDI_TYPE_DIFF;
    top.h.uuid_linkage = base.h.uuid_create;
    img_write (&base, "base.vdi");
    img_write (&top, "top.vdi");
    test_log_reset ();
    images[0] = open_img ("top.vdi");
    images[1] = open_img ("base.vdi");
    assert (getrlimit (RLIMIT_AS, &old) == 0);
    limit = old;
    if (cases[i].error)
      limit.rlim_cur = test_vm_size () + 32 * KiB * KiB;
    assert (setrlimit (RLIMIT_AS, &limit) == 0);
    chain = vdi_chain_new (images, 2);
    assert (setrlimit (RLIMIT_AS, &old) == 0);
    if (cases[i].error) {
      CU_ASSERT_PTR_NULL (chain);
      ASSERT_ONE_ERROR (at ("top.vdi"), cases[i].error);
      CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                      "over 128 KiB in "));
      CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, at ("base.vdi")));
    }
    else {
      CU_ASSERT_PTR_NOT_NULL (chain);
      ASSERT_NO_ERROR ();
      if (chain) {
        CU_ASSERT_EQUAL (block_byte (chain, 0), 2);
        CU_ASSERT_EQUAL (vdi_chain_size (chain),
                         (uint64_t) cases[i].top_blocks *
                         cases[i].top_block_size);
        CU_ASSERT_EQUAL (block_byte (chain, vdi_chain_size (chain) / BS - 1),
                         0);
      }
    }
    vdi_chain_free (chain);
    dir_remove ();
    free (top_pattern);
    free (base_pattern);
  }
}

/* vdi_chain_open: discovery ------------------------------------------- */

/* VirtualBox's layout: the base in the machine folder, children in
 * Snapshots.  Found from the top (folder, then the folder above).
 */
static void
test_open_machine_layout (void)
{
  struct img base, mid, top;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 3, "DDD");
  img_child (&mid, 2, &base, "FDF");
  img_child (&top, 3, &mid, "FFD");
  img_write (&base, "M/base.vdi");
  img_write (&mid, "M/Snapshots/mid.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (vdi_chain_depth (chain), 3);
  CU_ASSERT_STRING_EQUAL (vdi_image_filename (vdi_chain_image (chain, 1)),
                          at ("M/Snapshots/mid.vdi"));
  CU_ASSERT_STRING_EQUAL (vdi_image_filename (vdi_chain_image (chain, 2)),
                          at ("M/base.vdi"));
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 3);
  vdi_chain_free (chain);

  /* A base image alone opens as a chain of one. */
  chain = chain_open ("M/base.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL (chain);
  if (chain)
    CU_ASSERT_EQUAL (vdi_chain_depth (chain), 1);
  vdi_chain_free (chain);
  dir_remove ();
}

/* The parent elsewhere: missing (the error names the UUID and every
 * folder searched), then found with parent-dir, whose folder's parent
 * is then searched for the grandparent.
 */
static void
test_open_parent_dirs (void)
{
  struct img base, mid, top;
  struct vdi_chain *chain;
  char msg[512];
  const char *dirs[2];

  dir_make ();
  img_base (&base, 1, 3, "DDD");
  img_child (&mid, 2, &base, "FDF");
  img_child (&top, 3, &mid, "FFD");
  img_write (&base, "store/base.vdi");
  img_write (&mid, "store/sub/mid.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  mkdirs ("empty");

  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "not found");
  vdi_uuid_format (&mid.h.uuid_create, uuid_buf);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_buf));
  snprintf (msg, sizeof msg, "looked in %s, %s (use parent-dir= or "
            "registry=)", at ("M/Snapshots"), at ("M"));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, msg));

  test_log_reset ();
  dirs[0] = at ("empty");
  chain = chain_open ("M/Snapshots/top.vdi", dirs, 1, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), at ("empty"));

  test_log_reset ();
  dirs[1] = at ("store/sub");
  chain = chain_open ("M/Snapshots/top.vdi", dirs, 2, NULL);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (vdi_chain_depth (chain), 3);
  CU_ASSERT_STRING_EQUAL (vdi_image_filename (vdi_chain_image (chain, 2)),
                          at ("store/base.vdi"));
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  vdi_chain_free (chain);
  dir_remove ();
}

/* A bad image whose path is near PATH_MAX (nested folders): the
 * error names the whole path and still ends with the reason.
 */
static void
test_open_long_path (void)
{
  char rel[PATH_MAX], component[201];
  const char *path;
  struct vdi_chain *chain;
  FILE *fp;

  dir_make ();
  memset (component, 'd', sizeof component - 1);
  component[sizeof component - 1] = '\0';
  strcpy (rel, "M");
  while (strlen (top_dir) + strlen (rel) + sizeof component + 16 < PATH_MAX) {
    strcat (rel, "/");
    strcat (rel, component);
  }
  mkdirs (rel);
  strcat (rel, "/bad.vdi");
  path = at (rel);
  CU_ASSERT_FATAL (strlen (path) > PATH_MAX - 256);
  fp = fopen (path, "w");
  CU_ASSERT_PTR_NOT_NULL_FATAL (fp);
  CU_ASSERT_EQUAL (fwrite ("not a VDI image", 1, 15, fp), 15);
  CU_ASSERT_EQUAL (fclose (fp), 0);

  chain = chain_open (rel, NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (path, "not a VDI image");
  CU_ASSERT_FATAL (strlen (test_log.last_error) > strlen (path));
  CU_ASSERT_EQUAL (strncmp (test_log.last_error, path, strlen (path)), 0);
  CU_ASSERT_STRING_EQUAL (test_log.last_error + strlen (path),
                          ": not a VDI image: the file is only 15 bytes long");
  dir_remove ();
}

/* Two files with the parent's UUID: an error naming both, unless
 * they are the same file under two names.
 */
static void
test_open_ambiguous (void)
{
  struct img base, copy, top;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_base (&copy, 1, 2, "DZ");
  img_child (&top, 3, &base, "FF");
  img_write (&base, "M/base.vdi");
  img_write (&copy, "M/Snapshots/copy.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "ambiguous");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, at ("M/base.vdi")));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                  at ("M/Snapshots/copy.vdi")));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_str (&base)));
  /* No registry chooses: it says what does. */
  CU_ASSERT (ends_with (test_log.last_error,
                        " both have this UUID; no settings file beside them "
                        "registers either, so move the one that is not "
                        "the parent out of the folders searched"));

  /* A settings file beside them that registers one chooses; one that
   * registers another UUID, or is no settings file, does not.
   */
  {
    char xml[512], expected[PATH_MAX + 64], dir[PATH_MAX];
    const char *dirs[] = { dir };
    char u1[VDI_UUID_STRLEN];

    vdi_uuid_format (&base.h.uuid_create, u1);
    snprintf (xml, sizeof xml,
              "<HardDisk uuid=\"{%s}\" location=\"base.vdi\" "
              "format=\"VDI\"/>", u1);
    write_vbox ("M/M.vbox", xml);
    write_vbox ("M/Snapshots/other.vbox",
                "<HardDisk uuid=\"{5eed0000-0000-4000-8000-0000000000aa}\" "
                "location=\"copy.vdi\" format=\"VDI\"/>");
    write_vbox ("M/Snapshots/junk.vbox", "<HardDisk");
    test_log_reset ();
    chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
    CU_ASSERT_PTR_NULL (chain);
    ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "ambiguous");
    snprintf (expected, sizeof expected, " both have this UUID "
              "(use registry=%s to choose)", at ("M/M.vbox"));
    CU_ASSERT (ends_with (test_log.last_error, expected));

    /* A copy in a folder that only parent-dir= adds: leaving it out
     * chooses (as would the registry).
     */
    mkdirs ("store");
    CU_ASSERT_EQUAL (rename (at ("M/Snapshots/copy.vdi"),
                             at ("store/copy.vdi")), 0);
    snprintf (dir, sizeof dir, "%s", at ("store"));
    test_log_reset ();
    chain = chain_open ("M/Snapshots/top.vdi", dirs, 1, NULL);
    CU_ASSERT_PTR_NULL (chain);
    ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), at ("store/copy.vdi"));
    snprintf (expected, sizeof expected, " both have this UUID "
              "(use registry=%s, or leave out parent-dir=%s, to choose)",
              at ("M/M.vbox"), at ("store"));
    CU_ASSERT (ends_with (test_log.last_error, expected));
    CU_ASSERT_EQUAL (unlink (at ("M/M.vbox")), 0);
    test_log_reset ();
    chain = chain_open ("M/Snapshots/top.vdi", dirs, 1, NULL);
    CU_ASSERT_PTR_NULL (chain);
    snprintf (expected, sizeof expected, " both have this UUID "
              "(leave out parent-dir=%s to choose)", at ("store"));
    CU_ASSERT (ends_with (test_log.last_error, expected));

    /* A folder that is searched anyway: leaving it out changes
     * nothing.
     */
    CU_ASSERT_EQUAL (rename (at ("store/copy.vdi"),
                             at ("M/Snapshots/copy.vdi")), 0);
    snprintf (dir, sizeof dir, "%s", at ("M/Snapshots"));
    test_log_reset ();
    chain = chain_open ("M/Snapshots/top.vdi", dirs, 1, NULL);
    CU_ASSERT_PTR_NULL (chain);
    ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "ambiguous");
    CU_ASSERT (ends_with (test_log.last_error, "move the one that is not "
                          "the parent out of the folders searched"));
  }

  /* A symbolic and a hard link to the parent are the parent. */
  test_log_reset ();
  CU_ASSERT_EQUAL (unlink (at ("M/Snapshots/copy.vdi")), 0);
  CU_ASSERT_EQUAL (symlink ("../base.vdi", at ("M/Snapshots/link.vdi")), 0);
  CU_ASSERT_EQUAL (link (at ("M/base.vdi"), at ("M/hard.vdi")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL (chain);
  ASSERT_NO_ERROR ();
  if (chain)
    CU_ASSERT_EQUAL (block_byte (chain, 1), 1);
  vdi_chain_free (chain);
  dir_remove ();
}

/* Cycles found while discovering: an image that is its own parent,
 * two images that are each other's.
 */
static void
test_open_cycle (void)
{
  struct img a, b;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&a, 1, 2, "FD");
  a.h.type = VDI_TYPE_DIFF;
  a.h.uuid_linkage = a.h.uuid_create;
  a.h.uuid_parent_modify = a.h.uuid_modify;
  img_write (&a, "self/a.vdi");
  chain = chain_open ("self/a.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("self/a.vdi"), "cycle");

  test_log_reset ();
  img_base (&b, 2, 2, "DF");
  b.h.type = VDI_TYPE_DIFF;
  b.h.uuid_linkage = a.h.uuid_create;
  b.h.uuid_parent_modify = a.h.uuid_modify;
  a.h.uuid_linkage = b.h.uuid_create;
  a.h.uuid_parent_modify = b.h.uuid_modify;
  img_write (&a, "two/Snapshots/a.vdi");
  img_write (&b, "two/b.vdi");
  chain = chain_open ("two/Snapshots/a.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("two/b.vdi"), "cycle");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                  at ("two/Snapshots/a.vdi")));
  dir_remove ();
}

/* A fixed image whose parent exists is in the middle of a chain: an
 * error.  Without its parent, a fixed image with a parent UUID is a
 * base with a leftover linkage.
 */
static void
test_open_fixed_in_middle (void)
{
  struct img base, fixed, top;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&fixed, 2, &base, "DD");
  fixed.h.type = VDI_TYPE_FIXED;
  img_child (&top, 3, &fixed, "FD");
  img_write (&base, "M/base.vdi");
  img_write (&fixed, "M/Snapshots/fixed.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/fixed.vdi"), "fixed");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, uuid_str (&base)));

  /* A registry nesting it under its parent: the same error.  A
   * registry that has it as a base: its parent UUID is a leftover.
   */
  {
    char xml[2048], u1[VDI_UUID_STRLEN], u2[VDI_UUID_STRLEN];
    char u3[VDI_UUID_STRLEN];
    struct vbox_registry *reg;

    vdi_uuid_format (&base.h.uuid_create, u1);
    vdi_uuid_format (&fixed.h.uuid_create, u2);
    vdi_uuid_format (&top.h.uuid_create, u3);
    snprintf (xml, sizeof xml,
              "<HardDisk uuid=\"{%s}\" location=\"base.vdi\" format=\"VDI\">"
              "<HardDisk uuid=\"{%s}\" location=\"Snapshots/fixed.vdi\" "
              "format=\"VDI\"><HardDisk uuid=\"{%s}\" "
              "location=\"Snapshots/top.vdi\" format=\"VDI\"/>"
              "</HardDisk></HardDisk>", u1, u2, u3);
    write_vbox ("M/nested.vbox", xml);
    test_log_reset ();
    reg = vbox_registry_new ();
    CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/nested.vbox")), 0);
    chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
    CU_ASSERT_PTR_NULL (chain);
    ASSERT_ONE_ERROR (at ("M/Snapshots/fixed.vdi"), "fixed");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, u1));
    vbox_registry_free (reg);

    snprintf (xml, sizeof xml,
              "<HardDisk uuid=\"{%s}\" location=\"base.vdi\" format=\"VDI\"/>"
              "<HardDisk uuid=\"{%s}\" location=\"Snapshots/fixed.vdi\" "
              "format=\"VDI\"><HardDisk uuid=\"{%s}\" "
              "location=\"Snapshots/top.vdi\" format=\"VDI\"/>"
              "</HardDisk>", u1, u2, u3);
    write_vbox ("M/base.vbox", xml);
    test_log_reset ();
    reg = vbox_registry_new ();
    CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/base.vbox")), 0);
    chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
    CU_ASSERT_PTR_NOT_NULL (chain);
    ASSERT_NO_ERROR ();
    if (chain)
      CU_ASSERT_EQUAL (vdi_chain_depth (chain), 2);
    vdi_chain_free (chain);
    vbox_registry_free (reg);
  }

  test_log_reset ();
  CU_ASSERT_EQUAL (unlink (at ("M/base.vdi")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL (chain);
  ASSERT_NO_ERROR ();
  if (chain) {
    CU_ASSERT_EQUAL (vdi_chain_depth (chain), 2);
    CU_ASSERT_EQUAL (block_byte (chain, 0), 2);
  }
  vdi_chain_free (chain);
  dir_remove ();
}

/* A layer that the vdidiff filter made over a disk that is not a VDI
 * image (its comment, a null parent modification UUID): the error
 * says so and how to serve it, with or without a registry.  Without
 * the comment, or with a parent modification UUID, the parent is
 * merely missing.
 */
static void
test_open_layer_over_other (void)
{
  struct img base, top;
  struct vdi_chain *chain;
  struct vbox_registry *reg;
  char u[VDI_UUID_STRLEN];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&top, 3, &base, "DF");
  memset (&top.h.uuid_parent_modify, 0, sizeof top.h.uuid_parent_modify);
  strcpy (top.h.comment, VDI_VDIDIFF_COMMENT);
  img_write (&top, "layer.vdi");
  vdi_uuid_format (&base.h.uuid_create, u);
  chain = chain_open ("layer.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("layer.vdi"), "made this differencing image over "
                    "a disk that is not a VDI image");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, u));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "--filter=vdidiff"));

  write_vbox ("M.vbox", "");
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M.vbox")), 0);
  test_log_reset ();
  chain = chain_open ("layer.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("layer.vdi"), "not a VDI image");
  vbox_registry_free (reg);

  /* Any other image with a missing parent. */
  strcpy (top.h.comment, "");
  img_write (&top, "other.vdi");
  test_log_reset ();
  chain = chain_open ("other.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("other.vdi"), "not found");
  strcpy (top.h.comment, VDI_VDIDIFF_COMMENT);
  top.h.uuid_parent_modify = base.h.uuid_modify;
  img_write (&top, "lost.vdi");
  test_log_reset ();
  chain = chain_open ("lost.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("lost.vdi"), "not found");
  dir_remove ();
}

/* A parent that is there but broken: the error names it (not "not
 * found").
 */
static void
test_open_broken_parent (void)
{
  struct img base, top;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&top, 2, &base, "FD");
  img_write (&base, "M/base.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  /* Cut into the second data slot. */
  CU_ASSERT_EQUAL (truncate (at ("M/base.vdi"),
                             base.h.data_offset + BS + 100), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/base.vdi"), "");
  CU_ASSERT_PTR_NULL (strstr (test_log.last_error, "not found"));

  /* Cut inside the block map: even its header does not validate, so
   * the folder scan cannot take it as a candidate.
   */
  test_log_reset ();
  CU_ASSERT_EQUAL (truncate (at ("M/base.vdi"), base.h.blocks_offset + 2), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/base.vdi"), "");
  CU_ASSERT_PTR_NULL (strstr (test_log.last_error, "not found"));
  dir_remove ();
}

/* 300 images found by scanning work; 301 do not. */
static void
test_open_depth (void)
{
  struct vdi_chain *chain;

  dir_make ();
  write_tall_chain (VDI_MAX_CHAIN_DEPTH + 1);
  chain = chain_open ("chain/299.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NOT_NULL (chain);
  ASSERT_NO_ERROR ();
  if (chain) {
    CU_ASSERT_EQUAL (vdi_chain_depth (chain), VDI_MAX_CHAIN_DEPTH);
    CU_ASSERT_EQUAL (block_byte (chain, 0), 1000 & 0xff);
  }
  vdi_chain_free (chain);

  test_log_reset ();
  chain = chain_open ("chain/300.vdi", NULL, 0, NULL);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("chain/300.vdi"), "300");
  dir_remove ();
}

/* With a registry, parents come from the registry only. */
static void
test_open_registry (void)
{
  struct img base, other, top;
  struct vbox_registry *reg;
  struct vdi_chain *chain;
  char xml[2048], u1[VDI_UUID_STRLEN], u3[VDI_UUID_STRLEN];
  char u2[VDI_UUID_STRLEN];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_base (&other, 2, 2, "ZZ");
  img_child (&top, 3, &base, "FD");
  img_write (&base, "M/elsewhere/base.vdi");
  img_write (&other, "M/other.vdi");
  img_write (&top, "M/Snapshots/top.vdi");
  vdi_uuid_format (&base.h.uuid_create, u1);
  vdi_uuid_format (&other.h.uuid_create, u2);
  vdi_uuid_format (&top.h.uuid_create, u3);

  /* Found where the registry says, not by scanning. */
  snprintf (xml, sizeof xml,
            "<HardDisk uuid=\"{%s}\" location=\"elsewhere/base.vdi\" "
            "format=\"VDI\"><HardDisk uuid=\"{%s}\" "
            "location=\"Snapshots/top.vdi\" format=\"VDI\"/></HardDisk>",
            u1, u3);
  write_vbox ("M/good.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/good.vbox")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NOT_NULL (chain);
  ASSERT_NO_ERROR ();
  if (chain)
    CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  vdi_chain_free (chain);
  vbox_registry_free (reg);

  /* The registry nests top under other, but top's parent is base. */
  test_log_reset ();
  snprintf (xml, sizeof xml,
            "<HardDisk uuid=\"{%s}\" location=\"other.vdi\" "
            "format=\"VDI\"><HardDisk uuid=\"{%s}\" "
            "location=\"Snapshots/top.vdi\" format=\"VDI\"/></HardDisk>"
            "<HardDisk uuid=\"{%s}\" location=\"elsewhere/base.vdi\" "
            "format=\"VDI\"/>",
            u2, u3, u1);
  write_vbox ("M/nested.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/nested.vbox")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "does not match");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, u1));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, u2));
  vbox_registry_free (reg);

  /* The registry puts base's UUID at other.vdi. */
  test_log_reset ();
  snprintf (xml, sizeof xml,
            "<HardDisk uuid=\"{%s}\" location=\"other.vdi\" "
            "format=\"VDI\"><HardDisk uuid=\"{%s}\" "
            "location=\"Snapshots/top.vdi\" format=\"VDI\"/></HardDisk>",
            u1, u3);
  write_vbox ("M/wrongfile.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/wrongfile.vbox")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/other.vdi"), u2);
  vbox_registry_free (reg);

  /* The parent is not registered: not looked for in the folders. */
  test_log_reset ();
  img_write (&base, "M/base.vdi");
  snprintf (xml, sizeof xml,
            "<HardDisk uuid=\"{%s}\" location=\"Snapshots/top.vdi\" "
            "format=\"VDI\"/>", u3);
  write_vbox ("M/alone.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/alone.vbox")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/Snapshots/top.vdi"), "not in the media registry");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, u1));
  vbox_registry_free (reg);

  /* The parent's file is missing: the error says which medium. */
  test_log_reset ();
  CU_ASSERT_EQUAL (unlink (at ("M/elsewhere/base.vdi")), 0);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("M/good.vbox")), 0);
  chain = chain_open ("M/Snapshots/top.vdi", NULL, 0, reg);
  CU_ASSERT_PTR_NULL (chain);
  ASSERT_ONE_ERROR (at ("M/elsewhere/base.vdi"), u1);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error,
                                  at ("M/Snapshots/top.vdi")));
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, at ("M/good.vbox")));
  vbox_registry_free (reg);
  dir_remove ();
}

/* vdi_chain_hide_top, vdi_chain_reset_top ---------------------------- */

/* The extents of a chain as one letter per block of BS bytes: D
 * data, Z zeros, B below.
 */
static int
extent_letters (void *opaque, uint64_t offset, uint64_t length,
                enum vdi_extent_type type)
{
  char *s = opaque;
  uint64_t b;

  for (b = offset / BS; b < (offset + length) / BS; ++b)
    s[b] = type == VDI_EXTENT_DATA ? 'D' : type == VDI_EXTENT_ZERO ? 'Z' : 'B';
  return 0;
}

/* base (image 1) DDDZ, mid (2) FDFF, top (3) DFZD.  Open top, mid and
 * base read-only as one chain.  top's parent-modify UUID is stale (a
 * warning), so that a reset is seen to set it.
 */
static struct vdi_chain *
hide_fixture (void)
{
  struct img base, mid, top;
  struct vdi_image *images[3];

  img_base (&base, 1, 4, "DDDZ");
  img_child (&mid, 2, &base, "FDFF");
  img_child (&top, 3, &mid, "DFZD");
  uuid_n (&top.h.uuid_parent_modify, 999);
  img_write (&base, "base.vdi");
  img_write (&mid, "mid.vdi");
  img_write (&top, "top.vdi");
  images[0] = open_img ("top.vdi");
  images[1] = open_img ("mid.vdi");
  images[2] = open_img ("base.vdi");
  return vdi_chain_new (images, 3);
}

/* Hiding the top image shows its parent's bytes and extents, and no
 * file changes: not at hiding, not at a flush, not at close.
 */
static void
test_hide_top_reads_parent (void)
{
  struct vdi_chain *chain;
  uint8_t *top_bytes, *mid_bytes;
  size_t top_len, mid_len;
  char extents[5] = "????", uuid[VDI_UUID_STRLEN], *desc;
  char want[200];
  struct vdi_uuid mid_create, mid_modify;

  dir_make ();
  chain = hide_fixture ();
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  top_bytes = slurp ("top.vdi", &top_len);
  mid_bytes = slurp ("mid.vdi", &mid_len);
  mid_create = vdi_image_header (vdi_chain_image (chain, 1))->uuid_create;
  mid_modify = vdi_image_header (vdi_chain_image (chain, 1))->uuid_modify;

  /* As it is: the top image's data, zeros where it says ZERO. */
  CU_ASSERT_EQUAL (block_byte (chain, 0), 3);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 0);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 3);

  CU_ASSERT_EQUAL_FATAL (vdi_chain_hide_top (chain), 0);
  ASSERT_NO_ERROR ();
  /* What the chain below the top shows: mid over base. */
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 0);
  CU_ASSERT_EQUAL (vdi_chain_extents (chain, 0, 4 * BS, false,
                                      extent_letters, extents), 0);
  CU_ASSERT_STRING_EQUAL (extents, "DDDZ");
  CU_ASSERT_EQUAL (vdi_image_header (vdi_chain_image (chain, 0))
                   ->blocks_allocated, 0);

  /* The description names the image whose content is shown. */
  desc = vdi_chain_description (chain);
  CU_ASSERT_PTR_NOT_NULL_FATAL (desc);
  snprintf (want, sizeof want,
            "VirtualBox differencing image {%s}, ",
            vdi_uuid_format (&mid_create, uuid));
  CU_ASSERT_PTR_NOT_NULL (strstr (desc, want));
  snprintf (want, sizeof want, "modification {%s}, chain depth 2",
            vdi_uuid_format (&mid_modify, uuid));
  CU_ASSERT_PTR_NOT_NULL (strstr (desc, want));
  free (desc);

  /* Nothing was written, and a flush and the close write nothing. */
  CU_ASSERT_EQUAL (vdi_chain_flush (chain), 0);
  assert_same_file ("top.vdi", top_bytes, top_len);
  vdi_chain_free (chain);
  ASSERT_NO_ERROR ();
  assert_same_file ("top.vdi", top_bytes, top_len);
  assert_same_file ("mid.vdi", mid_bytes, mid_len);

  free (top_bytes);
  free (mid_bytes);
  dir_remove ();
}

/* A hidden top image refuses writes, even made writable, until it is
 * reset; the reset empties the file as VirtualBox does, and writes
 * then land in it.
 */
static void
test_hide_top_then_reset (void)
{
  struct vdi_chain *chain;
  struct vdi_image *top, *images[3];
  struct vdi_header before, after;
  uint8_t *top_bytes, *mid_bytes, *base_bytes, block[BS];
  size_t top_len, mid_len, base_len;

  dir_make ();
  chain = hide_fixture ();
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  top = vdi_chain_image (chain, 0);
  before = *vdi_image_header (top);
  top_bytes = slurp ("top.vdi", &top_len);
  mid_bytes = slurp ("mid.vdi", &mid_len);
  base_bytes = slurp ("base.vdi", &base_len);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_hide_top (chain), 0);

  /* Read-only: refused as ever. */
  memset (block, 0x77, sizeof block);
  CU_ASSERT_EQUAL (vdi_chain_pwrite (chain, block, BS, 0, 0, NULL), -1);
  CU_ASSERT_EQUAL (errno, EROFS);
  ASSERT_ONE_ERROR (at ("top.vdi"), "read-only");
  CU_ASSERT_EQUAL (vdi_chain_reset_top (chain), -1);
  CU_ASSERT_EQUAL (errno, EROFS);

  /* Writable but not reset: refused too, and nothing changes. */
  test_log_reset ();
  CU_ASSERT_EQUAL_FATAL (vdi_image_make_writable (top), 0);
  CU_ASSERT_EQUAL (vdi_chain_pwrite (chain, block, BS, 0, 0, NULL), -1);
  CU_ASSERT_EQUAL (errno, EROFS);
  ASSERT_ONE_ERROR (at ("top.vdi"), "not been emptied");
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_chain_zero (chain, BS, 0, 0, NULL), -1);
  CU_ASSERT_EQUAL (errno, EROFS);
  CU_ASSERT_EQUAL (vdi_chain_flush (chain), 0);
  assert_same_file ("top.vdi", top_bytes, top_len);

  /* The reset: same create and parent UUIDs, a new modify UUID, the
   * parent's modify UUID as parent-modify, no block.
   */
  test_log_reset ();
  CU_ASSERT_EQUAL_FATAL (vdi_chain_reset_top (chain), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_FALSE (same_file ("top.vdi", top_bytes, top_len));
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 0);
  /* A second reset: the image is not hidden any more. */
  CU_ASSERT_EQUAL (vdi_chain_reset_top (chain), -1);
  ASSERT_ONE_ERROR (at ("top.vdi"), "not hidden");

  /* Writes land in the top image. */
  CU_ASSERT_EQUAL (vdi_chain_pwrite (chain, block, BS, 2 * BS, 0, NULL), 0);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 0x77);
  vdi_chain_free (chain);

  /* On disk: only that block, in a reset header. */
  test_log_reset ();
  images[0] = vdi_image_open (at ("top.vdi"), 0);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[0]);
  after = *vdi_image_header (images[0]);
  CU_ASSERT_TRUE (vdi_uuid_equal (&after.uuid_create, &before.uuid_create));
  CU_ASSERT_TRUE (vdi_uuid_equal (&after.uuid_linkage, &before.uuid_linkage));
  CU_ASSERT_FALSE (vdi_uuid_equal (&after.uuid_modify, &before.uuid_modify));
  CU_ASSERT_EQUAL (after.blocks_allocated, 1);
  CU_ASSERT_EQUAL (vdi_image_map_entry (images[0], 0), VDI_BLOCK_FREE);
  CU_ASSERT_EQUAL (vdi_image_map_entry (images[0], 1), VDI_BLOCK_FREE);
  CU_ASSERT_EQUAL (vdi_image_map_entry (images[0], 2), 0);
  CU_ASSERT_EQUAL (vdi_image_map_entry (images[0], 3), VDI_BLOCK_FREE);
  images[1] = open_img ("mid.vdi");
  images[2] = open_img ("base.vdi");
  CU_ASSERT_FALSE (vdi_uuid_equal (&before.uuid_parent_modify,
                                   &vdi_image_header (images[1])
                                   ->uuid_modify));
  CU_ASSERT_TRUE (vdi_uuid_equal (&after.uuid_parent_modify,
                                  &vdi_image_header (images[1])->uuid_modify));
  test_log_reset ();
  chain = vdi_chain_new (images, 3);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (test_log.warnings, 0);
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 0x77);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 0);
  vdi_chain_free (chain);

  /* The parents never changed. */
  assert_same_file ("mid.vdi", mid_bytes, mid_len);
  assert_same_file ("base.vdi", base_bytes, base_len);
  free (top_bytes);
  free (mid_bytes);
  free (base_bytes);
  dir_remove ();
}

/* vdi_chain_hide_top refuses the chain of these n images with one
 * error naming rel and phrase, and block 1 still reads byte.
 */
static void
check_hide_refused (struct vdi_image **images, size_t n,
                    const char *rel, const char *phrase, int byte)
{
  struct vdi_chain *chain;

  test_log_reset ();
  chain = vdi_chain_new (images, n);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT_EQUAL (vdi_chain_hide_top (chain), -1);
  ASSERT_ONE_ERROR (at (rel), phrase);
  CU_ASSERT_EQUAL (block_byte (chain, 1), byte);
  vdi_chain_free (chain);
}

/* What cannot be hidden: a chain of one image, a top image open for
 * writing.
 */
static void
test_hide_top_refused (void)
{
  struct img base, top;
  struct vdi_image *images[2];

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&top, 2, &base, "FD");
  img_write (&base, "base.vdi");
  img_write (&top, "top.vdi");

  images[0] = open_img ("base.vdi");
  check_hide_refused (images, 1, "base.vdi", "no parent", 1);

  images[0] = vdi_image_open (at ("top.vdi"), VDI_OPEN_WRITE);
  CU_ASSERT_PTR_NOT_NULL_FATAL (images[0]);
  images[1] = open_img ("base.vdi");
  check_hide_refused (images, 2, "top.vdi", "open for writing", 2);
  dir_remove ();
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-chain");

  atexit (dir_remove);

  ADD_TEST (s, test_chain_new_good);
  ADD_TEST (s, test_chain_new_linkage_mismatch);
  ADD_TEST (s, test_chain_new_fixed_in_middle);
  ADD_TEST (s, test_chain_new_cycle);
  ADD_TEST (s, test_chain_new_base_is_diff);
  ADD_TEST (s, test_chain_new_child_not_diff);
  ADD_TEST (s, test_chain_new_stale_and_leftover);
  ADD_TEST (s, test_chain_new_empty_and_header_only);
  ADD_TEST (s, test_chain_new_depth);
  ADD_TEST (s, test_chain_new_table_bound);

  ADD_TEST (s, test_open_machine_layout);
  ADD_TEST (s, test_open_parent_dirs);
  ADD_TEST (s, test_open_long_path);
  ADD_TEST (s, test_open_ambiguous);
  ADD_TEST (s, test_open_cycle);
  ADD_TEST (s, test_open_fixed_in_middle);
  ADD_TEST (s, test_open_broken_parent);
  ADD_TEST (s, test_open_layer_over_other);
  ADD_TEST (s, test_open_depth);
  ADD_TEST (s, test_open_registry);

  ADD_TEST (s, test_hide_top_reads_parent);
  ADD_TEST (s, test_hide_top_then_reset);
  ADD_TEST (s, test_hide_top_refused);
  return test_run ();
}
