/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Unit tests of vdi_merge (vdi-merge.c): both directions over random
 * chains whose images mix block sizes and FREE, ZERO and data blocks,
 * compared with what the leaf read before; the refusals; and the
 * finishing of a merge that was interrupted after its journal.
 *
 * Images are small folder trees made with test-tree.h: the base in
 * m/base.vdi, the differencing images in m/Snapshots.
 */

#include <config.h>

#undef NDEBUG

#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <assert.h>
#include <unistd.h>

#include <CUnit/Basic.h>

#include "libvdi.h"
#include "vbox-registry.h"
#include "test-common.h"
#include "test-tree.h"

#define MiB (1024 * KiB)
/* Every image of the random chains: 4 to 16 blocks. */
#define CHAIN_SIZE (2 * MiB)
#define MAX_DEPTH 5

static const struct vdi_parent_search no_dirs = { .registry = NULL };

/* The path, under top_dir, of image i of a chain (0 is the base). */
static const char *
chain_rel (unsigned i)
{
  static char bufs[MAX_DEPTH + 2][32];

  if (i == 0)
    return "m/base.vdi";
  snprintf (bufs[i], sizeof bufs[i], "m/Snapshots/d%u.vdi", i);
  return bufs[i];
}

/* Read all of the chain whose top is top_dir/rel into buf[CHAIN_SIZE]. */
static void
read_leaf (const char *rel, uint8_t *buf)
{
  struct vdi_chain *chain = vdi_chain_open (at (rel), 0, &no_dirs);

  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_size (chain), CHAIN_SIZE);
  CU_ASSERT_EQUAL_FATAL (vdi_chain_pread (chain, buf, CHAIN_SIZE, 0, NULL),
                         0);
  vdi_chain_free (chain);
}

static void
assert_clean (const char *rel)
{
  struct vdi_image *img = open_img (rel);

  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  vdi_image_close (img);
}

/* The images of a merge that failed are closed: no lock stays, so
 * they open for writing again.
 */
static void
assert_closed (const char *rel)
{
  struct vdi_image *img = vdi_image_open (at (rel), VDI_OPEN_WRITE);

  CU_ASSERT_PTR_NOT_NULL (img);
  if (img)
    vdi_image_close (img);
}

static int
merge (const char *rel, enum vdi_merge_direction direction)
{
  struct vdi_merge m = { .direction = direction, .search = &no_dirs };

  return vdi_merge (at (rel), &m);
}

/* A random pattern of F, Z and D for blocks blocks. */
static char *
random_pattern (uint32_t blocks)
{
  static const char letters[] = "FZD";
  char *p = malloc (blocks + 1);
  uint32_t i;

  assert (p != NULL);
  for (i = 0; i < blocks; ++i)
    p[i] = letters[test_random_below (3)];
  p[blocks] = '\0';
  return p;
}

/* One random chain, one merge in the given direction of a random
 * differencing image with its parent: the leaf reads as before, the
 * right file is gone, the survivor keeps its UUID, everything left
 * checks clean, and nothing warns of a stale parent.
 */
static void
random_merge (enum vdi_merge_direction direction)
{
  static const uint32_t block_sizes[] = { 128 * KiB, 256 * KiB, 512 * KiB };
  const unsigned depth = 2 + test_random_below (MAX_DEPTH - 1);
  const unsigned k = 1 + test_random_below (depth - 1);
  struct img im[MAX_DEPTH];
  char *patterns[MAX_DEPTH];
  uint8_t *before = malloc (CHAIN_SIZE), *after = malloc (CHAIN_SIZE);
  const char *leaf, *survivor, *removed;
  struct vdi_image *img;
  unsigned i;

  assert (before != NULL && after != NULL);
  dir_make ();
  for (i = 0; i < depth; ++i) {
    uint32_t bs = block_sizes[test_random_below (3)];

    patterns[i] = random_pattern (CHAIN_SIZE / bs);
    img_init (&im[i], i + 1, bs, CHAIN_SIZE / bs, patterns[i]);
    if (i > 0) {
      im[i].h.type = VDI_TYPE_DIFF;
      im[i].h.uuid_linkage = im[i - 1].h.uuid_create;
      im[i].h.uuid_parent_modify = im[i - 1].h.uuid_modify;
    }
    img_write (&im[i], chain_rel (i));
  }
  read_leaf (chain_rel (depth - 1), before);

  CU_ASSERT_EQUAL (merge (chain_rel (k), direction), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (test_log.warnings, 0);

  if (direction == VDI_MERGE_INTO_PARENT) {
    survivor = chain_rel (k - 1);
    removed = chain_rel (k);
    leaf = k == depth - 1 ? survivor : chain_rel (depth - 1);
  }
  else {
    survivor = chain_rel (k);
    removed = chain_rel (k - 1);
    leaf = chain_rel (depth - 1);
  }
  CU_ASSERT_EQUAL (access (at (removed), F_OK), -1);
  CU_ASSERT_EQUAL (access (at (chain_rel (k)), F_OK) == 0 ? 0 : 1,
                   direction == VDI_MERGE_INTO_PARENT);
  {
    char journal[64];

    snprintf (journal, sizeof journal, "%s.merge", chain_rel (k));
    CU_ASSERT_EQUAL (access (at (journal), F_OK), -1);
  }

  read_leaf (leaf, after);
  CU_ASSERT (memcmp (before, after, CHAIN_SIZE) == 0);
  CU_ASSERT_EQUAL (test_log.warnings, 0);

  img = open_img (survivor);
  CU_ASSERT (vdi_uuid_equal (&vdi_image_header (img)->uuid_create,
                             &im[direction == VDI_MERGE_INTO_PARENT
                                 ? k - 1 : k].h.uuid_create));
  /* The child of a base merged into it is a base, and opens as one. */
  if (direction == VDI_MERGE_INTO_CHILD && k == 1) {
    CU_ASSERT_EQUAL (vdi_image_header (img)->type, VDI_TYPE_NORMAL);
    CU_ASSERT (vdi_uuid_is_null (&vdi_image_header (img)->uuid_linkage));
  }
  vdi_image_close (img);
  for (i = 0; i < depth; ++i)
    if (strcmp (chain_rel (i), removed) != 0)
      assert_clean (chain_rel (i));

  for (i = 0; i < depth; ++i)
    free (patterns[i]);
  free (before);
  free (after);
  dir_remove ();
}

static void
test_merge_random_into_parent (void)
{
  unsigned i;

  for (i = 0; i < 40; ++i) {
    test_log_reset ();
    random_merge (VDI_MERGE_INTO_PARENT);
  }
}

static void
test_merge_random_into_child (void)
{
  unsigned i;

  for (i = 0; i < 40; ++i) {
    test_log_reset ();
    random_merge (VDI_MERGE_INTO_CHILD);
  }
}

/* ZERO blocks over the parent: over its data, the data is zeroed in
 * place; over a block it lacks, it gets a ZERO entry (no data
 * allocated).  Its other blocks keep their data.
 */
static void
test_merge_zero_over_data (void)
{
  struct img base, child;
  struct vdi_chain *chain;
  const struct vdi_image *img;

  dir_make ();
  img_base (&base, 1, 3, "DFD");
  img_child (&child, 2, &base, "ZZF");
  img_write (&base, chain_rel (0));
  img_write (&child, chain_rel (1));
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_PARENT), 0);
  ASSERT_NO_ERROR ();
  chain = vdi_chain_open (at (chain_rel (0)), 0, &no_dirs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  img = vdi_chain_image (chain, 0);
  CU_ASSERT_EQUAL (block_byte (chain, 0), 0);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 0);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 1);
  CU_ASSERT (VDI_BLOCK_IS_ALLOCATED (vdi_image_map_entry (img, 0)));
  CU_ASSERT_EQUAL (vdi_image_map_entry (img, 1), VDI_BLOCK_ZERO);
  CU_ASSERT_EQUAL (vdi_image_header (img)->blocks_allocated, 2);
  vdi_chain_free (chain);
  dir_remove ();
}

/* A partial block: a child of 128 KiB blocks over a parent of 512 KiB
 * blocks, holding one quarter of a block the parent does not have.
 * The parent's new block holds the quarter and, around it, what its
 * own parent showed there.
 */
static void
test_merge_partial_block (void)
{
  struct img base, mid, top;
  struct vdi_chain *chain;

  dir_make ();
  img_init (&base, 1, 512 * KiB, 1, "D");
  img_init (&mid, 2, 512 * KiB, 1, "F");
  img_init (&top, 3, 128 * KiB, 4, "FDFF");
  mid.h.type = top.h.type = VDI_TYPE_DIFF;
  mid.h.uuid_linkage = base.h.uuid_create;
  top.h.uuid_linkage = mid.h.uuid_create;
  img_write (&base, chain_rel (0));
  img_write (&mid, chain_rel (1));
  img_write (&top, chain_rel (2));
  CU_ASSERT_EQUAL (merge (chain_rel (2), VDI_MERGE_INTO_PARENT), 0);
  ASSERT_NO_ERROR ();
  chain = vdi_chain_open (at (chain_rel (1)), 0, &no_dirs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 3);
  CU_ASSERT_EQUAL (block_byte (chain, 2), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 3), 1);
  CU_ASSERT (VDI_BLOCK_IS_ALLOCATED
             (vdi_image_map_entry (vdi_chain_image (chain, 0), 0)));
  vdi_chain_free (chain);
  dir_remove ();
}

/* A base (m/base.vdi) with two children: a, in m/Snapshots/a.vdi,
 * and b in b_rel.
 */
static void
write_two_children (struct img *base, struct img *a, struct img *b,
                    const char *b_rel)
{
  img_base (base, 1, 2, "DD");
  img_child (a, 2, base, "DF");
  img_child (b, 3, base, "FD");
  img_write (base, chain_rel (0));
  img_write (a, "m/Snapshots/a.vdi");
  img_write (b, b_rel);
}

/* The parent has a second child: refused, nothing written. */
static void
test_merge_two_children (void)
{
  struct img base, a, b;
  uint8_t *base_bytes, *a_bytes;
  size_t base_len, a_len;
  enum vdi_merge_direction d;

  for (d = VDI_MERGE_INTO_PARENT; d <= VDI_MERGE_INTO_CHILD; ++d) {
    test_log_reset ();
    dir_make ();
    write_two_children (&base, &a, &b, "m/Snapshots/b.vdi");
    base_bytes = slurp (chain_rel (0), &base_len);
    a_bytes = slurp ("m/Snapshots/a.vdi", &a_len);
    CU_ASSERT_EQUAL (merge ("m/Snapshots/a.vdi", d), -1);
    ASSERT_ONE_ERROR (at ("m/Snapshots/a.vdi"), "another child");
    CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "b.vdi"));
    assert_same_file (chain_rel (0), base_bytes, base_len);
    assert_same_file ("m/Snapshots/a.vdi", a_bytes, a_len);
    free (base_bytes);
    free (a_bytes);
    dir_remove ();
  }
}

/* An image held by another writer (here another open file description
 * of this process, which OFD locks treat alike): refused, nothing
 * written.  Each of the three images of a backward merge is tried:
 * the parent, the image, and the image's child.
 */
static void
test_merge_in_use (void)
{
  struct img base, mid, top;
  unsigned busy;

  for (busy = 0; busy < 3; ++busy) {
    struct vdi_image *held;
    uint8_t *bytes;
    size_t len;

    test_log_reset ();
    dir_make ();
    img_base (&base, 1, 2, "DD");
    img_child (&mid, 2, &base, "DZ");
    img_child (&top, 3, &mid, "FD");
    img_write (&base, chain_rel (0));
    img_write (&mid, chain_rel (1));
    img_write (&top, chain_rel (2));
    bytes = slurp (chain_rel (0), &len);
    held = vdi_image_open (at (chain_rel (busy)), VDI_OPEN_WRITE);
    CU_ASSERT_PTR_NOT_NULL_FATAL (held);
    CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_PARENT), -1);
    ASSERT_ONE_ERROR (at (chain_rel (busy)), "in use");
    vdi_image_close (held);
    assert_closed (chain_rel (0));
    assert_closed (chain_rel (1));
    assert_same_file (chain_rel (0), bytes, len);
    CU_ASSERT_EQUAL (access (at (chain_rel (1)), F_OK), 0);
    free (bytes);
    dir_remove ();
  }
}

/* A base, or a child whose parent is missing: refused. */
static void
test_merge_no_parent (void)
{
  struct img base, child;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_write (&base, chain_rel (0));
  CU_ASSERT_EQUAL (merge (chain_rel (0), VDI_MERGE_INTO_PARENT), -1);
  ASSERT_ONE_ERROR (at (chain_rel (0)), "not a differencing image");

  test_log_reset ();
  img_child (&child, 2, &base, "DF");
  img_write (&child, chain_rel (1));
  CU_ASSERT_EQUAL (unlink (at (chain_rel (0))), 0);
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_CHILD), -1);
  CU_ASSERT_EQUAL (test_log.errors, 1);
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "d1.vdi"));
  dir_remove ();
}

/* A child larger than its parent cannot go into it. */
static void
test_merge_child_larger (void)
{
  struct img base, child;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_base (&child, 2, 3, "DDD");
  child.h.type = VDI_TYPE_DIFF;
  child.h.uuid_linkage = base.h.uuid_create;
  img_write (&base, chain_rel (0));
  img_write (&child, chain_rel (1));
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_PARENT), -1);
  ASSERT_ONE_ERROR (at (chain_rel (1)), "larger");
  assert_closed (chain_rel (0));
  assert_closed (chain_rel (1));
  dir_remove ();
}

/* With a registry, children are the media it nests: the parent's
 * other child there (in a folder no scan would read) stops the merge;
 * and a registered image cannot be the one removed.
 */
static void
test_merge_registry (void)
{
  struct img base, a, b;
  struct vbox_registry *reg;
  struct vdi_parent_search search = { .registry = NULL };
  struct vdi_merge m = { .direction = VDI_MERGE_INTO_PARENT,
                         .search = &search };
  char xml[1024], u1[VDI_UUID_STRLEN], u2[VDI_UUID_STRLEN];

  dir_make ();
  write_two_children (&base, &a, &b, "elsewhere/b.vdi");
  snprintf (xml, sizeof xml,
            "<HardDisk uuid=\"{%s}\" location=\"base.vdi\" format=\"VDI\">"
            "<HardDisk uuid=\"{%s}\" location=\"../elsewhere/b.vdi\" "
            "format=\"VDI\"/></HardDisk>",
            vdi_uuid_format (&base.h.uuid_create, u1),
            vdi_uuid_format (&b.h.uuid_create, u2));
  write_vbox ("m/m.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("m/m.vbox")), 0);
  search.registry = reg;

  /* Without the registry, the scan finds no other child. */
  CU_ASSERT_EQUAL (merge ("m/Snapshots/a.vdi", VDI_MERGE_INTO_CHILD), 0);
  ASSERT_NO_ERROR ();
  dir_remove ();
  vbox_registry_free (reg);

  /* The same again, with the registry. */
  test_log_reset ();
  dir_make ();
  write_two_children (&base, &a, &b, "elsewhere/b.vdi");
  write_vbox ("m/m.vbox", xml);
  reg = vbox_registry_new ();
  CU_ASSERT_EQUAL_FATAL (vbox_registry_load (reg, at ("m/m.vbox")), 0);
  search.registry = reg;
  CU_ASSERT_EQUAL (vdi_merge (at ("m/Snapshots/a.vdi"), &m), -1);
  ASSERT_ONE_ERROR (at ("m/Snapshots/a.vdi"), "another child");
  CU_ASSERT_PTR_NOT_NULL (strstr (test_log.last_error, "b.vdi"));

  /* b is registered: merging it into its parent would remove it. */
  test_log_reset ();
  CU_ASSERT_EQUAL (vdi_merge (at ("elsewhere/b.vdi"), &m), -1);
  ASSERT_ONE_ERROR (at ("elsewhere/b.vdi"), "registered");
  CU_ASSERT_EQUAL (access (at ("elsewhere/b.vdi"), F_OK), 0);
  vbox_registry_free (reg);
  dir_remove ();
}

/* Write the journal that a merge leaves when it is killed after
 * copying its data.
 */
static void
write_journal (const char *rel, const char *direction,
               const char *removed_rel, const struct vdi_uuid *removed,
               const struct vdi_uuid *parent,
               const struct vdi_uuid *parent_modify)
{
  char path[4096], a[VDI_UUID_STRLEN], b[VDI_UUID_STRLEN];
  char c[VDI_UUID_STRLEN];
  FILE *fp;

  snprintf (path, sizeof path, "%s.merge", at (rel));
  fp = fopen (path, "w");
  assert (fp != NULL);
  fprintf (fp, "vdi merge journal\ndirection=%s\nremoved=%s\n"
           "removed-uuid=%s\nparent-uuid=%s\nparent-modify-uuid=%s\n",
           direction, at (removed_rel), vdi_uuid_format (removed, a),
           vdi_uuid_format (parent, b), vdi_uuid_format (parent_modify, c));
  fclose (fp);
}

/* Killed after the data went into the parent (here: there was none)
 * and the journal was written, before the child's child was relinked:
 * running the merge again relinks it and removes the image.
 */
static void
test_merge_finish_into_parent (void)
{
  struct img base, mid, top;
  struct vdi_chain *chain;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&mid, 2, &base, "FF");
  img_child (&top, 3, &mid, "FD");
  img_write (&base, chain_rel (0));
  img_write (&mid, chain_rel (1));
  img_write (&top, chain_rel (2));
  write_journal (chain_rel (1), "into-parent", chain_rel (1),
                 &mid.h.uuid_create, &base.h.uuid_create,
                 &base.h.uuid_modify);
  /* The other direction is refused while the journal is there. */
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_CHILD), -1);
  ASSERT_ONE_ERROR (at (chain_rel (1)), "interrupted");
  test_log_reset ();

  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_PARENT), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (access (at (chain_rel (1)), F_OK), -1);
  chain = vdi_chain_open (at (chain_rel (2)), 0, &no_dirs);
  CU_ASSERT_PTR_NOT_NULL_FATAL (chain);
  CU_ASSERT_EQUAL (vdi_chain_depth (chain), 2);
  CU_ASSERT_EQUAL (block_byte (chain, 0), 1);
  CU_ASSERT_EQUAL (block_byte (chain, 1), 3);
  vdi_chain_free (chain);
  CU_ASSERT_EQUAL (test_log.warnings, 0);
  CU_ASSERT_EQUAL (access (at ("m/Snapshots/d1.vdi.merge"), F_OK), -1);
  dir_remove ();
}

/* Killed after the parent's data went into the child (here: there was
 * none) and the journal was written: running the merge again makes
 * the child a base and removes the parent.
 */
static void
test_merge_finish_into_child (void)
{
  struct img base, child;
  struct vdi_image *img;
  struct vdi_uuid none = { { 0 } };

  dir_make ();
  img_base (&base, 1, 2, "FF");
  img_child (&child, 2, &base, "DZ");
  img_write (&base, chain_rel (0));
  img_write (&child, chain_rel (1));
  write_journal (chain_rel (1), "into-child", chain_rel (0),
                 &base.h.uuid_create, &none, &none);
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_CHILD), 0);
  ASSERT_NO_ERROR ();
  CU_ASSERT_EQUAL (access (at (chain_rel (0)), F_OK), -1);
  img = open_img (chain_rel (1));
  CU_ASSERT_EQUAL (vdi_image_header (img)->type, VDI_TYPE_NORMAL);
  CU_ASSERT (vdi_uuid_is_null (&vdi_image_header (img)->uuid_linkage));
  CU_ASSERT_EQUAL (vdi_image_check (img), 0);
  vdi_image_close (img);
  dir_remove ();
}

/* A damaged journal stops the merge with one error. */
static void
test_merge_bad_journal (void)
{
  struct img base, child;
  FILE *fp;

  dir_make ();
  img_base (&base, 1, 2, "DD");
  img_child (&child, 2, &base, "DF");
  img_write (&base, chain_rel (0));
  img_write (&child, chain_rel (1));
  fp = fopen (at ("m/Snapshots/d1.vdi.merge"), "w");
  assert (fp != NULL);
  fputs ("vdi merge journal\ndirection=sideways\n", fp);
  fclose (fp);
  CU_ASSERT_EQUAL (merge (chain_rel (1), VDI_MERGE_INTO_PARENT), -1);
  ASSERT_ONE_ERROR (at ("m/Snapshots/d1.vdi.merge"), "journal");
  CU_ASSERT_EQUAL (access (at (chain_rel (1)), F_OK), 0);
  dir_remove ();
}

int
main (void)
{
  CU_pSuite s = test_init ("vdi-merge");

  ADD_TEST (s, test_merge_random_into_parent);
  ADD_TEST (s, test_merge_random_into_child);
  ADD_TEST (s, test_merge_zero_over_data);
  ADD_TEST (s, test_merge_partial_block);
  ADD_TEST (s, test_merge_two_children);
  ADD_TEST (s, test_merge_in_use);
  ADD_TEST (s, test_merge_no_parent);
  ADD_TEST (s, test_merge_child_larger);
  ADD_TEST (s, test_merge_registry);
  ADD_TEST (s, test_merge_finish_into_parent);
  ADD_TEST (s, test_merge_finish_into_child);
  ADD_TEST (s, test_merge_bad_journal);
  return test_run ();
}
