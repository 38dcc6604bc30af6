/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Declarations shared by the files of libvdi, not exported. */

#ifndef VDI_INTERNAL_H
#define VDI_INTERNAL_H

#include <pthread.h>

#include "libvdi.h"
#include "vdi-io.h"

/* The chain's lookup table (see vdi-chain.c): its entries, in pages
 * of TABLE_PAGE_ENTRIES.
 */
#define ENTRY_IMAGE_SHIFT 54
#define ENTRY_OFFSET_MASK ((UINT64_C (1) << ENTRY_IMAGE_SHIFT) - 1)
#define ENTRY_ZERO        UINT64_C (0)
#define ENTRY_BELOW       UINT64_C (1)
#define TABLE_PAGE_BITS    9
#define TABLE_PAGE_ENTRIES (UINT64_C (1) << TABLE_PAGE_BITS)

struct vdi_chain {
  struct vdi_image **images;    /* [0] is the top */
  int *fds;                     /* fds[i] of images[i], for the read path */
  uint64_t *sizes;              /* virtual size of images[i] */
  size_t depth;
  uint64_t size;                /* virtual size of the top image */
  unsigned unit_bits;           /* log2 of the table's unit */
  uint64_t units;
  /* A pointer per TABLE_PAGE_ENTRIES units to their entries (a shared
   * read-only page where they are all ZERO or all BELOW and no image
   * has a block), read and written atomically.
   */
  uint64_t **table;
  uint64_t table_pages;

  /* Serialises map and header updates of the top image; writes into
   * allocated blocks do not take it.
   */
  pthread_mutex_t lock;
  pthread_mutex_t flush_lock;   /* one flush at a time */
  struct allocation {           /* top blocks being allocated now */
    uint32_t block, slot;
  } *allocating;
  size_t nr_allocating;
  /* Counted slots that allocations which failed gave back, below
   * others still counted: the next allocations take them first.
   */
  uint32_t *released;
  size_t nr_released;
  pthread_cond_t allocated;     /* signalled when one is done */
  bool modified;                /* the modify UUID was renewed since open */
  bool dirty;                   /* written since the last flush; set
                                 * without the lock, so only ever read
                                 * and written atomically */
  /* The writes only copy into the top image what it reads already
   * (a merge into it), so its content, and its modify UUID, stay.
   */
  bool keep_modify_uuid;
  /* vdi_chain_hide_top emptied the top image in memory only: reads
   * fall through to its parent, and nothing may be written to it
   * until vdi_chain_reset_top has emptied the file too.
   */
  bool top_hidden;
};

/* May the image whose create UUID is uuid become images[n], the
 * parent of images[n - 1]?  Not if the chain would be deeper than
 * VDI_MAX_CHAIN_DEPTH, nor if images[0..n) holds it already (a
 * cycle).  Returns 0, or -1 with one error naming images[0].
 */
extern int vdi_chain_check_parent (struct vdi_image *const *images, size_t n,
                                   const struct vdi_uuid *uuid);

/* Close the images and free the chain, without flushing: for chains
 * that failed to build, and for vdi_chain_free once it has flushed.
 */
extern void vdi_chain_destroy (struct vdi_chain *chain);

/* Take the images out of a chain and free the rest of it, without
 * flushing: the caller owns images[0..*n) and the returned array.
 */
extern struct vdi_image **vdi_chain_release (struct vdi_chain *chain,
                                             size_t *n);

/* A list of strings: append a copy of s to *list of *n (-1 after an
 * error, the list as it was), and free a list.
 */
extern int vdi_strings_append (char ***list, size_t *n, const char *s);
extern void vdi_strings_free (char **list, size_t n);

/* The files of the differencing images whose parent is parent (their
 * parent UUID is its create UUID): with a registry, the media it
 * nests under parent's; otherwise found where vdi_chain_open would
 * find parent from them: parent's folder, the folders inside it, and
 * search's folders.  *paths (*n of them) is the caller's to free.
 */
extern int vdi_find_children (const struct vdi_image *parent,
                              const struct vdi_parent_search *search,
                              char ***paths, size_t *n);

/* The table entry of a unit, without a lock. */
static inline uint64_t
chain_entry (const struct vdi_chain *chain, uint64_t unit)
{
  const uint64_t *page = __atomic_load_n (&chain->table[unit >> TABLE_PAGE_BITS],
                                          __ATOMIC_ACQUIRE);

  return __atomic_load_n (&page[unit & (TABLE_PAGE_ENTRIES - 1)],
                          __ATOMIC_ACQUIRE);
}

/* For the write engine, with chain->lock held: give units [first,
 * last] pages of the chain's own (copies of the shared pages they
 * are in), so that chain_set_entry may change them.  Returns -1 after
 * an error, with no entry changed.
 */
extern int vdi_chain_own_units (struct vdi_chain *chain, uint64_t first,
                                uint64_t last);

static inline void
chain_set_entry (struct vdi_chain *chain, uint64_t unit, uint64_t value)
{
  uint64_t *page = chain->table[unit >> TABLE_PAGE_BITS];

  __atomic_store_n (&page[unit & (TABLE_PAGE_ENTRIES - 1)], value,
                    __ATOMIC_RELEASE);
}

extern void vdi_error (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));
extern void vdi_warning (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));
extern void vdi_debug (const char *fs, ...)
  __attribute__ ((__format__ (__printf__, 1, 2)));

/* Demote errors of this thread to debug messages while on, for
 * probing files that may well not be VDI images.  Returns the
 * previous setting.
 */
extern bool vdi_quiet (bool on);

/* Open path (mode O_RDONLY or O_RDWR) if it is a regular file; what
 * ("VDI images") completes "only files are ..." in the error for
 * anything else.  Returns the fd, or -1 after an error naming path.
 */
extern int vdi_open_regular (const char *path, int mode, const char *what)
  __attribute__ ((__nonnull__ (1, 3)));

/* Sync the folder of path, so that a rename, link or unlink in it is
 * on disk.  Logs an error naming path on failure.
 */
extern int vdi_sync_folder (const char *path);

/* What the journal of a merge says is left to do (vdi-journal.c). */
struct vdi_journal {
  enum vdi_merge_direction direction;
  char *removed;                /* the file to remove, absolute */
  struct vdi_uuid removed_uuid;
  /* The new parent of the images to relink: the children of the
   * removed image (into the parent), or the image given (into the
   * child).  Null: they become bases.
   */
  struct vdi_uuid parent;
  struct vdi_uuid parent_modify;
};

extern const char *vdi_journal_direction_name (enum vdi_merge_direction d);
/* Write the journal at path, safely (a temporary file, synced, renamed). */
extern int vdi_journal_write (const char *path, const struct vdi_journal *j);
/* Returns 1 and fills j (j->removed to free) if the journal at path
 * exists, 0 if not, -1 after an error (a damaged journal).
 */
extern int vdi_journal_read (const char *path, struct vdi_journal *j);
/* The same for the journal of a merge of filename, whose name goes to
 * *path (to free).
 */
extern int vdi_journal_of (const char *filename, char **path,
                           struct vdi_journal *j);

/* For the write engine: the image's own header and map, which it
 * changes, and the writes that persist them.
 */
extern struct vdi_header *vdi_image_header_for_update (struct vdi_image *img);
extern int vdi_image_write_header (struct vdi_image *img);
/* For a resize: the map in memory gets room for blocks entries (new
 * ones FREE, those past blocks dropped), and cBlocks becomes blocks.
 * Nothing is written.  Returns -1 after an error (no memory).
 */
extern int vdi_image_set_blocks (struct vdi_image *img, uint32_t blocks);
/* Grow the file to size bytes if it is shorter (never shrinks it). */
extern int vdi_image_extend (struct vdi_image *img, uint64_t size);
extern int vdi_image_sync (struct vdi_image *img);
/* Start writing back what has been written so far, without waiting
 * for it, so that a later sync has less to do.  Only a hint: errors
 * are left for the sync to report.
 */
extern void vdi_image_start_writeback (struct vdi_image *img);

/* Map entries change in memory.  At a flush the changed pages are
 * copied under the chain's lock, then written without it.
 */
struct vdi_map_update {
  size_t nr_pages;
  size_t *pages;                /* page numbers */
  uint8_t *data;                /* their copies, little endian */
};
/* Returns -1 after an error (no memory), with nothing changed. */
extern int vdi_image_set_map_entry (struct vdi_image *img, uint32_t block,
                                    uint32_t entry);
/* The first block from block from on whose entry is not FREE, or
 * cBlocks if there is none: pages of FREE entries are skipped whole.
 */
extern uint32_t vdi_image_next_not_free (const struct vdi_image *img,
                                         uint32_t from);
/* How many map entries the image keeps in memory: those of the pages
 * with an entry that is not FREE.
 */
extern uint64_t vdi_image_map_entries_held (const struct vdi_image *img);
/* Make the block map (every entry FREE) and the counter empty in
 * memory, with nothing left to write: what vdi_image_reset then puts
 * on disk.
 */
extern void vdi_image_forget_blocks (struct vdi_image *img);
extern int vdi_image_take_map_update (struct vdi_image *img,
                                      struct vdi_map_update *u);
extern int vdi_image_write_map_update (struct vdi_image *img,
                                       const struct vdi_map_update *u);
extern void vdi_image_restore_map_update (struct vdi_image *img,
                                          const struct vdi_map_update *u);
extern void vdi_map_update_free (struct vdi_map_update *u);

#endif /* VDI_INTERNAL_H */
