/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* Folder trees of small images for the unit tests of chains and
 * merges.  Images are written by test-common.c's test_write_image and
 * moved into a folder tree of their own (MACHINE/base.vdi,
 * MACHINE/Snapshots/child.vdi, ...) so that the folder scanning sees
 * exactly what each test puts there.  Each data slot of image number
 * n is filled with byte n, so a read through the chain shows which
 * image answered.
 */

#ifndef TEST_TREE_H
#define TEST_TREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "libvdi.h"

#define KiB 1024
#define BS (128 * KiB)

/* The folder tree of the current test, made by dir_make, removed with
 * everything in it by dir_remove.
 */
extern char *top_dir;
extern void dir_make (void);
extern void dir_remove (void);
/* top_dir/rel, in a static buffer (one of a few in turn). */
extern const char *at (const char *rel);
/* Make top_dir/rel and the folders above it. */
extern void mkdirs (const char *rel);

/* A UUID made from a number (never null). */
extern void uuid_n (struct vdi_uuid *u, unsigned n);

/* The description of one image. */
struct img {
  struct vdi_header h;
  const char *pattern;          /* one letter per block: F, Z or D */
};

extern void img_init (struct img *im, unsigned n, uint32_t block_size,
                      uint32_t blocks, const char *pattern);
/* The same with blocks of BS bytes. */
extern void img_base (struct img *im, unsigned n, uint32_t blocks,
                      const char *pattern);
/* A differencing child, number n, of parent, of its size and blocks. */
extern void img_child (struct img *im, unsigned n, const struct img *parent,
                       const char *pattern);
/* Write the image at top_dir/rel (its folders made as needed).  Data
 * blocks get slots in order, filled with the image number.
 */
extern void img_write (struct img *im, const char *rel);
/* Open top_dir/rel read-only; fails the test if it does not open. */
extern struct vdi_image *open_img (const char *rel);
/* Read block b (of BS bytes) through the chain and return its byte,
 * or -1 if the block does not hold one byte throughout.
 */
extern int block_byte (struct vdi_chain *chain, uint32_t b);

/* The whole file at top_dir/rel (*len gets its size), to be freed:
 * to show that something wrote nothing.
 */
extern uint8_t *slurp (const char *rel, size_t *len);
/* Whether top_dir/rel holds exactly the len bytes of buf now. */
extern bool same_file (const char *rel, const uint8_t *buf, size_t len);
/* Record a CUnit assertion of same_file. */
extern void assert_same_file (const char *rel, const uint8_t *before,
                              size_t before_len);

/* Write top_dir/rel, the settings file of machine "M" whose media
 * registry holds these HardDisk elements.
 */
extern void write_vbox (const char *rel, const char *disks);

#endif /* TEST_TREE_H */
