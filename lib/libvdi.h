/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* libvdi: VirtualBox VDI images and chains, with nothing of nbdkit.
 *
 * Errors are reported through the log function (vdi_set_log_function)
 * as one line that names the file and the problem; the function that
 * failed then returns -1 or NULL.
 */

#ifndef LIBVDI_H
#define LIBVDI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vdi-format.h"

/* Logging. */
enum vdi_log_level { VDI_LOG_ERROR, VDI_LOG_WARNING, VDI_LOG_DEBUG };
typedef void (*vdi_log_function) (enum vdi_log_level level, const char *msg);

/* The default prints errors and warnings to stderr and drops debug. */
extern void vdi_set_log_function (vdi_log_function fn);

/* UUIDs, held in the order of their text form (RFC 4122). */
struct vdi_uuid {
  uint8_t bytes[16];
};

/* "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx" plus the NUL. */
#define VDI_UUID_STRLEN 37

/* Convert between the header's GUID byte order and struct vdi_uuid. */
extern void vdi_uuid_from_disk (struct vdi_uuid *uuid, const uint8_t disk[16])
  __attribute__ ((__nonnull__ (1, 2)));
extern void vdi_uuid_to_disk (const struct vdi_uuid *uuid, uint8_t disk[16])
  __attribute__ ((__nonnull__ (1, 2)));
/* Parse text with or without braces, in any case.  Returns 0 or -1
 * (nothing is logged: the caller knows what the text was).
 */
extern int vdi_uuid_parse (const char *text, struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1, 2)));
/* Lowercase, without braces, into buf[VDI_UUID_STRLEN]; returns buf. */
extern char *vdi_uuid_format (const struct vdi_uuid *uuid, char *buf)
  __attribute__ ((__nonnull__ (1, 2)));
extern bool vdi_uuid_is_null (const struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1)));
extern bool vdi_uuid_equal (const struct vdi_uuid *a, const struct vdi_uuid *b)
  __attribute__ ((__nonnull__ (1, 2)));
/* A random (version 4) UUID. */
extern int vdi_uuid_generate (struct vdi_uuid *uuid)
  __attribute__ ((__nonnull__ (1)));

/* A header in host byte order, whichever layout it came from.  Field
 * names follow VirtualBox (cbDisk = disk_size, offBlocks =
 * blocks_offset, ...).  For a v0 image, header_size is 348,
 * blocks_offset and data_offset are computed, block_extra is 0 and
 * uuid_parent_modify is null.
 */
struct vdi_header {
  char file_info[65];           /* szFileInfo, always NUL-terminated */
  uint32_t version;
  uint32_t header_size;         /* cbHeader */
  uint32_t type;
  uint32_t flags;
  char comment[257];            /* always NUL-terminated */
  uint32_t blocks_offset;       /* offBlocks */
  uint32_t data_offset;         /* offData */
  struct vdi_disk_geometry legacy_geometry;
  uint64_t disk_size;           /* cbDisk, as stored */
  uint32_t block_size;          /* cbBlock */
  uint32_t block_extra;         /* cbBlockExtra */
  uint32_t blocks;              /* cBlocks */
  uint32_t blocks_allocated;    /* cBlocksAllocated */
  struct vdi_uuid uuid_create;
  struct vdi_uuid uuid_modify;
  struct vdi_uuid uuid_linkage;
  struct vdi_uuid uuid_parent_modify;
  struct vdi_disk_geometry lchs_geometry; /* zero unless cbHeader >= 400 */
};

/* Decode the first len bytes of a file (at most VDI_HEADER_READ_SIZE
 * are looked at).  Checks only what is needed to know the layout:
 * the file is long enough, the signature, the version, cbHeader.
 */
extern int vdi_header_decode (const char *filename,
                              const void *buf, size_t len,
                              struct vdi_header *h)
  __attribute__ ((__nonnull__ (1, 2, 4)));

/* Check every field as VirtualBox does on open, and bound every value
 * that feeds an offset or an allocation by file_size.  One error
 * naming filename for the first failed check.
 */
extern int vdi_header_validate (const char *filename,
                                const struct vdi_header *h,
                                uint64_t file_size)
  __attribute__ ((__nonnull__ (1, 2)));

/* Encode a version 1.1 header (cbHeader 384 or 400) into
 * buf[VDI_HEADER_READ_SIZE]; the bytes past the header are zeroed.
 */
extern void vdi_header_encode (const struct vdi_header *h, void *buf)
  __attribute__ ((__nonnull__ (1, 2)));

/* A header for a new image in VirtualBox's layout: version 1.1 with
 * the 400-byte header, map and data aligned to 1 MiB.  The caller
 * sets the UUIDs.
 */
extern void vdi_header_init_dynamic (struct vdi_header *h, uint32_t type,
                                     uint64_t disk_size, uint32_t block_size)
  __attribute__ ((__nonnull__ (1)));

/* The largest disk a new image with blocks of block_size can hold in
 * that layout: its map must end below the 32-bit data offset (about
 * 1023.5 TiB with 1 MiB blocks).
 */
extern uint64_t vdi_header_max_disk_size (uint32_t block_size);

/* The size the guest sees: cbDisk rounded down to a sector, as
 * VirtualBox does (QEMU rounds up).
 */
extern uint64_t vdi_header_virtual_size (const struct vdi_header *h)
  __attribute__ ((__nonnull__ (1)));

/* Where the data of a block slot starts in the file (after the
 * cbBlockExtra bytes).  The header must have been validated.
 */
extern uint64_t vdi_header_slot_offset (const struct vdi_header *h,
                                        uint32_t slot)
  __attribute__ ((__nonnull__ (1)));

/* Where the first n slots end: the file size they need. */
extern uint64_t vdi_header_slots_end (const struct vdi_header *h,
                                      uint64_t n)
  __attribute__ ((__nonnull__ (1)));

/* A size for people: "4 MiB", "1.95 MiB", "512 B", into buf; returns
 * buf.
 */
extern const char *vdi_human_size (uint64_t n, char *buf, size_t len)
  __attribute__ ((__nonnull__ (2)));

/* "dynamic", "fixed", "undo", "differencing" or "unknown". */
extern const char *vdi_type_name (uint32_t type);

/* One open VDI file. */
struct vdi_image;

#define VDI_OPEN_HEADER_ONLY  1 /* do not load the block map, no lock */
#define VDI_OPEN_WRITE        2 /* read-write, with an exclusive lock */
#define VDI_OPEN_EXCLUSIVE    4 /* read-only, with an exclusive lock: for
                                 * an image read and then removed */

/* Open, read and validate the header and (unless
 * VDI_OPEN_HEADER_ONLY) load and validate the block map.  The file is
 * locked with QEMU's lock bytes (OFD locks): as a reader when
 * read-only, which other readers share, and as the writer with
 * VDI_OPEN_WRITE or VDI_OPEN_EXCLUSIVE, which nobody shares but
 * QEMU's force-share (-U) readers, so that a second user fails with
 * "image is in use".  VDI_OPEN_WRITE fails on version 0 images, which
 * are only read.
 */
extern struct vdi_image *vdi_image_open (const char *filename,
                                         unsigned flags)
  __attribute__ ((__nonnull__ (1)));
extern void vdi_image_close (struct vdi_image *img);

extern const char *vdi_image_filename (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
extern const struct vdi_header *vdi_image_header (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
extern int vdi_image_fd (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
extern bool vdi_image_is_writable (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
/* Reopen an image opened read-only for writing, trading its reader's
 * lock for the writer's ("image is in use" if another process has
 * the image open).
 */
extern int vdi_image_make_writable (struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
/* The same lock trade for an image that stays read-only: no other
 * process may have it open afterwards.
 */
extern int vdi_image_lock_exclusive (struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
/* False if opened with VDI_OPEN_HEADER_ONLY. */
extern bool vdi_image_has_map (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));
/* The block map entry of block i (i < cBlocks); the map must be loaded. */
extern uint32_t vdi_image_map_entry (const struct vdi_image *img, uint32_t i)
  __attribute__ ((__nonnull__ (1)));

/* VirtualBox's limit on the depth of a media registry tree. */
#define VDI_MAX_CHAIN_DEPTH 300

/* Create an empty image with this header (every block FREE).  The
 * file appears under its name only once complete.  Fails if the disk
 * is larger than vdi_header_max_disk_size allows, or if the header
 * does not validate.
 */
extern int vdi_image_create (const char *filename, const struct vdi_header *h)
  __attribute__ ((__nonnull__ (1, 2)));

/* Empty a writable image, as VirtualBox resets a differencing image:
 * every block FREE, no data, a new modify UUID, the create and
 * linkage UUIDs kept, the parent-modify UUID set to parent_modify
 * (the parent's current modify UUID) unless NULL; synced to disk.
 */
extern int vdi_image_reset (struct vdi_image *img,
                            const struct vdi_uuid *parent_modify)
  __attribute__ ((__nonnull__ (1)));

/* A chain of images as the guest sees it: images[0] is the top
 * image, images[n-1] the base.
 */
struct vdi_chain;

/* Take ownership of the images (also on error), check each link and
 * resolve the chain into one lookup table.
 */
extern struct vdi_chain *vdi_chain_new (struct vdi_image **images, size_t n)
  __attribute__ ((__nonnull__ (1)));
/* Write what is not flushed yet, close the images, free the chain. */
extern void vdi_chain_free (struct vdi_chain *chain);

/* Give back the memory libvdi keeps for reuse (buffers that fill new
 * blocks) and what the C library holds freed, for a server that has
 * closed all its images and waits for the next client.
 */
extern void vdi_release_memory (void);

/* A differencing layer over something that is not a VDI chain, such
 * as the plugin below the vdidiff filter: a chain whose only image
 * may be a differencing image, and whose FREE blocks read from the
 * struct vdi_below passed to each call.  Takes ownership of img.
 */
extern struct vdi_chain *vdi_layer_new (struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));

/* The comment of the differencing images the vdidiff filter creates.
 * Over a disk that is not a VDI image it has no parent modification
 * UUID to record, so such a layer has a null one: vdi_chain_open then
 * says that no VDI image is its parent, rather than "not found".
 */
#define VDI_VDIDIFF_COMMENT "nbdkit vdidiff filter"

/* A description of the chain for people, which also carries the top
 * image's UUIDs: "VirtualBox <type> image {<create>}, modification
 * {<modify>}, chain depth <N>".  The vdidiff filter reads it back
 * (vdi_description_parse) from the vdi plugin below it to link its
 * differencing image to the right parent.  Free the string.
 */
extern char *vdi_chain_description (const struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));
extern int vdi_description_parse (const char *description,
                                  struct vdi_uuid *create,
                                  struct vdi_uuid *modify)
  __attribute__ ((__nonnull__ (1, 2, 3)));

/* Where vdi_chain_open looks for parents. */
struct vbox_registry;
struct vdi_parent_search {
  /* If set, parents are looked up in the registry only. */
  const struct vbox_registry *registry;
  /* Otherwise the folders of the images and these folders are read. */
  const char *const *dirs;
  size_t nr_dirs;
  /* How the user names more folders and a registry ("parent-dir=",
   * "registry="; "--parent-dir", "--registry"), for the hints of the
   * errors when a parent is not found or found twice.  NULL: no hint.
   */
  const char *dirs_option;
  const char *registry_option;
};

/* Open filename (with top_flags, e.g. VDI_OPEN_WRITE) and, if it is a
 * differencing image, its parents (read-only), and resolve the whole
 * chain.
 */
extern struct vdi_chain *vdi_chain_open (const char *filename,
                                         unsigned top_flags,
                                         const struct vdi_parent_search *search)
  __attribute__ ((__nonnull__ (1, 3)));

extern uint64_t vdi_chain_size (const struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));
extern size_t vdi_chain_depth (const struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));
extern struct vdi_image *vdi_chain_image (const struct vdi_chain *chain,
                                          size_t i)
  __attribute__ ((__nonnull__ (1)));
/* The granularity of the lookup table: the smallest block size in
 * the chain.  Extents never change state inside one such unit.
 */
extern uint32_t vdi_chain_granularity (const struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));

/* What lies below the chain: where a block that is FREE in every
 * image reads from.  NULL (or a NULL pread) means zeros, as under a
 * base image; the vdidiff filter passes the plugin below it.
 */
struct vdi_below {
  int (*pread) (void *opaque, void *buf, uint32_t count, uint64_t offset);
  void *opaque;
};

/* Read count bytes at offset; offset + count must be within the size. */
extern int vdi_chain_pread (const struct vdi_chain *chain, void *buf,
                            uint32_t count, uint64_t offset,
                            const struct vdi_below *below)
  __attribute__ ((__nonnull__ (1, 2)));

/* Call fn for each run of data, zeros, or blocks FREE all the way
 * down ("below", zeros for a chain that has nothing below it) that
 * covers [offset, offset + count), merging neighbours of the same
 * type.  Stops early (after the first run) when only_first is true,
 * or when fn returns -1, which is then returned.
 */
enum vdi_extent_type { VDI_EXTENT_DATA, VDI_EXTENT_ZERO, VDI_EXTENT_BELOW };
typedef int (*vdi_extent_function) (void *opaque, uint64_t offset,
                                     uint64_t length,
                                     enum vdi_extent_type type);
extern int vdi_chain_extents (const struct vdi_chain *chain,
                              uint64_t offset, uint64_t count,
                              bool only_first,
                              vdi_extent_function fn, void *opaque)
  __attribute__ ((__nonnull__ (1, 5)));

/* Writing changes only the top image, which must have been opened
 * with VDI_OPEN_WRITE.  A write that does not cover a whole
 * unallocated block completes it with what the chain (and below)
 * holds there and allocates it whole, as VirtualBox does.
 */
#define VDI_WRITE_FUA   1       /* sync the image before returning */
#define VDI_ZERO_FAST   2       /* fail with ENOTSUP rather than write data */

/* buf NULL writes zeros (vdi_chain_zero adds the fast zero check). */
extern int vdi_chain_pwrite (struct vdi_chain *chain, const void *buf,
                             uint32_t count, uint64_t offset, unsigned flags,
                             const struct vdi_below *below)
  __attribute__ ((__nonnull__ (1)));
/* Zero a range: whole unallocated blocks become ZERO entries (never
 * FREE, which would show the parent's data again), allocated ranges
 * are zeroed in place (punching holes where the file system can).
 */
extern int vdi_chain_zero (struct vdi_chain *chain, uint32_t count,
                           uint64_t offset, unsigned flags,
                           const struct vdi_below *below)
  __attribute__ ((__nonnull__ (1)));
/* Renew the modify UUID if there were writes, write the header and
 * sync the top image.
 */
extern int vdi_chain_flush (struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));

/* Serve the chain as if its top image were empty, as VirtualBox shows
 * a disk whose differencing image it empties (resets) at power-on:
 * the top image's block map and counter become empty in memory only
 * and the lookup table is resolved again, so reads and extents fall
 * through to its parent.  Nothing is written.  The chain must have at
 * least two images, the top one still read-only, and no request may
 * run meanwhile.  Until vdi_chain_reset_top, writes fail with EROFS
 * and flushes do nothing, so the file never changes.  The description
 * (vdi_chain_description) names the parent, whose content is shown.
 */
extern int vdi_chain_hide_top (struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));

/* Empty the hidden top image on disk as vdi_image_reset does, with
 * its parent's modify UUID as parent-modify UUID; then writes go to
 * it.  The top image must have been made writable first
 * (vdi_image_make_writable).  Nothing that was read changes: the
 * chain already showed the parent there.
 */
extern int vdi_chain_reset_top (struct vdi_chain *chain)
  __attribute__ ((__nonnull__ (1)));

/* Structural check of an image, as after a crash.  vdi_image_open
 * already checks the header and each map entry (in range, inside the
 * file, below the allocation counter, not shared); this adds what
 * concerns the whole image: a fixed image has every block, and the
 * file holds every allocated slot.  Returns 0 if clean, else -1 with
 * one error per problem.
 */
extern int vdi_image_check (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));

/* Slots counted in the header (cBlocksAllocated) that no map entry
 * uses.  A crash between an allocation and the next flush leaves
 * them; they waste space but do no harm, and the write engine hands
 * them out again once the counter has reached cBlocks.  The map must
 * be loaded.
 */
extern uint32_t vdi_image_leaked_slots (const struct vdi_image *img)
  __attribute__ ((__nonnull__ (1)));

/* Merging a differencing image with its parent, as VirtualBox does
 * when it deletes a snapshot (vdi-merge.c).
 */
enum vdi_merge_direction {
  VDI_MERGE_INTO_PARENT,        /* the image's blocks go into its parent,
                                 * then the image is removed */
  VDI_MERGE_INTO_CHILD,         /* the parent's blocks go into the image,
                                 * which takes the parent's place; the
                                 * parent is removed */
};
typedef void (*vdi_progress_function) (void *opaque,
                                       uint64_t done, uint64_t total);
struct vdi_merge {
  enum vdi_merge_direction direction;
  /* Where the parents and children of the images are found. */
  const struct vdi_parent_search *search;
  vdi_progress_function progress; /* or NULL */
  void *opaque;
  /* Stop before removing the image that is merged away, and leave its
   * journal: for a caller that first rewrites the settings file that
   * names the image (vdi-img snapshot delete), then calls
   * vdi_merge_remove.  An image the registry names may then be the
   * one merged away.
   */
  bool keep_removed;
};

/* Merge the differencing image filename with its parent.  Returns 0,
 * or -1 after one error naming the file and the problem; nothing is
 * written when a precondition fails.  A merge that was interrupted
 * (killed, power lost) is finished by running it again.
 */
extern int vdi_merge (const char *filename, const struct vdi_merge *merge)
  __attribute__ ((__nonnull__ (1, 2)));

/* After vdi_merge with keep_removed: remove the image merged away and
 * the journal (nothing if there is no journal).
 */
extern int vdi_merge_remove (const char *filename)
  __attribute__ ((__nonnull__ (1)));

/* Is a merge of filename unfinished (its journal is there)?  Returns
 * 1 and its direction, 0, or -1 after an error.
 */
extern int vdi_merge_pending (const char *filename,
                              enum vdi_merge_direction *direction)
  __attribute__ ((__nonnull__ (1, 2)));

/* Compact an image that no other process has open, as VirtualBox's
 * vdiCompact does (vdi-compact.c): every allocated block whose data
 * is all zeros becomes a ZERO entry (never FREE: in a differencing
 * image the parent would show through), the blocks at the end of the
 * file move down into the slots freed, and the file is cut after the
 * last block.  What the image reads does not change.  progress (or
 * NULL) is told the slots visited of those counted.  Returns 0, or
 * -1 after one error naming the file and the problem.  A compaction
 * that was interrupted leaves an image that reads the same and is
 * finished by running it again.
 */
extern int vdi_compact (const char *filename,
                        vdi_progress_function progress, void *opaque)
  __attribute__ ((__nonnull__ (1)));

/* Resize the dynamic or differencing image filename to size bytes
 * (a multiple of 512, at least 1 MiB), as VirtualBox does
 * (vdi-resize.c).  Growing adds FREE blocks; shrinking needs shrink
 * and is refused where anything past the new end holds data.  Fixed
 * images are refused, as VirtualBox does.  Returns 0, or -1 after one
 * error naming the file; nothing is written when a precondition
 * fails.  An interrupted resize leaves the image as it was, or
 * resized; running it again finishes it.
 */
extern int vdi_resize (const char *filename, uint64_t size, bool shrink)
  __attribute__ ((__nonnull__ (1)));

#endif /* LIBVDI_H */
