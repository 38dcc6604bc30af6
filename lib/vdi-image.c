/* nbdkit-vdi
 * Copyright the nbdkit-vdi authors
 * SPDX-License-Identifier: BSD-3-Clause
 */

/* One open VDI file: its header and its block map in host order, and
 * the primitives the write engine (vdi-write.c) builds on: locking,
 * writing the header, changing map entries in memory and writing the
 * changed pages of the map at a flush, creating images.
 *
 * The map is kept in pages of VDI_MAP_PAGE bytes, as it is written.
 * A page whose entries are all FREE is not kept: its pointer points at
 * free_page, one read-only page that every image shares.  So a map
 * takes memory for its blocks, not for its size: a 16 TiB image in
 * 1 MiB blocks holding one block takes a 128 KiB directory and one
 * page, where the whole map would take 64 MiB.  Readers take no lock:
 * they load the page pointer, then the entry, both atomically, and a
 * change to an entry of free_page first copies it into a page of the
 * image's own that it then publishes, so that readers see the old
 * entry or the new one.
 */

#include <config.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <inttypes.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>
#include <endian.h>
#include <sys/stat.h>

#include "bits.h"
#include "cleanup.h"
#include "minmax.h"
#include "rounding.h"

#include "vdi-internal.h"
#include "vdi-io.h"

/* The chain's lookup table keeps file offsets in 54 bits. */
#define VDI_MAX_FILE_SIZE (UINT64_C (1) << 54)

struct vdi_image {
  char *filename;
  int fd;
  bool writable;
  bool exclusive;               /* it holds the exclusive lock */
  uint64_t file_size;
  struct vdi_header header;
  /* A pointer per VDI_MAP_PAGE of the map to its ENTRIES_PER_PAGE
   * entries in host order (free_page if all are FREE; entries past
   * cBlocks are FREE), read and written atomically; NULL if the map
   * is not loaded.
   */
  uint32_t **map;
  uint8_t *map_dirty;           /* a bit per VDI_MAP_PAGE of the map
                                 * changed since it was last written */
};

/* Changed map entries reach the file a page at a time. */
#define VDI_MAP_PAGE 4096
#define ENTRIES_PER_PAGE (VDI_MAP_PAGE / 4)

/* The map is read from the file, and written empty, in pieces of this
 * many bytes (a whole number of pages).
 */
#define MAP_CHUNK (1024 * 1024)

static const uint32_t free_page[ENTRIES_PER_PAGE] = {
  [0 ... ENTRIES_PER_PAGE - 1] = VDI_BLOCK_FREE
};

static size_t
map_pages (const struct vdi_header *h)
{
  return DIV_ROUND_UP ((size_t) h->blocks, ENTRIES_PER_PAGE);
}

static uint32_t *
map_page (const struct vdi_image *img, size_t page)
{
  return __atomic_load_n (&img->map[page], __ATOMIC_ACQUIRE);
}

/* Free the pages of the map that are the image's own. */
static void
free_map_pages (struct vdi_image *img)
{
  size_t page;

  for (page = 0; page < map_pages (&img->header); ++page) {
    if (img->map[page] != free_page)
      free (img->map[page]);
    img->map[page] = (uint32_t *) free_page;
  }
}

/* Check entry i (slot) of the map as it loads: it must name a slot of
 * this image whose data lies inside the file, and no two entries may
 * share a slot (used has a bit for each slot seen so far).
 */
static int
check_map_entry (const struct vdi_image *img, uint32_t i, uint32_t slot,
                 uint8_t *used)
{
  const struct vdi_header *h = &img->header;

  /* Slots are handed out in order, so a slot at or past the counter
   * would be handed out again: VirtualBox calls that a bad header.
   */
  if (slot >= h->blocks_allocated) {
    vdi_error ("%s: corrupt block map: entry %" PRIu32
               " points to slot %" PRIu32 " but only %" PRIu32
               " blocks are allocated", img->filename, i, slot,
               h->blocks_allocated);
    return -1;
  }
  if (vdi_header_slots_end (h, slot + 1) > img->file_size) {
    const uint64_t start = vdi_header_slots_end (h, slot);

    if (start >= img->file_size)
      vdi_error ("%s: corrupt block map: entry %" PRIu32
                 " points to slot %" PRIu32 " at offset %" PRIu64
                 ", past the end of the file (%" PRIu64 " bytes)",
                 img->filename, i, slot, start, img->file_size);
    else
      vdi_error ("%s: corrupt block map: entry %" PRIu32
                 " points to slot %" PRIu32 " at offset %" PRIu64
                 ", which runs to %" PRIu64 ", past the end of the "
                 "file (%" PRIu64 " bytes)", img->filename, i, slot,
                 start, vdi_header_slots_end (h, slot + 1),
                 img->file_size);
    return -1;
  }
  if (bit_is_set (used, slot)) {
    uint32_t first = vdi_image_next_not_free (img, 0);

    while (first < i && vdi_image_map_entry (img, first) != slot)
      first = vdi_image_next_not_free (img, first + 1);
    vdi_error ("%s: corrupt block map: entries %" PRIu32 " and %" PRIu32
               " both point to slot %" PRIu32,
               img->filename, first, i, slot);
    return -1;
  }
  bit_set (used, slot);
  return 0;
}

/* Keep page number page of the map, whose entries (little endian,
 * FREE past cBlocks) are at le, unless they are all FREE, and check
 * its entries.
 */
static int
load_map_page (struct vdi_image *img, size_t page, const uint32_t *le,
               uint8_t *used)
{
  const size_t first = page * ENTRIES_PER_PAGE;
  const size_t end = MIN (first + ENTRIES_PER_PAGE,
                          (size_t) img->header.blocks);
  uint32_t *entries;
  size_t i;

  if (memcmp (le, free_page, VDI_MAP_PAGE) == 0)
    return 0;
  entries = malloc (VDI_MAP_PAGE);
  if (entries == NULL) {
    vdi_error ("%s: cannot allocate the block map: %m", img->filename);
    return -1;
  }
  for (i = 0; i < ENTRIES_PER_PAGE; ++i)
    entries[i] = le32toh (le[i]);
  img->map[page] = entries;

  for (i = first; i < end; ++i)
    if (VDI_BLOCK_IS_ALLOCATED (entries[i - first]) &&
        check_map_entry (img, i, entries[i - first], used) == -1)
      return -1;
  return 0;
}

/* Load the block map, MAP_CHUNK bytes at a time, and check every
 * entry (check_map_entry), keeping only the pages with an entry that
 * is not FREE.
 */
static int
load_map (struct vdi_image *img)
{
  const struct vdi_header *h = &img->header;
  const size_t map_size = 4 * (size_t) h->blocks;
  const size_t pages = map_pages (h);
  CLEANUP_FREE uint8_t *used = NULL;
  CLEANUP_FREE uint32_t *chunk = NULL;
  size_t start, len, page;

  img->map = malloc (pages * sizeof *img->map);
  img->map_dirty = calloc (bits_bytes (pages), 1);
  used = calloc (bits_bytes (h->blocks), 1);
  chunk = malloc (MAP_CHUNK);
  if (img->map == NULL || img->map_dirty == NULL || used == NULL ||
      chunk == NULL) {
    vdi_error ("%s: cannot allocate the block map (%" PRIu32 " entries): %m",
               img->filename, h->blocks);
    free (img->map);
    img->map = NULL;
    return -1;
  }
  for (page = 0; page < pages; ++page)
    img->map[page] = (uint32_t *) free_page;

  for (start = 0; start < map_size; start += len) {
    len = MIN ((size_t) MAP_CHUNK, map_size - start);
    /* The entries of the last page past cBlocks are FREE. */
    memset ((char *) chunk + len, 0xff,
            ROUND_UP (len, (size_t) VDI_MAP_PAGE) - len);
    if (vdi_full_pread (img->fd, chunk, len, h->blocks_offset + start) == -1) {
      vdi_error ("%s: reading the block map: %m", img->filename);
      return -1;
    }
    for (page = 0; page * VDI_MAP_PAGE < len; ++page)
      if (load_map_page (img, start / VDI_MAP_PAGE + page,
                         chunk + page * ENTRIES_PER_PAGE, used) == -1)
        return -1;
  }
  return 0;
}

/* Image locks are QEMU's (block/file-posix.c), so that each project
 * sees the other's users.  Lock byte LOCK_PERM_BASE + N says "I hold
 * permission N", LOCK_SHARED_BASE + N "I let nobody else have
 * permission N".  Every user takes a shared lock on its bytes, then
 * looks for the bytes of the other kind held by another open file.
 * OFD locks belong to the open file, so two opens in one process
 * conflict as two processes do, and closing the file drops them.
 */
#define LOCK_PERM_BASE       100
#define LOCK_SHARED_BASE     200
#define NR_PERMS             4
#define PERM_CONSISTENT_READ (1u << 0)
#define PERM_WRITE           (1u << 1)
#define PERM_RESIZE          (1u << 3)

/* As QEMU's users of an image format: a reader holds consistent-read,
 * the writer write and resize too, and neither lets others write or
 * resize.  So readers of both projects coexist, a writer has the
 * image alone, and only QEMU's force-share (-U) reads beside it.
 */
#define READER_PERMS   PERM_CONSISTENT_READ
#define WRITER_PERMS   (PERM_CONSISTENT_READ | PERM_WRITE | PERM_RESIZE)
#define UNSHARED_PERMS (PERM_WRITE | PERM_RESIZE)

/* A writer conflicts with any user, a reader only with writers. */
static void
in_use_error (const struct vdi_image *img, unsigned perms)
{
  vdi_error ("%s: image is in use: another process %s", img->filename,
             perms & PERM_WRITE ? "has opened it" : "has it open for writing");
}

/* Take (F_RDLCK) or drop (F_UNLCK) lock byte base + N for each
 * permission N in perms; -1 with errno set on failure.
 */
static int
set_lock_bytes (int fd, off_t base, unsigned perms, short type)
{
  unsigned n;

  for (n = 0; n < NR_PERMS; ++n) {
    struct flock fl = {
      .l_type = type, .l_whence = SEEK_SET, .l_start = base + n, .l_len = 1
    };

    if ((perms & (1u << n)) && fcntl (fd, F_OFD_SETLK, &fl) == -1)
      return -1;
  }
  return 0;
}

/* Take or drop the lock bytes of a user holding perms.  Taking them
 * succeeds beside QEMU's users and ours (check_locks finds those):
 * only an exclusive lock refuses it, which QEMU never takes but older
 * nbdkit-vdi writers took on the whole file.
 */
static int
set_locks (const struct vdi_image *img, int fd, unsigned perms, short type)
{
  if (set_lock_bytes (fd, LOCK_PERM_BASE, perms, type) == 0 &&
      set_lock_bytes (fd, LOCK_SHARED_BASE, UNSHARED_PERMS, type) == 0)
    return 0;
  if (errno == EAGAIN || errno == EACCES)
    in_use_error (img, perms);
  else
    vdi_error ("%s: lock: %m", img->filename);
  return -1;
}

/* 1 if another open file holds lock byte base + N for a permission N
 * in perms, 0 if none does.
 */
static int
lock_bytes_held (const struct vdi_image *img, int fd, off_t base,
                 unsigned perms)
{
  unsigned n;

  for (n = 0; n < NR_PERMS; ++n) {
    struct flock fl = {
      .l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = base + n,
      .l_len = 1
    };

    if (!(perms & (1u << n)))
      continue;
    if (fcntl (fd, F_OFD_GETLK, &fl) == -1) {
      vdi_error ("%s: lock: %m", img->filename);
      return -1;
    }
    if (fl.l_type != F_UNLCK)
      return 1;
  }
  return 0;
}

/* Once fd holds the lock bytes of a user holding perms: nobody else
 * may refuse a permission it holds, nor hold one that it refuses.
 * Checking after taking them, as QEMU does, means that of two users
 * starting at once at least one sees the other.
 */
static int
check_locks (const struct vdi_image *img, int fd, unsigned perms)
{
  int r;

  r = lock_bytes_held (img, fd, LOCK_SHARED_BASE, perms);
  if (r == 0)
    r = lock_bytes_held (img, fd, LOCK_PERM_BASE, UNSHARED_PERMS);
  if (r == 1)
    in_use_error (img, perms);
  return r == 0 ? 0 : -1;
}

/* How many map entries name a slot.  vdi_image_open has checked that
 * they name distinct slots below the counter.
 */
static uint32_t
used_slots (const struct vdi_image *img)
{
  const uint32_t blocks = img->header.blocks;
  uint32_t i, used = 0;

  for (i = vdi_image_next_not_free (img, 0); i < blocks;
       i = vdi_image_next_not_free (img, i + 1))
    if (VDI_BLOCK_IS_ALLOCATED (vdi_image_map_entry (img, i)))
      used++;
  return used;
}

/* Version 0 images are only read, and so are fixed images whose map
 * lacks blocks.
 */
static int
check_writable (const struct vdi_image *img)
{
  const struct vdi_header *h = &img->header;
  uint32_t used;

  if (h->version == VDI_VERSION_0) {
    vdi_error ("%s: writing to version 0 images is not supported",
               img->filename);
    return -1;
  }
  /* A fixed image has a slot for every block and never grows, so a
   * FREE or ZERO entry (which vdi_image_check calls corrupt) is a
   * block that no write can allocate.  VirtualBox does not look at
   * the map when it opens an image, and a write there allocates a
   * slot past cBlocks, which it then refuses to open ("too many
   * blocks allocated"): such an image is only read.
   */
  if (h->type == VDI_TYPE_FIXED && img->map &&
      (used = used_slots (img)) != h->blocks) {
    vdi_error ("%s: cannot write to a fixed image with only %" PRIu32
               " of %" PRIu32 " blocks allocated (a corrupt block map): "
               "open it read-only", img->filename, used, h->blocks);
    return -1;
  }
  return 0;
}

/* Trade the reader's locks for the writer's, on the file reopened
 * for writing.  The fd number stays the same (dup2 swaps the file
 * behind it atomically), so reads in flight are not disturbed.
 */
int
vdi_image_lock_exclusive (struct vdi_image *img)
{
  int fd;

  if (img->exclusive)
    return 0;
  fd = vdi_open_regular (img->filename, O_RDWR, "VDI images");
  if (fd == -1)
    return -1;
  /* The writer's bytes go on before the reader's come off, so that
   * the image is never left unlocked.
   */
  if (set_locks (img, fd, WRITER_PERMS, F_RDLCK) == -1 ||
      set_locks (img, img->fd, READER_PERMS, F_UNLCK) == -1)
    goto err;
  if (check_locks (img, fd, WRITER_PERMS) == -1)
    goto err;
  if (dup2 (fd, img->fd) == -1) {
    vdi_error ("%s: dup2: %m", img->filename);
    goto err;
  }
  close (fd);
  img->exclusive = true;
  return 0;

 err:
  /* Back to the reader's bytes (taking one held again is harmless);
   * closing fd drops the writer's.
   */
  set_locks (img, img->fd, READER_PERMS, F_RDLCK);
  close (fd);
  return -1;
}

int
vdi_image_make_writable (struct vdi_image *img)
{
  if (img->writable)
    return 0;
  if (check_writable (img) == -1 || vdi_image_lock_exclusive (img) == -1)
    return -1;
  __atomic_store_n (&img->writable, true, __ATOMIC_RELEASE);
  return 0;
}

struct vdi_image *
vdi_image_open (const char *filename, unsigned flags)
{
  struct vdi_image *img;
  uint8_t buf[VDI_HEADER_READ_SIZE];
  off_t size;
  size_t len;

  img = calloc (1, sizeof *img);
  if (img == NULL) {
    vdi_error ("%s: calloc: %m", filename);
    return NULL;
  }
  img->fd = -1;
  img->writable = flags & VDI_OPEN_WRITE;
  img->exclusive = flags & (VDI_OPEN_WRITE | VDI_OPEN_EXCLUSIVE);
  img->filename = strdup (filename);
  if (img->filename == NULL) {
    vdi_error ("%s: strdup: %m", filename);
    goto err;
  }

  img->fd = vdi_open_regular (filename, img->exclusive ? O_RDWR : O_RDONLY,
                             "VDI images");
  if (img->fd == -1)
    goto err;
  if (!(flags & VDI_OPEN_HEADER_ONLY)) {
    const unsigned perms = img->exclusive ? WRITER_PERMS : READER_PERMS;

    /* On a conflict, closing the file drops the bytes taken. */
    if (set_locks (img, img->fd, perms, F_RDLCK) == -1 ||
        check_locks (img, img->fd, perms) == -1)
      goto err;
  }
  size = lseek (img->fd, 0, SEEK_END);
  if (size == -1) {
    vdi_error ("%s: lseek: %m", filename);
    goto err;
  }
  img->file_size = size;
  if (img->file_size >= VDI_MAX_FILE_SIZE) {
    vdi_error ("%s: the file is too large (%" PRIu64 " bytes)",
               filename, img->file_size);
    goto err;
  }

  len = img->file_size < sizeof buf ? img->file_size : sizeof buf;
  if (vdi_full_pread (img->fd, buf, len, 0) == -1) {
    vdi_error ("%s: reading the header: %m", filename);
    goto err;
  }
  if (vdi_header_decode (filename, buf, len, &img->header) == -1 ||
      vdi_header_validate (filename, &img->header, img->file_size) == -1)
    goto err;

  if (!(flags & VDI_OPEN_HEADER_ONLY) && load_map (img) == -1)
    goto err;
  if (img->writable && check_writable (img) == -1)
    goto err;

  return img;

 err:
  vdi_image_close (img);
  return NULL;
}

void
vdi_image_close (struct vdi_image *img)
{
  if (img == NULL)
    return;
  if (img->fd >= 0)
    close (img->fd);
  if (img->map)
    free_map_pages (img);
  free (img->map);
  free (img->map_dirty);
  free (img->filename);
  free (img);
}

const char *
vdi_image_filename (const struct vdi_image *img)
{
  return img->filename;
}

const struct vdi_header *
vdi_image_header (const struct vdi_image *img)
{
  return &img->header;
}

int
vdi_image_fd (const struct vdi_image *img)
{
  return img->fd;
}

/* Atomic: the write engine changes entries while others read them. */
uint32_t
vdi_image_map_entry (const struct vdi_image *img, uint32_t i)
{
  const uint32_t *page = map_page (img, i / ENTRIES_PER_PAGE);

  return __atomic_load_n (&page[i % ENTRIES_PER_PAGE], __ATOMIC_ACQUIRE);
}

uint32_t
vdi_image_next_not_free (const struct vdi_image *img, uint32_t from)
{
  const uint32_t blocks = img->header.blocks;
  uint32_t i = from;

  while (i < blocks) {
    const uint32_t *page = map_page (img, i / ENTRIES_PER_PAGE);

    if (page == free_page)
      i = ROUND_DOWN (i, ENTRIES_PER_PAGE) + ENTRIES_PER_PAGE;
    else if (__atomic_load_n (&page[i % ENTRIES_PER_PAGE], __ATOMIC_ACQUIRE)
             != VDI_BLOCK_FREE)
      return i;
    else
      i++;
  }
  return blocks;
}

uint64_t
vdi_image_map_entries_held (const struct vdi_image *img)
{
  uint64_t held = 0;
  size_t page;

  for (page = 0; page < map_pages (&img->header); ++page)
    if (map_page (img, page) != free_page)
      held += ENTRIES_PER_PAGE;
  return held;
}

/* Atomic: vdi_image_make_writable changes it while others read. */
bool
vdi_image_is_writable (const struct vdi_image *img)
{
  return __atomic_load_n (&img->writable, __ATOMIC_ACQUIRE);
}

struct vdi_header *
vdi_image_header_for_update (struct vdi_image *img)
{
  return &img->header;
}

/* Change a map entry in memory; it reaches the file at the next
 * vdi_image_write_map_update.  Callers serialise changes.
 */
int
vdi_image_set_map_entry (struct vdi_image *img, uint32_t block,
                         uint32_t entry)
{
  const size_t n = block / ENTRIES_PER_PAGE;
  uint32_t *page = img->map[n];

  if (page == free_page) {
    page = malloc (VDI_MAP_PAGE);
    if (page == NULL) {
      vdi_error ("%s: cannot allocate the block map: %m", img->filename);
      return -1;
    }
    memcpy (page, free_page, VDI_MAP_PAGE);
    __atomic_store_n (&img->map[n], page, __ATOMIC_RELEASE);
  }
  __atomic_store_n (&page[block % ENTRIES_PER_PAGE], entry, __ATOMIC_RELEASE);
  bit_set (img->map_dirty, n);
  return 0;
}

int
vdi_image_set_blocks (struct vdi_image *img, uint32_t blocks)
{
  const size_t old_pages = map_pages (&img->header);
  const size_t pages = DIV_ROUND_UP ((size_t) blocks, ENTRIES_PER_PAGE);
  const size_t old_dirty_bytes = bits_bytes (old_pages);
  uint32_t **map = img->map;
  uint8_t *dirty = img->map_dirty;
  size_t page;
  uint32_t b;

  for (page = pages; page < old_pages; ++page)
    if (map[page] != free_page)
      free (map[page]);
  if (pages > old_pages) {
    map = realloc (map, pages * sizeof *map);
    if (map == NULL) {
      vdi_error ("%s: cannot allocate the block map: %m", img->filename);
      return -1;
    }
    img->map = map;
    dirty = realloc (dirty, bits_bytes (pages));
    if (dirty == NULL) {
      vdi_error ("%s: cannot allocate the block map: %m", img->filename);
      return -1;
    }
    memset (dirty + old_dirty_bytes, 0, bits_bytes (pages) - old_dirty_bytes);
    img->map_dirty = dirty;
    for (page = old_pages; page < pages; ++page)
      map[page] = (uint32_t *) free_page;
  }
  /* Entries past cBlocks are FREE. */
  if (blocks < img->header.blocks && blocks % ENTRIES_PER_PAGE != 0 &&
      map[blocks / ENTRIES_PER_PAGE] != free_page)
    for (b = blocks % ENTRIES_PER_PAGE; b < ENTRIES_PER_PAGE; ++b)
      map[blocks / ENTRIES_PER_PAGE][b] = VDI_BLOCK_FREE;
  img->header.blocks = blocks;
  return 0;
}

int
vdi_image_extend (struct vdi_image *img, uint64_t size)
{
  struct stat st;

  if (size <= img->file_size)
    return 0;
  /* Data writes past the end extend the file without telling us. */
  if (fstat (img->fd, &st) == -1) {
    vdi_error ("%s: fstat: %m", img->filename);
    return -1;
  }
  if ((uint64_t) st.st_size >= size) {
    img->file_size = st.st_size;
    return 0;
  }
  if (ftruncate (img->fd, size) == -1) {
    vdi_error ("%s: ftruncate: %m", img->filename);
    return -1;
  }
  img->file_size = size;
  return 0;
}

int
vdi_image_write_header (struct vdi_image *img)
{
  uint8_t buf[VDI_HEADER_READ_SIZE];
  size_t len = sizeof (struct vdi_disk_preheader) +
    MIN (img->header.header_size, (uint32_t) VDI_HEADER_1_1_PLUS_SIZE);

  vdi_header_encode (&img->header, buf);
  if (vdi_full_pwrite (img->fd, buf, len, 0) == -1) {
    vdi_error ("%s: writing the header: %m", img->filename);
    return -1;
  }
  return 0;
}

/* Copy the changed pages of the map, little endian, and mark them
 * clean.  Callers serialise this with map changes; the copy is then
 * written without holding up further changes.
 */
int
vdi_image_take_map_update (struct vdi_image *img, struct vdi_map_update *u)
{
  const size_t pages = map_pages (&img->header);
  size_t page, n = 0, i;

  memset (u, 0, sizeof *u);
  for (page = 0; page < pages; ++page)
    if (bit_is_set (img->map_dirty, page))
      n++;
  if (n == 0)
    return 0;
  u->pages = malloc (n * sizeof *u->pages);
  u->data = malloc (n * (size_t) VDI_MAP_PAGE);
  if (u->pages == NULL || u->data == NULL) {
    vdi_error ("%s: cannot copy the block map: %m", img->filename);
    vdi_map_update_free (u);
    return -1;
  }
  for (page = 0; page < pages; ++page) {
    uint32_t *out = (uint32_t *) (u->data + u->nr_pages * VDI_MAP_PAGE);
    const uint32_t *entries = img->map[page];

    if (!bit_is_set (img->map_dirty, page))
      continue;
    bit_clear (img->map_dirty, page);
    for (i = 0; i < ENTRIES_PER_PAGE; ++i)
      out[i] = htole32 (entries[i]);
    u->pages[u->nr_pages++] = page;
  }
  return 0;
}

/* Write the pages vdi_image_take_map_update copied. */
int
vdi_image_write_map_update (struct vdi_image *img,
                            const struct vdi_map_update *u)
{
  const size_t map_size = 4 * (size_t) img->header.blocks;
  size_t i;

  for (i = 0; i < u->nr_pages; ++i) {
    const size_t start = u->pages[i] * (size_t) VDI_MAP_PAGE;

    if (vdi_full_pwrite (img->fd, u->data + i * VDI_MAP_PAGE,
                         MIN ((size_t) VDI_MAP_PAGE, map_size - start),
                         img->header.blocks_offset + start) == -1) {
      vdi_error ("%s: writing the block map: %m", img->filename);
      return -1;
    }
  }
  return 0;
}

/* After a failed write: the pages are still to be written. */
void
vdi_image_restore_map_update (struct vdi_image *img,
                              const struct vdi_map_update *u)
{
  size_t i;

  for (i = 0; i < u->nr_pages; ++i)
    bit_set (img->map_dirty, u->pages[i]);
}

void
vdi_map_update_free (struct vdi_map_update *u)
{
  free (u->pages);
  free (u->data);
  memset (u, 0, sizeof *u);
}

void
vdi_image_start_writeback (struct vdi_image *img)
{
#ifdef HAVE_SYNC_FILE_RANGE
  sync_file_range (img->fd, 0, 0, SYNC_FILE_RANGE_WRITE);
#endif
}

int
vdi_image_sync (struct vdi_image *img)
{
#ifdef HAVE_FDATASYNC
  if (fdatasync (img->fd) == -1) {
#else
  if (fsync (img->fd) == -1) {
#endif
    vdi_error ("%s: fdatasync: %m", img->filename);
    return -1;
  }
  return 0;
}

/* Write an empty map: every entry FREE. */
static int
write_empty_map (int fd, const char *filename, const struct vdi_header *h)
{
  const size_t map_size = 4 * (size_t) h->blocks;
  CLEANUP_FREE uint8_t *chunk = malloc (MAP_CHUNK);
  size_t start, len;

  if (chunk == NULL) {
    vdi_error ("%s: malloc: %m", filename);
    return -1;
  }
  memset (chunk, 0xff, MAP_CHUNK); /* VDI_BLOCK_FREE */
  for (start = 0; start < map_size; start += len) {
    len = MIN ((size_t) MAP_CHUNK, map_size - start);
    if (vdi_full_pwrite (fd, chunk, len, h->blocks_offset + start) == -1) {
      vdi_error ("%s: writing the block map: %m", filename);
      return -1;
    }
  }
  return 0;
}

/* Cut the file at the start of the data area. */
static int
truncate_data (int fd, const char *filename, const struct vdi_header *h)
{
  if (ftruncate (fd, h->data_offset) == -1) {
    vdi_error ("%s: ftruncate: %m", filename);
    return -1;
  }
  return 0;
}

int
vdi_image_create (const char *filename, const struct vdi_header *h)
{
  CLEANUP_FREE char *tmp = NULL;
  uint8_t buf[VDI_HEADER_READ_SIZE];
  int fd;

  if (h->disk_size > vdi_header_max_disk_size (h->block_size)) {
    char size[32], block[32], max[32];

    vdi_error ("%s: the disk is too large for a VDI image with %s blocks: "
               "%s (%" PRIu64 " bytes), and the largest that fits is %s "
               "(%" PRIu64 " bytes)", filename,
               vdi_human_size (h->block_size, block, sizeof block),
               vdi_human_size (h->disk_size, size, sizeof size), h->disk_size,
               vdi_human_size (vdi_header_max_disk_size (h->block_size),
                               max, sizeof max),
               vdi_header_max_disk_size (h->block_size));
    return -1;
  }
  if (vdi_header_validate (filename, h, UINT64_MAX) == -1)
    return -1;

  /* Build the image beside its final name and rename it into place,
   * so that a crash never leaves a half-written image under the name.
   * Errors name the image the user asked for, not the temporary file.
   */
  if (asprintf (&tmp, "%s.tmpXXXXXX", filename) == -1) {
    vdi_error ("asprintf: %m");
    return -1;
  }
  fd = mkostemp (tmp, O_CLOEXEC);
  if (fd == -1) {
    vdi_error ("%s: cannot create the image: %m", filename);
    return -1;
  }
  vdi_header_encode (h, buf);
  if (vdi_full_pwrite (fd, buf, sizeof buf, 0) == -1) {
    vdi_error ("%s: writing the header: %m", filename);
    goto err;
  }
  if (write_empty_map (fd, filename, h) == -1 ||
      truncate_data (fd, filename, h) == -1)
    goto err;
  if (fsync (fd) == -1) {
    vdi_error ("%s: fsync: %m", filename);
    goto err;
  }
  if (close (fd) == -1) {
    fd = -1;
    vdi_error ("%s: close: %m", filename);
    goto err;
  }
  fd = -1;
  if (rename (tmp, filename) == -1) {
    vdi_error ("%s: rename: %m", filename);
    goto err;
  }
  return 0;

 err:
  if (fd >= 0)
    close (fd);
  unlink (tmp);
  return -1;
}

void
vdi_image_forget_blocks (struct vdi_image *img)
{
  struct vdi_header *h = &img->header;

  h->blocks_allocated = 0;
  free_map_pages (img);
  memset (img->map_dirty, 0, bits_bytes (map_pages (h)));
}

int
vdi_image_reset (struct vdi_image *img, const struct vdi_uuid *parent_modify)
{
  struct vdi_header *h = &img->header;

  if (vdi_uuid_generate (&h->uuid_modify) == -1)
    return -1;
  if (parent_modify)
    h->uuid_parent_modify = *parent_modify;
  vdi_image_forget_blocks (img);

  /* The empty map and the header reach the disk before the data goes,
   * so that at no point does the header count slots the file lacks.
   */
  if (write_empty_map (img->fd, img->filename, h) == -1 ||
      vdi_image_write_header (img) == -1 ||
      vdi_image_sync (img) == -1 ||
      truncate_data (img->fd, img->filename, h) == -1 ||
      vdi_image_sync (img) == -1)
    return -1;
  img->file_size = h->data_offset;
  return 0;
}

int
vdi_image_check (const struct vdi_image *img)
{
  const struct vdi_header *h = &img->header;
  const uint32_t used = used_slots (img);
  int r = 0;

  if (h->type == VDI_TYPE_FIXED && used != h->blocks) {
    vdi_error ("%s: fixed image with %" PRIu32 " of %" PRIu32
               " blocks allocated", img->filename, used, h->blocks);
    r = -1;
  }
  if (vdi_header_slots_end (h, h->blocks_allocated) > img->file_size) {
    vdi_error ("%s: the file (%" PRIu64 " bytes) is shorter than its %"
               PRIu32 " allocated blocks", img->filename, img->file_size,
               h->blocks_allocated);
    r = -1;
  }
  return r;
}

uint32_t
vdi_image_leaked_slots (const struct vdi_image *img)
{
  return img->header.blocks_allocated - used_slots (img);
}

bool
vdi_image_has_map (const struct vdi_image *img)
{
  return img->map != NULL;
}
