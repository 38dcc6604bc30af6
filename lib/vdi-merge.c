/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Merging a differencing image with its parent, as VirtualBox's
 * VDMerge does when a snapshot is deleted.
 *
 * Into the parent (backward): every block the child holds goes into
 * the parent through the write engine, with the parent as the top of
 * its own chain: data is written (allocated at the parent's counter,
 * copied up where the blocks sizes differ), a ZERO block becomes a
 * ZERO entry (or zeros in an allocated block), never FREE.  Then the
 * child's own children are linked to the parent and the child is
 * removed.  Into the child (forward): every block that the child
 * lacks and the parent holds is copied into the child, which then
 * links to the parent's parent (or becomes a base) and the parent is
 * removed.  The image that survives keeps its create UUID.
 *
 * A merge into the child leaves the child's modify UUID as it was:
 * what the child reads does not change, so its own children stay
 * current.  Relinked images get the surviving parent's modify UUID as
 * their parent-modify UUID.  VirtualBox leaves the old value, which no
 * longer names anything; it never checks the field, but vdi_chain_open
 * warns when it is stale, and a merge that kept the chain's content
 * should not cause a warning.  An image that becomes a base also
 * becomes a dynamic image: VirtualBox only clears its parent UUID and
 * leaves the type "differencing", which qemu-img refuses to open and
 * VirtualBox itself opens only as a diff with a missing parent.
 *
 * The order makes every step safe to interrupt.  While data is
 * copied, the image receiving it is shadowed where it changes (the
 * child's blocks hide the parent's; the child receives only what it
 * read from the parent anyway), so every chain reads what it read
 * before; a second run copies the same data again.  The receiver is
 * flushed (data, header, map, each synced) before anything is
 * relinked.  Then a journal, IMAGE.merge beside the image given, says
 * what is left: which images get which new parent, which file goes.
 * Each relink is one header write and sync, after which that image
 * reads the same through its new parent.  The file that goes is
 * removed last, then the journal.  A merge that finds its journal
 * does only what the journal says is left.  A caller that must first
 * rewrite a settings file naming the removed image (vdi-img snapshot
 * delete) asks for the removal to wait (keep_removed) and does it
 * with vdi_merge_remove once the settings are saved.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <unistd.h>
#include <sys/stat.h>

#include "cleanup.h"
#include "minmax.h"
#include "rounding.h"

#include "vbox-registry.h"
#include "vdi-internal.h"

/* Data moves in runs of up to this many bytes (VirtualBox uses
 * 16 MiB too), or one block where blocks are larger.
 */
#define MERGE_RUN_SIZE UINT32_C (16 * 1024 * 1024)

/* Every this many bytes, the receiver's writeback is started, so that
 * the disk writes while the merge copies, and the flush at the end
 * waits for little.
 */
#define MERGE_WRITEBACK_SIZE (64 * 1024 * 1024)

static int
remove_file (const char *path)
{
  if (unlink (path) == -1 && errno != ENOENT) {
    vdi_error ("%s: unlink: %m", path);
    return -1;
  }
  return vdi_sync_folder (path);
}

/* Give img a new parent (a null one: img becomes a dynamic base), on
 * disk before this returns.
 */
static int
relink (struct vdi_image *img, const struct vdi_uuid *parent,
        const struct vdi_uuid *parent_modify)
{
  struct vdi_header *h = vdi_image_header_for_update (img);

  h->uuid_linkage = *parent;
  h->uuid_parent_modify = *parent_modify;
  if (vdi_uuid_is_null (parent) && h->type == VDI_TYPE_DIFF)
    h->type = VDI_TYPE_NORMAL;
  if (vdi_image_write_header (img) == -1 || vdi_image_sync (img) == -1)
    return -1;
  vdi_debug ("%s: relinked", vdi_image_filename (img));
  return 0;
}

/* Open path to change it (flags VDI_OPEN_WRITE) or to remove it
 * (VDI_OPEN_EXCLUSIVE): with the exclusive lock either way, so that no
 * server and no other merge has it.
 */
static struct vdi_image *
open_locked (const char *path, unsigned flags)
{
  return vdi_image_open (path, flags);
}

/* Into the parent: link the children of the removed image to the
 * journal's parent.
 */
static int
relink_children (const struct vdi_journal *j,
                 const struct vdi_parent_search *search)
{
  struct vdi_image *removed;
  char **children = NULL;
  size_t nr_children = 0, i;
  char a[VDI_UUID_STRLEN];
  int r = -1;

  if (access (j->removed, F_OK) == -1)
    return 0;                   /* removed already */
  removed = open_locked (j->removed, VDI_OPEN_EXCLUSIVE);
  if (removed == NULL)
    return -1;
  if (!vdi_uuid_equal (&vdi_image_header (removed)->uuid_create,
                       &j->removed_uuid)) {
    vdi_error ("%s: is not the image %s that the merge was removing",
               j->removed, vdi_uuid_format (&j->removed_uuid, a));
    goto out;
  }
  if (vdi_find_children (removed, search, &children, &nr_children) == -1)
    goto out;
  for (i = 0; i < nr_children; ++i) {
    struct vdi_image *child = open_locked (children[i], VDI_OPEN_WRITE);

    if (child == NULL ||
        relink (child, &j->parent, &j->parent_modify) == -1) {
      vdi_image_close (child);
      goto out;
    }
    vdi_image_close (child);
  }
  r = 0;

 out:
  vdi_strings_free (children, nr_children);
  vdi_image_close (removed);
  return r;
}

/* Into the child: link the image given to the journal's parent,
 * unless done.
 */
static int
relink_survivor (const char *filename, const struct vdi_journal *j)
{
  struct vdi_image *img = open_locked (filename, VDI_OPEN_WRITE);
  int r = 0;

  if (img == NULL)
    return -1;
  if (vdi_uuid_equal (&vdi_image_header (img)->uuid_linkage,
                      &j->removed_uuid))
    r = relink (img, &j->parent, &j->parent_modify);
  vdi_image_close (img);
  return r;
}

/* Remove the image that the journal names, then the journal. */
static int
remove_merged (const char *journal_path, const struct vdi_journal *j)
{
  if (remove_file (j->removed) == -1)
    return -1;
  return remove_file (journal_path);
}

/* Do what the journal says is left: the relinks, then, unless the
 * caller keeps them for later (keep_removed), the removals.
 */
static int
finish (const char *filename, const char *journal_path,
        const struct vdi_journal *j, const struct vdi_merge *merge)
{
  int r;

  if (j->direction == VDI_MERGE_INTO_PARENT)
    r = relink_children (j, merge->search);
  else
    r = relink_survivor (filename, j);
  if (r == -1 || merge->keep_removed)
    return r;
  return remove_merged (journal_path, j);
}

/* After each run of the copy, from offset done of total: start the
 * receiver's writeback now and then, and tell the caller.
 */
static void
report (const struct vdi_merge *merge, struct vdi_image *receiver,
        uint64_t done, uint64_t total)
{
  if (done / MERGE_WRITEBACK_SIZE != (done - 1) / MERGE_WRITEBACK_SIZE)
    vdi_image_start_writeback (receiver);
  if (merge->progress)
    merge->progress (merge->opaque, done, total);
}

/* The number of blocks from b on that hold data in slots that follow
 * each other in the file, up to MERGE_RUN_SIZE bytes (at least one).
 */
static uint32_t
data_run (const struct vdi_image *img, uint32_t b, uint32_t end)
{
  const struct vdi_header *h = vdi_image_header (img);
  const uint32_t max = MAX (MERGE_RUN_SIZE / h->block_size, UINT32_C (1));
  const uint32_t first = vdi_image_map_entry (img, b);
  uint32_t n = 1;

  /* Extra bytes before each slot would split the run anyway. */
  if (h->block_extra > 0)
    return 1;
  while (n < max && b + n < end &&
         vdi_image_map_entry (img, b + n) == first + n)
    n++;
  return n;
}

/* Write every block that child holds into the top image of parent:
 * its FREE blocks are skipped without a look at each.
 */
static int
copy_into_parent (struct vdi_image *child, struct vdi_chain *parent,
                  const struct vdi_merge *merge)
{
  const struct vdi_header *h = vdi_image_header (child);
  const uint64_t size = vdi_header_virtual_size (h);
  const uint32_t end = DIV_ROUND_UP (size, (uint64_t) h->block_size);
  CLEANUP_FREE char *buf = malloc (MAX (MERGE_RUN_SIZE, h->block_size));
  uint64_t done = 0;
  uint32_t b, n;

  if (buf == NULL) {
    vdi_error ("malloc: %m");
    return -1;
  }
  for (b = vdi_image_next_not_free (child, 0); b < end;
       b = vdi_image_next_not_free (child, b + n)) {
    const uint32_t entry = vdi_image_map_entry (child, b);
    const uint64_t offset = (uint64_t) b * h->block_size;
    uint64_t len;

    n = VDI_BLOCK_IS_ALLOCATED (entry) ? data_run (child, b, end) : 1;
    len = MIN ((uint64_t) n * h->block_size, size - offset);
    if (entry == VDI_BLOCK_ZERO) {
      if (vdi_chain_zero (parent, len, offset, 0, NULL) == -1)
        return -1;
    }
    else {
      const uint64_t where = vdi_header_slot_offset (h, entry);

      if (vdi_full_pread (vdi_image_fd (child), buf, len, where) == -1) {
        vdi_error ("%s: pread at %" PRIu64 ": %m",
                   vdi_image_filename (child), where);
        return -1;
      }
      if (vdi_chain_pwrite (parent, buf, len, offset, 0, NULL) == -1)
        return -1;
    }
    done = offset + len;
    report (merge, parent->images[0], done, size);
  }
  if (done < size)
    report (merge, parent->images[0], size, size);
  return 0;
}

/* Does top block b of the chain, FREE in the top image, read anything
 * that the parent (image 1) decides: its data, or zeros that may come
 * from it (its ZERO entries, or its end)?  Such blocks must move into
 * the top image before it links past the parent.
 */
static bool
needs_parent (const struct vdi_chain *chain, uint32_t b)
{
  const uint32_t block_size = vdi_image_header (chain->images[0])->block_size;
  const uint64_t first = ((uint64_t) b * block_size) >> chain->unit_bits;
  const uint64_t last = MIN (first + (block_size >> chain->unit_bits),
                             chain->units);
  uint64_t u;

  for (u = first; u < last; ++u) {
    const uint64_t entry = chain_entry (chain, u);

    if (entry == ENTRY_ZERO || (entry != ENTRY_BELOW &&
                                entry >> ENTRY_IMAGE_SHIFT == 1))
      return true;
  }
  return false;
}

/* The number of blocks from b on that are FREE in the top image and
 * need the parent, up to MERGE_RUN_SIZE bytes (at least one).
 */
static uint32_t
parent_run (const struct vdi_chain *chain, uint32_t b, uint32_t end)
{
  const struct vdi_image *top = chain->images[0];
  const uint32_t block_size = vdi_image_header (top)->block_size;
  const uint32_t max = MAX (MERGE_RUN_SIZE / block_size, UINT32_C (1));
  uint32_t n = 1;

  while (n < max && b + n < end &&
         vdi_image_map_entry (top, b + n) == VDI_BLOCK_FREE &&
         needs_parent (chain, b + n))
    n++;
  return n;
}

/* Copy into the top image what it reads from its parent. */
static int
copy_into_child (struct vdi_chain *chain, const struct vdi_merge *merge)
{
  struct vdi_image *top = chain->images[0];
  const uint32_t block_size = vdi_image_header (top)->block_size;
  const uint64_t size = chain->size;
  const uint32_t end = DIV_ROUND_UP (size, (uint64_t) block_size);
  CLEANUP_FREE char *buf = malloc (MAX (MERGE_RUN_SIZE, block_size));
  uint32_t b, n;

  if (buf == NULL) {
    vdi_error ("malloc: %m");
    return -1;
  }
  for (b = 0; b < end; b += n) {
    const uint64_t offset = (uint64_t) b * block_size;
    uint64_t len;

    n = 1;
    if (vdi_image_map_entry (top, b) == VDI_BLOCK_FREE &&
        needs_parent (chain, b)) {
      n = parent_run (chain, b, end);
      len = MIN ((uint64_t) n * block_size, size - offset);
      if (vdi_chain_pread (chain, buf, len, offset, NULL) == -1 ||
          vdi_chain_pwrite (chain, buf, len, offset, 0, NULL) == -1)
        return -1;
    }
    report (merge, chain->images[0],
            MIN (offset + (uint64_t) n * block_size, size), size);
  }
  return 0;
}

/* The parent of a merge may have no child but the image being merged:
 * the others would read a parent whose content changes (into the
 * parent) or that is removed (into the child).
 */
static int
check_only_child (const struct vdi_image *child,
                  const struct vdi_image *parent,
                  const struct vdi_merge *merge)
{
  char **children;
  size_t nr_children, i;
  struct stat self, st;
  int r = 0;

  if (fstat (vdi_image_fd (child), &self) == -1) {
    vdi_error ("%s: fstat: %m", vdi_image_filename (child));
    return -1;
  }
  if (vdi_find_children (parent, merge->search, &children, &nr_children)
      == -1)
    return -1;
  for (i = 0; r == 0 && i < nr_children; ++i) {
    if (stat (children[i], &st) == 0 &&
        (st.st_dev != self.st_dev || st.st_ino != self.st_ino)) {
      vdi_error ("%s: the parent %s has another child, %s, which would "
                 "%s", vdi_image_filename (child),
                 vdi_image_filename (parent), children[i],
                 merge->direction == VDI_MERGE_INTO_PARENT
                 ? "see its content change" : "lose its parent");
      r = -1;
    }
  }
  vdi_strings_free (children, nr_children);
  return r;
}

/* A merge does not rewrite settings files, so an image that a
 * registry names must not be the one removed: the registry would name
 * a file that is gone.
 */
static int
check_not_registered (const struct vdi_image *removed,
                      const struct vdi_merge *merge)
{
  const struct vbox_medium *medium;
  char uuid[VDI_UUID_STRLEN];

  if (merge->search->registry == NULL)
    return 0;
  medium = vbox_registry_find_uuid (merge->search->registry,
                                    &vdi_image_header (removed)->uuid_create);
  if (medium == NULL)
    return 0;
  vdi_error ("%s: medium %s is registered in %s, which would name it "
             "after the merge removed it", vdi_image_filename (removed),
             vdi_uuid_format (&medium->uuid, uuid), medium->registry_file);
  return -1;
}

/* The children of child must be free to relink later: refuse now if
 * another process has one open.
 */
static int
check_children_free (const struct vdi_image *child,
                     const struct vdi_merge *merge)
{
  char **children;
  size_t nr_children, i;
  int r = 0;

  if (vdi_find_children (child, merge->search, &children, &nr_children)
      == -1)
    return -1;
  for (i = 0; r == 0 && i < nr_children; ++i) {
    struct vdi_image *img = open_locked (children[i], VDI_OPEN_WRITE);

    if (img == NULL)
      r = -1;
    vdi_image_close (img);
  }
  vdi_strings_free (children, nr_children);
  return r;
}

/* Into the parent: copy, flush, and say in j what is left.  Frees
 * the chain.
 */
static int
merge_into_parent (struct vdi_chain *chain, const struct vdi_merge *merge,
                   struct vdi_journal *j)
{
  struct vdi_image **images, *child;
  struct vdi_chain *parent;
  const struct vdi_header *ph;
  size_t n;
  int r;

  child = chain->images[0];
  if (chain->sizes[0] > chain->sizes[1]) {
    vdi_error ("%s: its size (%" PRIu64 " bytes) is larger than the size "
               "of its parent %s (%" PRIu64 " bytes): resize the parent "
               "first", vdi_image_filename (child), chain->sizes[0],
               vdi_image_filename (chain->images[1]), chain->sizes[1]);
    goto err;
  }
  if (check_children_free (child, merge) == -1)
    goto err;

  /* The parent becomes the top of a chain of its own. */
  images = vdi_chain_release (chain, &n);
  parent = vdi_chain_new (images + 1, n - 1);
  if (parent == NULL) {
    vdi_image_close (child);
    free (images);
    return -1;
  }
  free (images);

  r = copy_into_parent (child, parent, merge);
  if (r == 0)
    r = vdi_chain_flush (parent);
  if (r == 0) {
    ph = vdi_image_header (vdi_chain_image (parent, 0));
    j->removed = realpath (vdi_image_filename (child), NULL);
    j->removed_uuid = vdi_image_header (child)->uuid_create;
    j->parent = ph->uuid_create;
    j->parent_modify = ph->uuid_modify;
    if (j->removed == NULL) {
      vdi_error ("%s: realpath: %m", vdi_image_filename (child));
      r = -1;
    }
  }
  vdi_image_close (child);
  vdi_chain_free (parent);
  return r;

 err:
  vdi_chain_free (chain);
  return -1;
}

/* Into the child: copy, flush, and say in j what is left. */
static int
merge_into_child (struct vdi_chain *chain, const struct vdi_merge *merge,
                  struct vdi_journal *j)
{
  const struct vdi_header *ph = vdi_image_header (chain->images[1]);

  chain->keep_modify_uuid = true;
  if (copy_into_child (chain, merge) == -1 ||
      vdi_chain_flush (chain) == -1)
    return -1;
  j->removed = realpath (vdi_image_filename (chain->images[1]), NULL);
  if (j->removed == NULL) {
    vdi_error ("%s: realpath: %m", vdi_image_filename (chain->images[1]));
    return -1;
  }
  j->removed_uuid = ph->uuid_create;
  if (chain->depth > 2) {
    j->parent = ph->uuid_linkage;
    j->parent_modify = vdi_image_header (chain->images[2])->uuid_modify;
  }
  return 0;
}

int
vdi_merge (const char *filename, const struct vdi_merge *merge)
{
  const bool into_parent = merge->direction == VDI_MERGE_INTO_PARENT;
  CLEANUP_FREE char *journal_path = NULL;
  struct vdi_journal j;
  struct vdi_chain *chain;
  int r;

  r = vdi_journal_of (filename, &journal_path, &j);
  if (r == -1)
    return -1;
  if (r == 1) {
    if (j.direction != merge->direction) {
      vdi_error ("%s: a merge %s of this image was interrupted; run it "
                 "again to finish it", filename, vdi_journal_direction_name (j.direction));
      free (j.removed);
      return -1;
    }
    vdi_debug ("%s: finishing the merge that %s describes",
               filename, journal_path);
    r = finish (filename, journal_path, &j, merge);
    free (j.removed);
    return r;
  }

  /* Every precondition is checked before anything is written.  The
   * image that receives the data is opened for writing, the one that
   * goes only locked.
   */
  chain = vdi_chain_open (filename, into_parent ? VDI_OPEN_EXCLUSIVE
                          : VDI_OPEN_WRITE, merge->search);
  if (chain == NULL)
    return -1;
  if (chain->depth < 2) {
    vdi_error ("%s: not a differencing image: there is nothing to merge",
               filename);
    goto err;
  }
  if ((!merge->keep_removed &&
       check_not_registered (chain->images[into_parent ? 0 : 1], merge)
       == -1) ||
      check_only_child (chain->images[0], chain->images[1], merge) == -1 ||
      (into_parent ? vdi_image_make_writable (chain->images[1])
       : vdi_image_lock_exclusive (chain->images[1])) == -1)
    goto err;

  j.direction = merge->direction;
  if (into_parent)
    r = merge_into_parent (chain, merge, &j);
  else {
    r = merge_into_child (chain, merge, &j);
    vdi_chain_free (chain);
  }
  if (r == 0)
    r = vdi_journal_write (journal_path, &j);
  if (r == 0)
    r = finish (filename, journal_path, &j, merge);
  free (j.removed);
  return r;

 err:
  vdi_chain_free (chain);
  return -1;
}

int
vdi_merge_remove (const char *filename)
{
  CLEANUP_FREE char *journal_path = NULL;
  struct vdi_journal j;
  int r = vdi_journal_of (filename, &journal_path, &j);

  if (r <= 0)
    return r;
  r = remove_merged (journal_path, &j);
  free (j.removed);
  return r;
}

int
vdi_merge_pending (const char *filename, enum vdi_merge_direction *direction)
{
  CLEANUP_FREE char *journal_path = NULL;
  struct vdi_journal j;
  int r = vdi_journal_of (filename, &journal_path, &j);

  if (r == 1) {
    *direction = j.direction;
    free (j.removed);
  }
  return r;
}
